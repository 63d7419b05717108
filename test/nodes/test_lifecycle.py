"""A managed node goes through the whole lifecycle, as a nav2 lifecycle manager would drive it:
inactive nodes do not process, and a node cleaned up and configured again serves as before."""

from __future__ import annotations

import random

import numpy as np
import pytest
import rclpy

from hsnn_perception.core.hybrid.bundle import ModelBundle
from hsnn_perception.msg import TensorList
from hsnn_perception.nodes.base import reliable_qos
from hsnn_perception.nodes.conversions import make_tensor_list
from hsnn_perception.tools.monitor import LifecycleClient

from .test_bad_input import Probe, start

pytestmark = pytest.mark.slow


@pytest.fixture
def ros():
    rclpy.init()
    yield
    rclpy.try_shutdown()


def test_classifier_lifecycle_round_trip(ros, tmp_path, default_bundle_dir):
    bundle = ModelBundle.load(default_bundle_dir)
    ns = f"life_{random.randint(0, 10**6)}"
    probe = Probe(ns)
    pub = probe.node.create_publisher(TensorList, "tensors", reliable_qos(50))
    x = np.random.default_rng(2).random(bundle.ann_input_shape).astype(np.float32)

    def spin(seconds: float) -> None:
        probe.executor.spin_once(timeout_sec=seconds)

    def classified_after_publishing(window_id: int, timeout_s: float) -> bool:
        def published_and_seen() -> bool:
            pub.publish(make_tensor_list(window_id, 0, "", {bundle.ann_input_name: x}))
            return any(c.window_id == window_id for c in probe.received["classification"])

        return probe.spin_until(published_and_seen, timeout_s)

    with start({"classifier"}, ns, tmp_path, classifier={"autostart": False}) as group:
        node = LifecycleClient(probe.node, f"/{ns}/classifier")
        assert node.state(spin, 60) == "unconfigured"
        for transition, state in (("configure", "inactive"), ("activate", "active")):
            assert node.transition(transition, spin), group.log("classifier")
            assert node.state(spin) == state
        assert classified_after_publishing(1, 60), group.log("classifier")
        assert node.transition("deactivate", spin) and node.state(spin) == "inactive"
        probe.received["classification"].clear()
        assert not classified_after_publishing(2, 3), "an inactive node does not classify"
        assert node.transition("cleanup", spin) and node.state(spin) == "unconfigured"
        assert node.transition("configure", spin) and node.transition("activate", spin)
        assert classified_after_publishing(3, 60), group.log("classifier")
        assert group.poll()["classifier"] is None


def test_nodes_start_and_stamp_in_sim_time(ros, tmp_path, default_bundle_dir):
    """use_sim_time with no /clock yet: the nodes still start and report (their housekeeping
    timers run on the steady clock); once /clock runs, EnergyReport headers follow it while
    host_stamp stays on the host's clock, so latencies across nodes still add up."""
    import time

    from rosgraph_msgs.msg import Clock

    from hsnn_perception.core.io.bag.msgtypes import time_to_ns
    from hsnn_perception.msg import EnergyReport, EventPacket
    from hsnn_perception.nodes.base import sensor_qos
    from hsnn_perception.nodes.conversions import us_to_time

    from .test_bad_input import good_packets

    bundle = ModelBundle.load(default_bundle_dir)
    ns = f"simtime_{random.randint(0, 10**6)}"
    nodes = ("snn_feature", "accumulator_bridge", "classifier", "energy_aggregator")
    sim = {"use_sim_time": True, "diagnostics_period_s": 0.2}
    with start(set(nodes), ns, tmp_path, **{n: sim for n in nodes}) as group:
        probe = Probe(ns)
        reports: list[EnergyReport] = []
        probe.node.create_subscription(EnergyReport, "energy", reports.append, reliable_qos(50))
        events = probe.node.create_publisher(EventPacket, "events", sensor_qos(100))
        clock = probe.node.create_publisher(Clock, "/clock", reliable_qos(10))
        active = lambda: all(  # noqa: E731
            probe.diag(n).get("lifecycle_state") == "active" for n in nodes
        )
        assert probe.spin_until(active, 60), group.log("snn_feature")
        probe.wait_for_subscriber(events)
        probe.wait_for_subscriber(clock)
        sim_s = 1234
        clock.publish(Clock(clock=us_to_time(sim_s * 1_000_000)))
        probe.spin_until(lambda: False, 0.5)
        for msg in good_packets(bundle, 2):
            events.publish(msg)
            probe.spin_until(lambda: False, 0.05)
        stages = {"snn", "bridge", "classifier"}
        assert probe.spin_until(lambda: stages <= {r.stage for r in reports}, 60), group.log(
            "snn_feature"
        )
    wall_ns = time.time_ns()
    for r in reports:
        assert r.header.stamp.sec == sim_s, (r.stage, r.header.stamp)  # node clock = /clock
        assert abs(time_to_ns(r.host_stamp) - wall_ns) < 120e9, (r.stage, r.host_stamp)
