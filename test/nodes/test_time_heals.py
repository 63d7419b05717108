"""Event time that heals, over DDS: after one packet with time_base 2^64-1 (and one far ahead in
ROS time), and after a driver restarted at an earlier time, good windows are classified again,
with the same predictions as before (docs/events.md, "Event time that heals")."""

from __future__ import annotations

import random

import pytest
import rclpy

from hsnn_perception.core.hybrid.bundle import ModelBundle
from hsnn_perception.msg import EventPacket
from hsnn_perception.nodes.base import sensor_qos

from .test_bad_input import Probe, good_packets, start

pytestmark = pytest.mark.slow
PIPELINE = {"snn_feature", "accumulator_bridge", "classifier"}


@pytest.fixture
def ros():
    rclpy.init()
    yield
    rclpy.try_shutdown()


def stamp_us(msg) -> int:  # noqa: ANN001
    return msg.window_stamp.sec * 1_000_000 + msg.window_stamp.nanosec // 1000


def classify(
    probe: Probe, pub, packets: list[EventPacket], windows: list[int], window_us: int
) -> list[int]:  # noqa: ANN001
    """Publish ``packets`` and return the class ids of the windows starting at ``windows``
    (window indices), in that order; fails if one never comes."""
    want = {k * window_us for k in windows}
    got: dict[int, int] = {}

    def done() -> bool:
        for c in probe.received["classification"]:
            if stamp_us(c) in want:
                got[stamp_us(c)] = c.class_id
        probe.received["classification"].clear()
        return len(got) == len(want)

    for msg in packets:
        pub.publish(msg)
        probe.spin_until(lambda: False, 0.05)
    assert probe.spin_until(done, 60), f"windows {sorted(want - set(got))} never classified"
    return [got[k * window_us] for k in windows]


def wild_packet(bundle: ModelBundle, seq: int, time_base: int) -> EventPacket:
    msg = EventPacket(
        height=bundle.sensor_height,
        width=bundle.sensor_width,
        seq=seq,
        time_base=time_base,
        encoding="mono",
    )
    msg.events = bytes(8) * 2  # two events at x = y = 0, dt = 0
    return msg


def test_windows_come_back_after_a_wild_time_base_and_a_driver_restart(
    ros, tmp_path, default_bundle_dir
):
    bundle = ModelBundle.load(default_bundle_dir)
    w = bundle.window_us
    ns = f"heal_{random.randint(0, 10**6)}"
    with start(PIPELINE, ns, tmp_path) as group:
        probe = Probe(ns)
        pub = probe.node.create_publisher(EventPacket, "events", sensor_qos(100))
        probe.wait_for_subscriber(pub)
        logs = lambda: "".join(group.log(n) for n in sorted(PIPELINE))  # noqa: E731
        # Warm-up until windows come out (every connection matched), then the baseline.
        for attempt in range(6):
            for msg in good_packets(bundle, 3, 10 * attempt, 10 * attempt):
                pub.publish(msg)
                probe.spin_until(lambda: False, 0.05)
            if probe.spin_until(lambda: len(probe.received["classification"]) >= 1, 15):
                break
        else:
            pytest.fail("no classification from the warm-up stream:\n" + logs())
        baseline = classify(probe, pub, good_packets(bundle, 4, 100, 100), [100, 101, 102, 103], w)

        # One packet at time_base 2^64-1 (beyond any ROS time: rejected), one 10^6 s ahead (held,
        # then discarded by the next good packet), then good input again.
        pub.publish(wild_packet(bundle, 105, (1 << 64) - 1))
        pub.publish(wild_packet(bundle, 106, 10**15))
        after_wild = classify(
            probe, pub, good_packets(bundle, 4, 110, 110), [110, 111, 112, 113], w
        )
        assert after_wild == baseline, logs()

        # The driver restarts: seq and sensor time start over, far before the windows so far.
        after_restart = classify(probe, pub, good_packets(bundle, 4, 0, 0), [0, 1, 2, 3], w)
        assert after_restart == baseline, logs()

        diag = lambda: probe.diag("snn_feature")  # noqa: E731
        assert probe.spin_until(
            lambda: (
                int(diag().get("errors.time_range", 0)) >= 1
                and int(diag().get("reorigins", 0)) >= 1
                and int(diag().get("out_of_range_events", 0)) >= 2
            ),
            10,
        ), diag()
        assert int(diag().get("errors.internal", 0)) == 0, diag()
        assert all(code is None for code in group.poll().values())
