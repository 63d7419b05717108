"""Event-camera driver node: publishes EventPacket messages from a synthetic source, an AEDAT4
file, a rosbag, a live iniVation camera or a DV network stream.

A bag recorded in the published encoding and played without filters is passed through: each
payload goes out as recorded (no decode and re-encode; mono is not even decoded), with the
driver's own seq numbers and the recorded sensor time, which is what lets it keep up with tens
of M events/s.
"""

from __future__ import annotations

import math
import time

from rclpy.lifecycle import LifecyclePublisher, State, TransitionCallbackReturn
from rosgraph_msgs.msg import Clock

from hsnn_perception.core.energy.meters import PowerMeter, cpu_meter
from hsnn_perception.core.energy.models import driver_stage_energy
from hsnn_perception.core.errors import (
    ConfigurationError,
    EnergyAccountingError,
    EventError,
    EventSourceError,
    RecordingError,
)
from hsnn_perception.core.events.codecs import encode_packet
from hsnn_perception.core.registry import EVENT_CODECS, node_name
from hsnn_perception.core.sources.packets import PacketSource
from hsnn_perception.core.sources.streams import (
    Pacer,
    Packet,
    WindowFlowControl,
    WindowWork,
    WindowWorkMeter,
)
from hsnn_perception.graph import CLASSIFICATION, CLOCK, EVENTS, LABELS, SOURCES
from hsnn_perception.msg import Classification, EventPacket, GestureLabel
from hsnn_perception.nodes.base import (
    HsnnNode,
    event_qos,
    guarded_transition,
    reliable_qos,
    run_node,
)
from hsnn_perception.nodes.conversions import time_to_us, us_to_time
from hsnn_perception.nodes.event_types import DEFAULT_EVENT_TYPE, load_message_type


def _positive(value: int) -> bool:
    return value >= 1


def _not_negative(value: int) -> bool:
    return value >= 0


def _time(seconds: float) -> bool:
    return 0 <= seconds < math.inf  # NaN is refused too


def _positive_time(seconds: float) -> bool:
    return 0 < seconds < math.inf


