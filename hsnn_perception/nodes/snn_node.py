"""SNN feature node: cuts event windows on sensor time, runs the spiking layers, publishes the
output spikes as a TensorList and the stage's energy report."""

from __future__ import annotations

import math
import queue
import threading
import time
from typing import TYPE_CHECKING, Any

import numpy as np
from rclpy.lifecycle import LifecyclePublisher, State, TransitionCallbackReturn
from rclpy.qos import QoSProfile

from hsnn_perception.core.energy.profiles import NEUROMORPHIC_PROFILES
from hsnn_perception.core.errors import ConfigurationError, ModelError, SnnError
from hsnn_perception.core.events.binning import BinningError, EventWindower, Window
from hsnn_perception.core.events.codecs import MAX_PACKET_EVENTS, EventPacketSizeError
from hsnn_perception.core.events.debug_image import render_debug_image
from hsnn_perception.core.events.filters import (
    INPUT_MAPPINGS,
    FilterConfigError,
    MappedWindower,
    model_input_chain,
)
from hsnn_perception.core.events.stream import EventTimeRangeError, PacketStreamDecoder
from hsnn_perception.core.events.stream import warm_up as warm_up_front_end
from hsnn_perception.core.hybrid.bundle import ModelBundle, default_bundle_path
from hsnn_perception.core.hybrid.pipeline import SnnStage, input_spikes
from hsnn_perception.core.io.spike_codec import ENCODINGS, encode_spikes
from hsnn_perception.core.registry import node_name
from hsnn_perception.graph import EVENTS, SNN_BACKENDS, SPIKES, SPIKES_TENSOR
from hsnn_perception.msg import TensorList
from hsnn_perception.nodes.base import (
    HsnnNode,
    event_qos,
    guarded_transition,
    reliable_qos,
    run_node,
)
from hsnn_perception.nodes.conversions import (
    TIME_MAX_US,
    MessageFieldError,
    tensor_list_bytes,
    us_to_time,
)
from hsnn_perception.nodes.event_types import (  # noqa: F401 - EVENT_TYPES: re-exported
    EVENT_TYPES,
    load_message_type,
)

if TYPE_CHECKING:
    from hsnn_perception.core.snn.runtime import SnnBackend

DEBUG_IMAGE = "debug/image"  # sensor_msgs/Image rgb8: core/events/debug_image.py


def _positive(value: int) -> bool:
    return value >= 1


def _not_negative(value: int) -> bool:
    return value >= 0


class PassThroughSnn:
    """For bundles without an SNN part (the ANN baseline): input spikes go straight on."""

    backend_name = "none (ANN baseline: input spikes passed through)"

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.input_shape = self.output_shape = shape

    def run_window(self, spikes: np.ndarray) -> tuple[np.ndarray, None]:
        return spikes.astype(np.uint8, copy=False), None

    def close(self) -> None:
        pass


