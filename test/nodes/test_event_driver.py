"""The driver node with real sources over DDS: an AEDAT4 recording (dv-processing) published as
mono EventPackets in sensor time, filtered to the model's geometry; an absent camera retried while
the node stays up."""

from __future__ import annotations

import os
import random
import re
from pathlib import Path

import numpy as np
import pytest
import rclpy
from rosgraph_msgs.msg import Clock

from hsnn_perception.core.events.codecs import decode_packet, make_events
from hsnn_perception.core.sources.dv import write_aedat4
from hsnn_perception.graph import pipeline
from hsnn_perception.launcher import ProcessGroup
from hsnn_perception.msg import EventPacket
from hsnn_perception.nodes.base import FASTDDS_CONFIGURATION, reliable_qos, sensor_qos
from hsnn_perception.tools.monitor import LifecycleClient

from .test_bad_input import Probe, start

pytestmark = pytest.mark.slow

W, H = 64, 48


def stream(n: int, t0: int, span: int) -> np.ndarray:
    rng = np.random.default_rng(5)
    t = np.sort(rng.integers(t0, t0 + span, n))
    return make_events(t, rng.integers(0, W, n), rng.integers(0, H, n), rng.integers(0, 2, n))


@pytest.fixture
def ros():
    rclpy.init()
    yield
    rclpy.try_shutdown()