class EventDriverNode(HsnnNode):
    def __init__(self, **kwargs) -> None:
        super().__init__(node_name("driver"), **kwargs)
        p = self.declare
        p("source", "synthetic")  # synthetic | aedat4 | camera | network | rosbag
        p("path", "")  # aedat4 file or rosbag2 bag
        # rosbag: the events topic to play (e.g. /event_camera/events of a stock driver's
        # recording); empty = the bag's one topic of event packets, found by type
        p("bag_events_topic", "")
        p("width", 128)  # synthetic sensor geometry
        p("height", 128)
        p("seed", 0)
        p("num_samples", 0)  # synthetic: samples to play, 0 = endless
        p("speed", 1.0)  # 1 = real time, 0 = as fast as possible
        p("loop", False)
        p("packet_us", 5000)  # sensor time per packet
        # rosbag played without filters, in the published encoding: consecutive recorded packets
        # joined into messages of up to this much sensor time (0: as recorded). Each message
        # costs the driver and the SNN node a fixed price (~0.2 ms on DDS alone), so fewer,
        # larger ones carry more events per second, at up to this much added latency.
        p("merge_us", 0)
        p("encoding", "mono")
        # The published message type (nodes.event_types.EVENT_TYPES): ours, or the stock drivers'
        # event_camera_msgs/msg/EventPacket for their consumers (subscribers must use the same).
        p("event_type", DEFAULT_EVENT_TYPE)
        p("frame_id", "dvs")
        p("publish_clock", False)  # publish sensor time on /clock for use_sim_time graphs
        p("qos_depth", 200)
        p("events_qos", "sensor")  # sensor (best effort) | reliable (with flow control)
        p("timer_period_s", 0.002)
        p("max_packets_per_tick", 50)
        # file playback (aedat4): absolute sensor times bounding the replay, -1 = whole file
        p("start_us", -1)
        p("end_us", -1)
        # live camera (dv-processing): serial number ("" = first found), camera-side settings
        p("serial", "")
        p("camera_roi", [0, 0, 0, 0])  # x, y, width, height on the sensor (width 0 = full)
        p("subsample", [1, 1])  # DVXplorer vertical, horizontal: 1, 2, 4, 8
        p("bias_sensitivity", [0, 0])  # DVXplorer contrast thresholds on, off (0 = default)
        p("retry_s", 2.0)  # camera / network stream absent or lost: reopen this often
        # DV network stream (dv-processing NetworkReader)
        p("host", "127.0.0.1")
        p("port", 0)
        # preprocessing (hsnn_perception.core.events.filters), in this order
        p("roi", [0, 0, 0, 0])  # x, y, width, height (width 0 = none)
        p("polarity", "both")  # both | on | off
        p("noise_filter_us", 0)  # background-activity filter window (0 = off)
        p("output_width", 0)  # spatial mapping to the model's input geometry (0 = sensor)
        p("output_height", 0)
        # Hold playback until this many subscribers listen on the events topic (0: start at
        # once), then settle_s more so both ends of each DDS connection are matched: a recording
        # played into an unconnected graph would be lost.
        p("wait_for_subscribers", 0)
        # ... and until each of these topics has a subscriber: where the pipeline continues on
        # another host (graph.pipeline with `stages`), its far end (e.g. "snn/spikes").
        p("wait_for_topics", [""])
        p("settle_s", 0.5)
        # The model's window length in sensor time (graph.pipeline sets it from the bundle): the
        # driver then reports its own work per window on the energy topic (stage "driver").
        # 0 = unknown: no reports, no flow control.
        p("window_us", 0)
        # Flow control for recorded sources (core.streams.WindowFlowControl): hold packets back
        # while flow_max_windows windows are unclassified (heard on the classification topic).
        # Lossless replay as fast as the pipeline keeps up; off by default (a live sensor and a
        # real-time replay never wait).
        p("flow_control", False)
        p("flow_max_windows", 4)
        p("flow_stall_s", 5.0)
        # Made at configure, released at cleanup: the source, its pacing and metering, the
        # publishers, the parameters the callbacks use (read and checked once).
        self._source: PacketSource | None = None
        self._pacer: Pacer | None = None
        self._flow: WindowFlowControl | None = None
        self._work: WindowWorkMeter | None = None
        self._meter: PowerMeter | None = None
        self._events_pub: LifecyclePublisher | None = None
        self._labels_pub: LifecyclePublisher | None = None
        self._energy_pub: LifecyclePublisher | None = None
        self._clock_pub: LifecyclePublisher | None = None
        self._event_msg: type = EventPacket
        self._encoding = ""
        self._frame_id = ""
        self._timer_period_s = 0.0
        self._max_packets_per_tick = 0
        self._wait_for_subscribers = 0
        self._wait_for_topics: list[str] = []  # resolved names
        self._settle_s = 0.0
        # Set at activate: waiting for subscribers, then playing.
        self._ready_since: float | None = None  # when enough subscribers matched (monotonic s)
        self._playing = False
        # Playback progress, kept across deactivate and activate (a pause).
        self._pending: Packet | None = None
        self._seq = 0
        self._finished = False
        # Whether playback keeps up with sensor time (recorded sources, speed > 0): pace of the
        # latest packet and the worst lateness (Pacer.progress), for /diagnostics.
        self._pace = 0.0
        self._late_max_s = 0.0

    # lifecycle ----
    @guarded_transition
    def on_configure(self, state: State) -> TransitionCallbackReturn:
        source = str(self.param("source"))
        if source not in SOURCES:
            self.reject("parameter", f"source {source!r} unknown; expected one of {SOURCES}")
            return TransitionCallbackReturn.FAILURE
        if str(self.param("encoding")) not in EVENT_CODECS:
            self.reject("parameter", EVENT_CODECS.unknown(str(self.param("encoding"))))
            return TransitionCallbackReturn.FAILURE
        try:
            self._event_msg = load_message_type(str(self.param("event_type")))
        except ValueError as exc:
            self.reject("parameter", str(exc))
            return TransitionCallbackReturn.FAILURE
        try:
            self._timer_period_s = self.checked("timer_period_s", _positive_time, "finite, > 0")
            self._max_packets_per_tick = self.checked("max_packets_per_tick", _positive, ">= 1")
            self._wait_for_subscribers = self.checked("wait_for_subscribers", _not_negative, ">= 0")
            self._settle_s = self.checked("settle_s", _time, "finite, >= 0")
            self._wait_for_topics = [
                self.resolve_topic_name(str(t)) for t in self.param("wait_for_topics") if t
            ]
            qos = event_qos(
                str(self.param("events_qos")), self.checked("qos_depth", _positive, ">= 1")
            )
        except ConfigurationError as exc:
            self.reject("parameter", str(exc))
            return TransitionCallbackReturn.FAILURE
        try:
            self._pacer = Pacer(float(self.param("speed")))
            window_us = int(self.param("window_us"))
            if bool(self.param("flow_control")) and window_us < 1:
                raise ValueError("flow_control needs window_us, the model's window length")
            self._flow = (
                WindowFlowControl(
                    window_us,
                    int(self.param("flow_max_windows")),
                    float(self.param("flow_stall_s")),
                )
                if bool(self.param("flow_control"))
                else None
            )
            self._work = WindowWorkMeter(window_us) if window_us > 0 else None
            self._meter = cpu_meter() if self._work is not None else None
            self._source = self._open_source(source)
        # A bad parameter value (plain ValueError: the range checks of core.streams and the
        # filter chain), a missing or unreadable recording: the node stays up, unconfigured.
        except (
            ConfigurationError,
            EventSourceError,
            RecordingError,
            EventError,
            EnergyAccountingError,
            ValueError,
            OSError,
        ) as exc:
            self.reject("source", f"cannot open {source} source: {exc}")
            return TransitionCallbackReturn.FAILURE
        self._events_pub = self.managed_publisher(self._event_msg, EVENTS, qos)
        self._labels_pub = self.managed_publisher(
            GestureLabel, LABELS, reliable_qos(100), hold=True
        )
        self._energy_pub = self.energy_publisher() if self._work is not None else None
        self._clock_pub = (
            self.managed_publisher(Clock, CLOCK, reliable_qos(10))
            if self.param("publish_clock")
            else None
        )
        self._encoding = str(self.param("encoding"))
        self._frame_id = str(self.param("frame_id"))
        self.get_logger().info(
            f"{source} source: {self._source.status} ({self._source.width}x"
            f"{self._source.height}, {self._encoding}, speed {self._pacer.speed:g})"
        )
        return TransitionCallbackReturn.SUCCESS

    @guarded_transition
    def on_activate(self, state: State) -> TransitionCallbackReturn:
        waits = self._wait_for_subscribers > 0 or self._wait_for_topics
        self._ready_since = None if waits else -1e9
        self._playing = False
        if self._flow is not None:
            self.active_subscription(
                Classification, CLASSIFICATION, self._on_classification, reliable_qos(100)
            )
        self.active_timer(self._timer_period_s, self._tick)
        return super().on_activate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        if self._source is not None:
            self._source.close()
            self._source = None
        # The next configure opens the source anew: a recording plays again from its start
        # (seq keeps counting, so subscribers see one stream without a gap).
        self._pending = None
        self._finished = False
        return super().on_cleanup(state)

    # sources ----
    def _open_source(self, source: str) -> PacketSource:
        from hsnn_perception.core.sources import packets as ps

        packet_us = int(self.param("packet_us"))
        loop = bool(self.param("loop"))
        path = str(self.param("path"))
        roi = [int(v) for v in self.param("roi")]
        chain = ps.filter_config(
            roi if roi[2:] != [0, 0] else [],
            str(self.param("polarity")),
            int(self.param("noise_filter_us")),
            int(self.param("output_width")),
            int(self.param("output_height")),
        )
        if source == "synthetic":
            from hsnn_perception.core.events.synthetic import SyntheticGestures
            from hsnn_perception.core.sources.streams import synthetic_packets

            width, height = int(self.param("width")), int(self.param("height"))
            gen = SyntheticGestures(height=height, width=width, seed=int(self.param("seed")))
            n = int(self.param("num_samples"))
            inner: PacketSource = ps.IteratorSource(
                synthetic_packets(gen, packet_us, n if n > 0 else None), width, height
            )
        elif source == "rosbag":
            from hsnn_perception.core.sources.bag import bag_packets

            topic = str(self.param("bag_events_topic")) or None
            # Without filters nothing needs the events decoded: payloads recorded in the
            # published encoding go out as they are.
            through = None if chain else str(self.param("encoding"))
            inner = ps.IteratorSource(
                *bag_packets(
                    path,
                    loop=loop,
                    events_topic=topic,
                    pass_through=through,
                    merge_us=max(int(self.param("merge_us")), 0),
                )
            )
        elif source == "aedat4":
            from hsnn_perception.core.sources.dv import Aedat4FileSource

            start, end = int(self.param("start_us")), int(self.param("end_us"))
            inner = ps.BatchSource(
                Aedat4FileSource(  # paced here, on sensor time, like every recorded source
                    path,
                    loop=loop,
                    start_us=None if start < 0 else start,
                    end_us=None if end < 0 else end,
                    packet_us=packet_us,
                )
            )
        elif source == "camera":
            from hsnn_perception.core.sources.live import CameraSource

            x, y, w, h = (int(v) for v in self.param("camera_roi"))
            sub = tuple(int(v) for v in self.param("subsample"))
            bias = tuple(int(v) for v in self.param("bias_sensitivity"))
            serial = str(self.param("serial")) or None

            def open_camera() -> object:
                return CameraSource(
                    serial=serial,
                    roi=(x, y, w, h) if w > 0 else None,
                    subsample=sub if sub != (1, 1) else None,
                    bias_sensitivity=bias if any(bias) else None,
                )

            inner = ps.ReconnectingSource(
                open_camera, float(self.param("retry_s")), lambda m: self.reject("camera", m)
            )
        else:  # network
            from hsnn_perception.core.sources.live import NetworkStreamSource

            host, port = str(self.param("host")), int(self.param("port"))
            if not 0 < port < 65536:
                raise ValueError(f"port {port} is not a TCP port; set the DV stream's port")
            inner = ps.ReconnectingSource(
                lambda: NetworkStreamSource(host, port),
                float(self.param("retry_s")),
                lambda m: self.reject("network", m),
            )
        filtered = ps.FilteredSource(inner, chain) if chain else inner
        # Recordings and synthetic gestures are read (filtered, decoded, rendered) off the
        # executor thread: pacing and publishing never wait for them.
        return ps.ReadAheadSource(filtered) if source in ("rosbag", "synthetic") else filtered

    # publishing ----
    def _ready_to_play(self) -> bool:
        if self._ready_since is None:
            if self._events_pub.get_subscription_count() < self._wait_for_subscribers:
                return False
            if any(self.count_subscribers(topic) < 1 for topic in self._wait_for_topics):
                return False
            self._ready_since = time.monotonic()
        if time.monotonic() - self._ready_since < self._settle_s:
            return False
        if not self._playing:
            self._playing = True
            self._pacer.reset()
        return True

    def _tick(self) -> None:
        if not self._ready_to_play():
            return
        for _ in range(self._max_packets_per_tick):
            if self._pending is None:
                self._pending = self._next_packet()
                if self._pending is None:
                    return
            if not self._source.live and not self._pacer.due(self._pending.t_end_us):
                return
            if not self._flow_allows(self._pending):
                return
            packet, self._pending = self._pending, None
            self._publish(packet)
            if not self._source.live:
                self._pace, late = self._pacer.progress(packet.t_end_us)
                self._late_max_s = max(self._late_max_s, late)

    def _flow_allows(self, packet: Packet) -> bool:
        flow = self._flow
        span = packet.event_span()
        if flow is None or self._source.live or span is None:
            return True
        stalls = flow.stalls
        allowed = flow.may_publish()
        if flow.stalls > stalls:
            self.count("flow.stalls")
            self.get_logger().warn(
                f"no classification for {flow.stall_s:g} s with {flow.max_windows} windows in "
                "flight: giving up on the oldest (is the classifier running?)"
            )
        if allowed and packet.decoded:
            flow.published(packet.events["t"])
        elif allowed:
            flow.published_span(*span)
        else:
            self.count("flow.waits")
        return allowed

    def _on_classification(self, msg: Classification) -> None:
        if self._flow is None:
            return
        lost = self._flow.lost
        self._flow.done(time_to_us(msg.window_stamp))
        if self._flow.lost > lost:
            self.count("flow.lost_windows", self._flow.lost - lost)

    def _next_packet(self) -> Packet | None:
        if self._source is None or self._finished:
            return None
        try:
            packet = self._source.poll()
        # Corrupt data in a recording (plain ValueError: a filter's check): report, stop this
        # source, stay up. The live sources never raise: they retry (ReconnectingSource).
        except (EventSourceError, RecordingError, EventError, ValueError) as exc:
            self._finished = True
            self.reject("source", f"reading the source failed: {exc}")
            return None
        if packet is None and self._source.finished:
            self._finished = True
            self.get_logger().info(f"source finished after {self._seq} packets")
            if self._work is not None:
                self._report_work(self._work.flush())
        return packet

    def _publish(self, packet: Packet) -> None:
        if self._work is None:
            self._publish_packet(packet)
            return
        if self._meter is not None:
            self._meter.start()
        started = time.perf_counter()
        self._publish_packet(packet)
        seconds = time.perf_counter() - started
        energy = self._meter.stop()[0] if self._meter is not None else math.nan
        span = packet.event_span()
        if packet.decoded or span is None:
            done = self._work.add(packet.events["t"], packet.t_start_us, seconds, energy)
        else:
            done = self._work.add_span(*span, packet.n_events, packet.t_start_us, seconds, energy)
        self._report_work(done)

    def _report_work(self, done: list[WindowWork]) -> None:
        """The driver's EnergyReport of each window its packets are done with."""
        for work in done:
            figure = driver_stage_energy(work.seconds, self._meter, work.energy_j)
            self.publish_energy(
                self._energy_pub, figure, work.window_id, work.start_us, host_latency_s=work.seconds
            )
            self.count("published.energy_reports")

    def _publish_packet(self, packet: Packet) -> None:
        for span in packet.labels:
            label = GestureLabel()
            label.header.stamp = us_to_time(span.start_us)
            label.header.frame_id = self._frame_id
            label.start = us_to_time(span.start_us)
            label.end = us_to_time(span.end_us)
            label.class_id = span.class_id
            label.label = span.label
            self._labels_pub.publish(label)
            self.count("published.labels")
        recorded = packet.recorded
        if recorded is not None and recorded.encoding == self._encoding:
            time_base, payload = recorded.time_base_ns, recorded.payload
            bigendian = recorded.is_bigendian
        else:
            try:
                time_base, payload = encode_packet(
                    packet.events, self._encoding, self._source.width, self._source.height
                )
            except ValueError as exc:
                self.reject("encode", str(exc))
                return
            bigendian = False
        n_events = packet.n_events
        msg = self._event_msg()
        msg.header.stamp = self.get_clock().now().to_msg()  # host time, as event_camera drivers do
        msg.header.frame_id = self._frame_id
        msg.height, msg.width = self._source.height, self._source.width
        msg.seq = self._seq
        msg.time_base = time_base if n_events else packet.t_start_us * 1000
        msg.encoding = self._encoding
        msg.is_bigendian = bigendian
        msg.events = payload
        try:
            self._events_pub.publish(msg)
        # Backpressure of a reliable reader: count it, never die of it. A catch-all on purpose:
        # rclpy raises its C layer's errors here, which its public API does not name.
        except Exception as exc:  # noqa: BLE001
            self.reject("publish", f"packet seq {self._seq} not published: {exc}")
            return
        self._seq += 1
        self.count("published.packets")
        self.count("published.events", n_events)
        if self._clock_pub is not None:
            self._clock_pub.publish(Clock(clock=us_to_time(packet.t_end_us)))

    def diagnostic_values(self) -> dict[str, str]:
        status = self._source.status if self._source is not None else "not configured"
        return {
            "source_status": status,
            "source_finished": str(self._finished),
            "seq": str(self._seq),
            # speed when keeping up with sensor time; less means the driver falls behind
            "pace": f"{self._pace:.3f}",
            "late_max_ms": f"{self._late_max_s * 1e3:.1f}",
            **({"flow.pending_windows": str(self._flow.pending)} if self._flow else {}),
        }


def main(args: list[str] | None = None) -> int:
    # The events go out in large best-effort messages: Fast DDS's larger shared-memory segment.
    return run_node(EventDriverNode, args, event_streams=True)


if __name__ == "__main__":
    raise SystemExit(main())