class SnnFeatureNode(HsnnNode):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(node_name("snn"), **kwargs)
        p = self.declare
        p("model", "")  # bundle directory; empty = the shipped default
        p("backend", "native")  # native | lava | lava-hw
        p("event_type", "hsnn_perception/msg/EventPacket")  # or event_camera_msgs/msg/EventPacket
        p("qos_depth", 500)
        # sensor (best effort: any driver) | reliable (only a reliable driver connects)
        p("events_qos", "sensor")
        p("energy_chip", "loihi")  # loihi | loihi2: per-operation energy model of the SNN stage
        p("loihi_cores", 0)  # cores the model would occupy, for static power; 0 = dynamic only
        # backend lava-hw: measure each window's energy with Lava's Loihi 2 profiler (lava-loihi);
        # off, or where the profiler is missing, the energy is modelled (and says why).
        p("energy_probe", True)
        p("max_gap_windows", 8)
        # Packets in a row that must agree before the windows follow event time that jumped far
        # (a restarted driver) or a new sensor geometry: one wild packet never moves them.
        p("heal_packets", 3)
        # Events one packet may decode to, checked from its length before decoding.
        p("max_packet_events", MAX_PACKET_EVENTS)
        # End of stream: when no packet came for this long, the pending (partial) window is
        # processed. Windows are still cut on event time; this only ends the last one.
        p("flush_idle_s", 0.5)
        # Windows wait here for the SNN, which runs on its own thread so that the event
        # subscription keeps draining DDS while a window is computed. Full queue: window dropped.
        p("window_queue", 16)
        # Form of snn/spikes: dense (the tensor as is), sparse (spike positions or a bit mask,
        # see core/io/spike_codec.py: for a network link between hosts) or auto (the smallest of the
        # three per window). The accumulator bridge reads every form.
        p("spikes_encoding", "dense")
        # Where events enter the model (core/events/filters.py, docs/events.md): a region of the
        # sensor (x, y, width, height; width 0 = the whole sensor), then scale (stretch to the
        # model's input), crop (centre crop to its aspect ratio) or pad (centre it in a frame of
        # that aspect ratio). Any sensor geometry then runs with any model.
        p("input_roi", [0, 0, 0, 0])
        p("input_mapping", "scale")
        # debug/image: each window's events (ON red, OFF blue) beside its output spikes, for rviz2
        # or Foxglove. Rendered only while someone subscribes.
        p("debug_image", False)
        # Made at configure, released at cleanup: the model, the publishers, the parameters the
        # callbacks use (read and checked once).
        self.bundle: ModelBundle | None = None
        self._snn: SnnBackend | None = None
        self._stage: SnnStage | None = None  # the SNN's run, timed, with its energy figure
        self._event_type: type | None = None
        self._events_qos: QoSProfile | None = None
        self._spikes_pub: LifecyclePublisher | None = None
        self._energy_pub: LifecyclePublisher | None = None
        self._debug_pub: LifecyclePublisher | None = None
        self._spikes_encoding = "dense"
        self._energy_chip = "loihi"
        self._loihi_cores = 0
        self._max_gap_windows = 0
        self._heal_packets = 0
        self._flush_idle_s = 0.0
        self._window_queue = 0
        self._decoder = PacketStreamDecoder()
        self._windower: MappedWindower | None = None
        self._geometry: tuple[int, int] | None = None
        self._new_geometry: tuple[tuple[int, int], int] | None = None  # (geometry, packets seen)
        # Made at activate: the SNN thread, its queue, what the idle flush looks at.
        self._queue: queue.Queue[Window | None] = queue.Queue()
        self._worker: threading.Thread | None = None
        self._busy = False
        self._last_packet = 0.0  # monotonic s
        self._last_work_end = 0.0

    # lifecycle ----
    @guarded_transition
    def on_configure(self, state: State) -> TransitionCallbackReturn:
        backend = str(self.param("backend"))
        if backend not in SNN_BACKENDS:
            self.reject("parameter", f"backend {backend!r} unknown; expected one of {SNN_BACKENDS}")
            return TransitionCallbackReturn.FAILURE
        self._spikes_encoding = str(self.param("spikes_encoding"))
        if self._spikes_encoding not in ENCODINGS:
            self.reject(
                "parameter",
                f"spikes_encoding {self._spikes_encoding!r} unknown; expected one of {ENCODINGS}",
            )
            return TransitionCallbackReturn.FAILURE
        # The input mapping's form is checked here; whether the ROI fits the sensor can only be
        # known from the packets (their geometry), where a misfit is counted as errors.geometry.
        mapping, roi = str(self.param("input_mapping")), list(self.param("input_roi"))
        if mapping not in INPUT_MAPPINGS or len(roi) != 4 or any(int(v) < 0 for v in roi):
            self.reject(
                "parameter",
                f"'input_mapping' {mapping!r} / 'input_roi' {roi} must be one of "
                f"{INPUT_MAPPINGS} / [x, y, width, height] >= 0",
            )
            return TransitionCallbackReturn.FAILURE
        try:
            self._events_qos = event_qos(
                str(self.param("events_qos")), self.checked("qos_depth", _positive, ">= 1")
            )
            self._energy_chip = self.checked(
                "energy_chip", NEUROMORPHIC_PROFILES.__contains__, f"one of {NEUROMORPHIC_PROFILES}"
            )
            self._loihi_cores = self.checked("loihi_cores", _not_negative, ">= 0")
            self._max_gap_windows = self.checked("max_gap_windows", _not_negative, ">= 0")
            self._heal_packets = self.checked("heal_packets", _positive, ">= 1")
            self._flush_idle_s = self.checked(
                "flush_idle_s", lambda v: not math.isnan(v), "a number (<= 0: never)"
            )
            self._window_queue = self.checked("window_queue", _positive, ">= 1")
            max_packet_events = self.checked("max_packet_events", _positive, ">= 1")
            debug_image = self.param("debug_image")
        except ConfigurationError as exc:
            self.reject("parameter", str(exc))
            return TransitionCallbackReturn.FAILURE
        try:
            self._event_type = load_message_type(str(self.param("event_type")))
            model = str(self.param("model")) or str(default_bundle_path())
            self.bundle = ModelBundle.load(model)
            if self.bundle.snn_file is None:
                self._snn = PassThroughSnn(
                    (self.bundle.channels, self.bundle.height, self.bundle.width)
                )
            else:
                from hsnn_perception.core.snn.runtime import load_snn

                started = time.monotonic()
                self._snn = load_snn(
                    self.bundle.snn_file,
                    backend=backend,
                    energy_probe=bool(self.param("energy_probe")) and backend == "lava-hw",
                )
                # One silent window now, so that compilation (numba JIT, Lava's compiler) happens
                # at configuration and not on the first window of data.
                silence = np.zeros((self.bundle.timesteps, *self._snn.input_shape), np.uint8)
                self._snn.run_window(silence)
                self.get_logger().info(
                    f"SNN {self.bundle.snn_file.name} on {self._snn.backend_name} "
                    f"(loaded and warmed up in {time.monotonic() - started:.2f} s)"
                )
        # A missing or corrupt model, Lava missing (LavaUnavailableError is an SnnError), an
        # event type not allowed (ValueError): stay up, say why.
        except (ModelError, SnnError, ConfigurationError, ValueError, OSError) as exc:
            self.reject("model", f"cannot load the SNN: {exc}")
            return TransitionCallbackReturn.FAILURE
        self._stage = SnnStage(
            self._snn, self.bundle.timesteps, chip=self._energy_chip, cores=self._loihi_cores
        )
        self._decoder = PacketStreamDecoder(max_events=max_packet_events)
        # The event front end's kernels too (numba: compiled once, then loaded from its cache).
        warm_up_front_end()
        self._spikes_pub = self.managed_publisher(TensorList, SPIKES, reliable_qos(20), hold=True)
        self._energy_pub = self.energy_publisher()
        self._debug_pub = None
        if debug_image:
            from sensor_msgs.msg import Image  # only where the debug image is wanted

            # Reliable: matches viewers subscribing reliable (rviz2's default) or best effort.
            self._debug_pub = self.managed_publisher(Image, DEBUG_IMAGE, reliable_qos(2))
        self.get_logger().info(
            f"model {self.bundle.name}: {self.bundle.timesteps} bins of {self.bundle.bin_us} us, "
            f"input {self.bundle.channels}x{self.bundle.height}x{self.bundle.width}"
        )
        return TransitionCallbackReturn.SUCCESS

    @guarded_transition
    def on_activate(self, state: State) -> TransitionCallbackReturn:
        self.active_subscription(self._event_type, EVENTS, self._on_events, self._events_qos)
        self._last_packet = self._last_work_end = time.monotonic()
        self._busy = False
        self.active_timer(0.1, self._flush_if_idle)
        self._queue = queue.Queue(maxsize=self._window_queue)
        self._worker = threading.Thread(target=self._work, name="snn_worker", daemon=True)
        self._worker.start()
        return super().on_activate(state)

    def _work(self) -> None:
        while (window := self._queue.get()) is not None:
            self._busy = True
            try:
                self._process(window)
            except Exception as exc:  # noqa: BLE001 - the SNN thread must outlive any window
                self.reject("internal", f"window {window.window_id}: {type(exc).__name__}: {exc}")
            finally:
                self._busy = False
                self._last_work_end = time.monotonic()

    def _enqueue(self, window: Window) -> None:
        try:
            self._queue.put_nowait(window)
        except queue.Full:
            self.count("dropped.windows")
            self.reject("overload", f"window {window.window_id} dropped: the SNN is behind")

    def _stop_worker(self, timeout_s: float = 1.0) -> None:
        """Stop the SNN thread: queued windows are dropped (counted), the one being computed
        finishes if it can within ``timeout_s`` (the thread is a daemon: it cannot hold the
        process up)."""
        worker = self._worker
        if worker is not None and worker.is_alive():
            while True:
                try:
                    if self._queue.get_nowait() is not None:
                        self.count("dropped.windows_at_stop")
                except queue.Empty:
                    break
            self._queue.put_nowait(None)
            worker.join(timeout_s)
        self._worker = None

    def _flush_if_idle(self) -> None:
        # Idle means no packet and no SNN work for flush_idle_s: a source that waits for this
        # node (the driver's flow control), or a busy host, must not end a window early.
        idle = self._flush_idle_s
        if idle <= 0 or self._windower is None or self._busy or not self._queue.empty():
            return
        if time.monotonic() - max(self._last_packet, self._last_work_end) < idle:
            return
        windows = self._windower.flush()
        for window in windows:
            self.count("flushed.windows")
            self._enqueue(window)

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        result = super().on_deactivate(state)  # no new windows (nor flushes) after this
        self._stop_worker()
        return result

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self._close_snn()
        self._windower = None
        return super().on_cleanup(state)

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        self._stop_worker()
        self._close_snn()
        return TransitionCallbackReturn.SUCCESS

    def destroy_node(self) -> None:
        # A stop while active (Ctrl-C) has no transition: the SNN thread, still running, kept the
        # node's DDS participant from being deleted, and with it its shared-memory file in
        # /dev/shm (one per run, left until the next reboot).
        self._stop_worker()
        self._close_snn()
        super().destroy_node()

    def _close_snn(self) -> None:
        self._stage = None
        if self._snn is not None:
            self._snn.close()
            self._snn = None

    # data ----
    def _on_events(self, msg: Any) -> None:
        self.count("received.packets")
        self._last_packet = time.monotonic()
        seq = int(msg.seq)
        geometry = (int(msg.height), int(msg.width))
        try:
            windower = self._windower_for(geometry)
            # mono and evt3 go from payload to window in compiled passes (core/events/fused.py),
            # the other encodings through an event array: same windows and counters.
            n_events, windows = self._decoder.decode_into(
                windower,
                msg.events,
                msg.encoding,
                int(msg.time_base),
                geometry[1],
                geometry[0],
                bool(msg.is_bigendian),
                seq=seq,
                time_range=(0, TIME_MAX_US),
            )
        except EventTimeRangeError as exc:
            reason = (
                f"event times {exc.tmin}..{exc.tmax} us are not sensor times a ROS Time can carry"
            )
            self.reject("time_range", f"packet seq {seq} dropped: {reason}")
            return
        except EventPacketSizeError as exc:
            self.reject("packet_size", f"packet seq {seq} dropped: {exc}")
            return
        except MessageFieldError as exc:
            self.reject(exc.reason, f"packet seq {seq} dropped: {exc}")
            return
        except ValueError as exc:  # malformed packet: log what, count, keep serving
            self.reject("packet", f"packet seq {seq} dropped: {exc}")
            return
        self.count("received.events", n_events)
        for window in windows:
            self._enqueue(window)

    def _windower_for(self, geometry: tuple[int, int]) -> MappedWindower:
        """The windower of ``geometry``. A new geometry is taken once ``heal_packets`` packets in
        a row carry it (a new sensor); before that its packets are rejected (one packet with a
        wrong width must not restart the windows)."""
        b = self.bundle
        height, width = geometry
        if height <= 0 or width <= 0:
            raise MessageFieldError("geometry", f"sensor {width}x{height} has no pixels")
        if self._windower is not None and geometry != self._geometry:
            seen = (
                self._new_geometry[1] + 1
                if self._new_geometry and (self._new_geometry[0] == geometry)
                else 1
            )
            self._new_geometry = (geometry, seen)
            if seen < self._heal_packets:
                raise MessageFieldError(
                    "geometry",
                    f"sensor geometry {width}x{height} differs from {self._geometry[1]}x"
                    f"{self._geometry[0]} ({seen} packet(s) in a row so far)",
                )
            self.get_logger().warn(f"sensor geometry changed to {geometry}; windows restart")
            self._windower = None
        self._new_geometry = None
        if self._windower is None:
            try:
                # Events are mapped to the model's input geometry before they are binned.
                mapping = model_input_chain(
                    geometry,
                    (b.height, b.width),
                    str(self.param("input_mapping")),
                    self.param("input_roi"),
                )
                windower = EventWindower(
                    b.bin_us,
                    b.timesteps,
                    b.height,
                    b.width,
                    b.height,
                    b.width,
                    max_gap_windows=self._max_gap_windows,
                    heal_packets=self._heal_packets,
                )
            except (BinningError, FilterConfigError, ValueError) as exc:
                raise MessageFieldError("geometry", str(exc)) from None
            self._windower = MappedWindower(mapping, windower)
            self._geometry = geometry
        return self._windower

    def _process(self, window: Window) -> None:
        self.trace("start", window.t_start_us)
        try:
            result = self._stage.run(input_spikes(window.frames))
        # What a backend says about a window it cannot run (a Lava run that failed); anything
        # else is a bug, counted as internal by the SNN thread.
        except (SnnError, ValueError) as exc:
            self.reject("snn", f"window {window.window_id}: {exc}")
            return
        out, _ = result.value
        self.trace("out", window.t_start_us)
        tensors = encode_spikes(out, self._spikes_encoding, SPIKES_TENSOR)
        # Serialized here, not built as a message (conversions.tensor_list_bytes).
        msg = tensor_list_bytes(window.window_id, window.t_start_us, "", tensors)
        self._spikes_pub.publish(msg)
        self.trace("pub", window.t_start_us)
        self.count("published.windows")
        self._publish_debug_image(window, out)
        self.publish_energy(
            self._energy_pub,
            result.figure,
            window.window_id,
            window.t_start_us,
            host_latency_s=result.latency_s,
        )

    def _publish_debug_image(self, window: Window, spikes: np.ndarray) -> None:
        pub = self._debug_pub
        if pub is None or pub.get_subscription_count() == 0:  # nobody looks: render nothing
            return
        from sensor_msgs.msg import Image

        pixels = render_debug_image(window.frames, spikes)
        msg = Image(height=pixels.shape[0], width=pixels.shape[1], encoding="rgb8")
        msg.header.stamp = us_to_time(window.t_start_us)
        msg.step = pixels.shape[1] * 3
        msg.data = pixels.tobytes()
        pub.publish(msg)
        self.count("published.debug_images")

    def diagnostic_values(self) -> dict[str, str]:
        dropped = {f"dropped.events.{why}": str(n) for why, n in self._decoder.drops.items()}
        values = {
            **dropped,
            "evt3_state_resets": str(self._decoder.resets),
            # Packets that never arrived (seq gaps, every encoding): best-effort DDS loses them.
            **self._decoder.seq_gaps.diagnostics("packets", "seq"),
        }
        w = self._windower
        if w is not None:
            values.update(
                windows_emitted=str(w.windows_emitted),
                late_events=str(w.late_events),
                out_of_range_events=str(w.out_of_range_events),
                held_packets=str(w.held_packets),
                reorigins=str(w.reorigins),
                skipped_windows=str(w.skipped_windows),
            )
        return values


def main(args: list[str] | None = None) -> int:
    return run_node(SnnFeatureNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