@pytest.mark.parametrize("encoding", ["mono", "libcaer_cmp"])  # libcaer_cmp: libcaer_driver's
def test_aedat4_recording_is_published_in_sensor_time(ros, tmp_path, encoding):
    events = stream(3000, t0=7_000_000, span=60_000)
    write_aedat4(tmp_path / "rec.aedat4", events, W, H)
    ns = f"drv_file_{random.randint(0, 10**6)}"
    overrides = {
        "source": "aedat4",
        "path": str(tmp_path / "rec.aedat4"),
        "wait_for_subscribers": 1,
        "packet_us": 2000,
        "output_width": 32,
        "output_height": 24,
        "publish_clock": True,
        "encoding": encoding,
    }
    probe = Probe(ns)
    packets: list[EventPacket] = []
    clock: list[Clock] = []
    subscriptions = [
        probe.node.create_subscription(EventPacket, "events", packets.append, sensor_qos(1000)),
        probe.node.create_subscription(Clock, "/clock", clock.append, reliable_qos(1000)),
    ]
    overrides["autostart"] = False
    with start({"event_driver"}, ns, tmp_path, event_driver=overrides) as group:
        # Configure, wait until both of our subscriptions are matched, then play.
        driver = LifecycleClient(probe.node, f"/{ns}/event_driver")

        def spin(seconds: float) -> None:
            probe.executor.spin_once(timeout_sec=seconds)

        assert driver.transition("configure", spin), group.log("event_driver")
        assert probe.spin_until(lambda: all(s.get_publisher_count() for s in subscriptions), 60), [
            (s.topic_name, s.get_publisher_count()) for s in subscriptions
        ]
        assert driver.transition("activate", spin)
        assert probe.spin_until(
            lambda: probe.diag("event_driver").get("source_finished") == "True",
            60,
        ), group.log("event_driver")
        probe.spin_until(lambda: False, 0.5)
    decoded = np.concatenate(
        [decode_packet(p.events, p.encoding, p.time_base, p.width, p.height) for p in packets]
    )
    assert {(p.width, p.height, p.encoding) for p in packets} == {(32, 24, encoding)}
    assert [p.seq for p in packets] == list(range(len(packets))), "no packet lost or reordered"
    np.testing.assert_array_equal(decoded["t"], events["t"])  # sensor time kept exactly
    np.testing.assert_array_equal(decoded["x"], events["x"] * 32 // W)
    np.testing.assert_array_equal(decoded["y"], events["y"] * 24 // H)
    # /clock follows sensor time (for use_sim_time graphs): the end of each packet, increasing
    ticks = [c.clock.sec * 1_000_000 + c.clock.nanosec // 1000 for c in clock]
    assert ticks and ticks == sorted(ticks)
    assert ticks[0] > int(events["t"][0]) and ticks[-1] >= int(events["t"][-1])


def test_absent_camera_keeps_the_node_up_and_retrying(ros, tmp_path):
    ns = f"drv_cam_{random.randint(0, 10**6)}"
    probe = Probe(ns)
    with start(
        {"event_driver"},
        ns,
        tmp_path,
        # A live source never waits for listeners (the graph sets this from its `source`).
        event_driver={"source": "camera", "retry_s": 0.3, "wait_for_subscribers": 0},
    ) as group:
        assert probe.spin_until(
            lambda: int(probe.diag("event_driver").get("errors.camera", 0)) >= 3, 60
        ), group.log("event_driver")
        diag = probe.diag("event_driver")
        assert "no event camera connected" in diag["source_status"]
        assert diag["lifecycle_state"] == "active"
        assert group.poll()["event_driver"] is None


def test_flow_control_holds_a_recording_until_its_windows_are_classified(ros, tmp_path):
    """Speed 0 with flow control: no more than flow_max_windows windows of events go out before
    classifications of them come back; each classification releases more; with none coming, the
    driver gives the oldest window up after flow_stall_s and says so in /diagnostics."""
    from hsnn_perception.msg import Classification
    from hsnn_perception.nodes.conversions import us_to_time

    window = 160_000
    ns = f"drv_flow_{random.randint(0, 10**6)}"
    probe = Probe(ns)
    packets: list[EventPacket] = []
    probe.node.create_subscription(EventPacket, "events", packets.append, sensor_qos(1000))
    results = probe.node.create_publisher(Classification, "classification", reliable_qos(10))
    params = {
        "source": "synthetic",
        "num_samples": 6,  # one gesture per window: windows 0..5 all hold events
        "width": 32,
        "height": 32,
        "packet_us": 10_000,
        "speed": 0.0,
        "wait_for_subscribers": 1,
        "window_us": window,
        "flow_control": True,
        "flow_max_windows": 2,
        "flow_stall_s": 4.0,
        "diagnostics_period_s": 0.2,
    }

    def windows_seen() -> set[int]:
        seen: set[int] = set()
        for p in packets:
            t = decode_packet(p.events, p.encoding, p.time_base, p.width, p.height)["t"]
            seen.update(int(k) for k in np.unique(t // window))
        return seen

    def classified(k: int) -> None:
        results.publish(Classification(window_id=k, window_stamp=us_to_time(k * window)))

    with start({"event_driver"}, ns, tmp_path, event_driver=params) as group:
        probe.wait_for_subscriber(results)
        held = lambda: int(probe.diag("event_driver").get("flow.waits", 0)) > 0  # noqa: E731
        assert probe.spin_until(held, 60), group.log("event_driver")
        assert windows_seen() == {0, 1}, "two windows in flight, then the driver waits"
        assert probe.diag("event_driver")["flow.pending_windows"] == "2"
        classified(0)
        assert probe.spin_until(lambda: 2 in windows_seen(), 10), group.log("event_driver")
        probe.spin_until(lambda: False, 0.5)
        assert windows_seen() == {0, 1, 2}, "one classification releases one window"
        # No classification any more: after flow_stall_s the oldest window is given up.
        stalled = lambda: int(probe.diag("event_driver").get("flow.stalls", 0)) >= 1  # noqa: E731
        assert probe.spin_until(stalled, 30), group.log("event_driver")
        assert probe.spin_until(lambda: 3 in windows_seen(), 10)
        for k in range(1, 6):
            classified(k)
        done = lambda: probe.diag("event_driver").get("source_finished") == "True"  # noqa: E731
        assert probe.spin_until(done, 60), group.log("event_driver")
        probe.spin_until(lambda: False, 0.5)
    assert windows_seen() == set(range(6))
    assert [p.seq for p in packets] == list(range(len(packets))), "nothing lost or reordered"


def three_windows(**extra: object) -> dict[str, object]:
    """Driver parameters: 3 synthetic 160 ms windows in real time, held until a reader listens,
    the driver reporting its work per window."""
    return {
        "source": "synthetic",
        "num_samples": 3,
        "width": 32,
        "height": 32,
        "speed": 1.0,
        "wait_for_subscribers": 1,
        "window_us": 160_000,
        **extra,
    }


def listening(prefix: str, energy: bool = True):
    """(namespace, probe, packets, reports): a probe in a fresh namespace taking the events, and
    the energy reports unless ``energy`` is false (the list then stays empty)."""
    from hsnn_perception.msg import EnergyReport

    ns = f"{prefix}_{random.randint(0, 10**6)}"
    probe = Probe(ns)
    packets: list[EventPacket] = []
    reports: list[EnergyReport] = []
    probe.node.create_subscription(EventPacket, "events", packets.append, sensor_qos(1000))
    if energy:
        probe.node.create_subscription(EnergyReport, "energy", reports.append, reliable_qos(100))
    return ns, probe, packets, reports


def source_finished(probe: Probe) -> bool:
    return probe.diag("event_driver").get("source_finished") == "True"


def test_reports_published_before_their_reader_matches_are_held_not_lost(ros, tmp_path):
    """hold_unmatched_s (set for a split pipeline): the energy reader, on another host in a
    deployment, is discovered after the driver plays; the first window's report still reaches it,
    and the events are not held back for it."""
    from hsnn_perception.msg import EnergyReport

    ns, probe, packets, _ = listening("drv_held", energy=False)
    params = three_windows(hold_unmatched_s=60.0)
    with start({"event_driver"}, ns, tmp_path, event_driver=params) as group:
        assert probe.spin_until(lambda: source_finished(probe), 60), group.log("event_driver")
        assert packets, "the events were held back"
        reports: list[EnergyReport] = []
        probe.node.create_subscription(EnergyReport, "energy", reports.append, reliable_qos(100))
        assert probe.spin_until(lambda: len(reports) >= 3, 60), group.log("event_driver")
        assert sorted(r.window_id for r in reports)[:3] == [0, 1, 2]
        assert {r.stage for r in reports} == {"driver"}


def test_energy_reports_wait_report_delay_s_and_deactivation_sends_them(ros, tmp_path):
    """Energy reports are sent report_delay_s after their window (off the data hops); what still
    waits when the node is deactivated goes out then, not lost."""
    ns, probe, _, reports = listening("drv_later")
    with start(
        {"event_driver"}, ns, tmp_path, event_driver=three_windows(report_delay_s=0.3)
    ) as group:
        assert probe.spin_until(lambda: source_finished(probe), 60), group.log("event_driver")
        assert probe.spin_until(lambda: len(reports) >= 3, 30), group.log("event_driver")
        assert sorted(r.window_id for r in reports)[:3] == [0, 1, 2]

    # A long delay (more than the longest wait, MAX_REPORT_DELAY_S: 30 s), and deactivation
    # before it is up.
    ns, probe, _, reports = listening("drv_flush")
    params = three_windows(report_delay_s=600.0)
    with start({"event_driver"}, ns, tmp_path, event_driver=params) as group:
        driver = LifecycleClient(probe.node, f"/{ns}/event_driver")

        def spin(seconds: float) -> None:
            probe.executor.spin_once(timeout_sec=seconds)

        assert probe.spin_until(lambda: source_finished(probe), 60), group.log("event_driver")
        assert reports == [], "sent before report_delay_s"
        assert driver.transition("deactivate", spin), group.log("event_driver")
        assert probe.spin_until(lambda: len(reports) >= 3, 30), group.log("event_driver")
        assert sorted(r.window_id for r in reports)[:3] == [0, 1, 2]


def shared_memory_segments(pid: int) -> list[int]:
    """Sizes of the Fast DDS shared-memory segments mapped by process ``pid``."""
    sizes = []
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        fields = line.split()
        if len(fields) >= 6 and re.fullmatch(r"/dev/shm/fastdds_[0-9a-f]+", fields[5]):
            low, high = (int(x, 16) for x in fields[0].split("-"))
            sizes.append(high - low)
    return sizes


@pytest.mark.parametrize("profile", ["shipped", "off"])
def test_the_driver_process_gets_the_event_stream_transport(ros, tmp_path, profile):
    """The driver's participant has the 8 MiB shared-memory segment of
    fastdds_event_streams.xml (Fast DDS's own is 512 KiB: 1.4-13 % of 1 ms packets lost at 20 M
    events/s, bench/throughput.py); HSNN_FASTDDS_PROFILE="" leaves Fast DDS's default."""
    configured = [name for name in FASTDDS_CONFIGURATION if os.environ.get(name)]
    if configured:
        pytest.skip(f"this environment configures Fast DDS itself ({', '.join(configured)})")
    env = {"HSNN_FASTDDS_PROFILE": ""} if profile == "off" else {}
    ns = f"drv_shm_{random.randint(0, 10**6)}"
    probe = Probe(ns)
    specs = pipeline(stages=["driver"], overrides={"event_driver": {"source": "synthetic"}})
    with ProcessGroup(specs, namespace=ns, env=env, log_dir=tmp_path).start() as group:
        active = lambda: probe.diag("event_driver").get("lifecycle_state") == "active"  # noqa: E731
        assert probe.spin_until(active, 60), group.log("event_driver")
        segments = shared_memory_segments(group.procs["event_driver"].pid)
    assert segments, "no Fast DDS shared-memory segment mapped"
    if profile == "shipped":
        assert max(segments) >= 8 * 2**20, segments
    else:
        assert max(segments) < 2**20, segments


def test_unknown_encoding_is_refused_at_configure(ros, tmp_path):
    ns = f"drv_enc_{random.randint(0, 10**6)}"
    probe = Probe(ns)
    with start({"event_driver"}, ns, tmp_path, event_driver={"encoding": "evt2"}) as group:
        assert probe.spin_until(
            lambda: int(probe.diag("event_driver").get("errors", 0)) >= 1, 60
        ), group.log("event_driver")
        diag = probe.diag("event_driver")
        assert diag["lifecycle_state"] == "unconfigured"
        expected = "expected one of mono, evt3, libcaer, libcaer_cmp"
        assert f"unknown encoding 'evt2'; {expected}" in diag["message"]
        assert group.poll()["event_driver"] is None


def test_stock_driver_type_end_to_end_driver_to_snn_node(ros, tmp_path):
    """event_type event_camera_msgs/msg/EventPacket on both ends: the driver publishes the stock
    drivers' type (and only it) on the events topic, the SNN node subscribes with it (DDS
    matches on type name and hash) and cuts windows out of it."""
    from event_camera_msgs.msg import EventPacket as StockPacket

    from hsnn_perception.core.io.bag.msgtypes import MSG_EVENT_CAMERA_PACKET

    ns = f"drv_stock_{random.randint(0, 10**6)}"
    stock = {"event_type": MSG_EVENT_CAMERA_PACKET}
    probe = Probe(ns)
    heard: list[StockPacket] = []
    probe.node.create_subscription(StockPacket, "events", heard.append, sensor_qos(1000))
    # Endless and in real time, held until the SNN node and the probe listen: a finite stream
    # (6 windows, 1.7 s) was once over before a loaded host had matched every best-effort
    # connection, and no window ever closed.
    driver = {
        **stock,
        "source": "synthetic",
        "num_samples": 0,
        "speed": 1.0,
        "wait_for_subscribers": 2,
        "wait_for_topics": ["snn/spikes"],
        "settle_s": 1.0,
    }
    with start(
        {"event_driver", "snn_feature"}, ns, tmp_path, event_driver=driver, snn_feature=stock
    ) as group:
        assert probe.spin_until(lambda: len(probe.received["snn/spikes"]) >= 2, 120), group.log(
            "event_driver"
        ) + group.log("snn_feature")
        types = dict(probe.node.get_topic_names_and_types())
        assert types[f"/{ns}/events"] == [MSG_EVENT_CAMERA_PACKET]
        assert heard and {(p.width, p.height) for p in heard} == {(128, 128)}
        assert int(probe.diag("snn_feature").get("errors.decode", 0)) == 0


def test_event_type_outside_the_allowlist_is_refused_at_configure(ros, tmp_path):
    ns = f"drv_type_{random.randint(0, 10**6)}"
    probe = Probe(ns)
    driver = {"event_type": "std_msgs/msg/String"}
    with start({"event_driver"}, ns, tmp_path, event_driver=driver) as group:
        assert probe.spin_until(
            lambda: int(probe.diag("event_driver").get("errors", 0)) >= 1, 60
        ), group.log("event_driver")
        diag = probe.diag("event_driver")
        assert diag["lifecycle_state"] == "unconfigured"
        assert "event_type 'std_msgs/msg/String' is not allowed" in diag["message"]
        assert group.poll()["event_driver"] is None


@pytest.mark.parametrize("encoding", ["evt3", "mono"])
def test_recorded_payloads_are_passed_through_untouched(ros, tmp_path, encoding):
    """A bag in the published encoding, no filters: every payload goes out byte for byte as
    recorded (an EVT3 stream cut anywhere, as a stock driver records it, stays cut there), under
    the driver's own seq numbers, with the events counted and the pace reported."""
    from hsnn_perception.core.events.codecs import encode_packet
    from hsnn_perception.core.io.bag.msgtypes import EventPacketData
    from hsnn_perception.core.io.bag.write import write_event_bag

    ev = stream(30_000, 1_000_000, 600_000)
    if encoding == "evt3":  # one sensor stream, cut between words without regard to events
        words = encode_packet(ev, "evt3", W, H)[1]
        payloads = [(0, words[k : k + 3000]) for k in range(0, len(words), 3000)]
    else:
        cuts = np.searchsorted(ev["t"], np.arange(1_000_000, 1_600_001, 20_000))
        payloads = [encode_packet(c, "mono", W, H) for c in np.split(ev, cuts) if c.size]
    recorded = [
        EventPacketData(k * 1000, tb, encoding, W, H, payload, 100 + k)
        for k, (tb, payload) in enumerate(payloads)
    ]
    write_event_bag(tmp_path / "bag", recorded)
    ns = f"drv_pass_{random.randint(0, 10**6)}"
    probe = Probe(ns)
    packets: list[EventPacket] = []
    probe.node.create_subscription(EventPacket, "events", packets.append, reliable_qos(1000))
    params = {
        "source": "rosbag",
        "path": str(tmp_path / "bag"),
        "encoding": encoding,
        "speed": 0.0,
        "events_qos": "reliable",
        "wait_for_subscribers": 1,
        "diagnostics_period_s": 0.2,
    }
    with start({"event_driver"}, ns, tmp_path, event_driver=params) as group:
        done = lambda: probe.diag("event_driver").get("source_finished") == "True"  # noqa: E731
        assert probe.spin_until(done, 60), group.log("event_driver")
        probe.spin_until(lambda: len(packets) >= len(recorded), 10)
    assert [bytes(p.events) for p in packets] == [r.payload for r in recorded]
    assert [p.seq for p in packets] == list(range(len(recorded)))
    assert {(p.encoding, p.width, p.height) for p in packets} == {(encoding, W, H)}
    diag = probe.diag("event_driver")
    assert int(diag["published.events"]) == ev.size
    assert "pace" in diag and "late_max_ms" in diag
