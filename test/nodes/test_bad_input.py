"""Bad input reaches each node over DDS: it is logged, counted in /diagnostics, and the node keeps
serving the next good message. A missing model or a bad parameter leaves the node up."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node

from hsnn_perception.core.events.codecs import EVENT_DTYPE, encode_packet
from hsnn_perception.core.hybrid.bundle import ModelBundle
from hsnn_perception.graph import STAGE_NODES, pipeline, qualified_name, unmanaged
from hsnn_perception.launcher import ProcessGroup
from hsnn_perception.msg import Classification, EventPacket, TensorList
from hsnn_perception.nodes.base import reliable_qos, sensor_qos
from hsnn_perception.nodes.conversions import make_tensor_list

pytestmark = pytest.mark.slow


class Probe:
    """A test node that publishes to and listens on the namespace of the nodes under test."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.node = Node(f"probe_{random.randint(0, 10**6)}", namespace=namespace)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.received: dict[str, list] = {"snn/spikes": [], "tensors": [], "classification": []}
        self.diagnostics: dict[str, dict[str, str]] = {}
        for topic, kind in (
            ("snn/spikes", TensorList),
            ("tensors", TensorList),
            ("classification", Classification),
        ):
            self.node.create_subscription(
                kind, topic, self.received[topic].append, reliable_qos(50)
            )
        self.node.create_subscription(
            DiagnosticArray, "/diagnostics", self._on_diag, reliable_qos(50)
        )

    def _on_diag(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            values = {kv.key: kv.value for kv in status.values}
            values["message"] = status.message
            self.diagnostics[status.hardware_id] = values

    def diag(self, node: str) -> dict[str, str]:
        return self.diagnostics.get(qualified_name(self.namespace, node), {})

    def spin_until(self, predicate: Callable[[], bool], timeout_s: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.05)
            if predicate():
                return True
        return False

    def wait_for_subscriber(self, publisher, timeout_s: float = 60.0) -> None:  # noqa: ANN001
        assert self.spin_until(lambda: publisher.get_subscription_count() > 0, timeout_s), (
            f"no subscriber on {publisher.topic_name}"
        )


@pytest.fixture
def ros():
    rclpy.init()
    yield
    rclpy.try_shutdown()


def start(names: set[str], namespace: str, tmp_path, **overrides) -> ProcessGroup:
    """Nodes ``names`` of the graph, brought up by its lifecycle manager except those whose
    overrides say ``autostart: False`` (the test drives them)."""
    specs = pipeline(
        stages=[stage for stage, node in STAGE_NODES.items() if node in names], overrides=overrides
    )
    for name, params in overrides.items():
        if params.get("autostart") is False:
            specs = unmanaged(specs, name)
    return ProcessGroup(specs, namespace=namespace, log_dir=tmp_path).start()


def good_packets(
    bundle: ModelBundle, n_windows: int, seq0: int = 0, t0_window: int = 0
) -> list[EventPacket]:
    """Random events filling ``n_windows`` + 1 windows, so the first ``n_windows`` complete."""
    rng = np.random.default_rng(0)
    packets = []
    for k in range(t0_window, t0_window + n_windows + 1):
        events = np.zeros(3000, dtype=EVENT_DTYPE)
        events["t"] = np.sort(rng.integers(k * bundle.window_us, (k + 1) * bundle.window_us, 3000))
        events["x"] = rng.integers(0, bundle.sensor_width, 3000)
        events["y"] = rng.integers(0, bundle.sensor_height, 3000)
        events["p"] = rng.integers(0, 2, 3000)
        packets.append(event_packet(events, bundle, seq0 + k))
    return packets


def warm_up(
    probe: Probe, pub, bundle: ModelBundle, done: Callable[[], bool], timeout_s: float = 120
) -> bool:
    """Publish windows 0, 1, 2, ... (one packet each, every 1.5 s, slow enough for Lava's
    simulation to keep up, so no warm-up window is still queued when the test's own stream at
    window 50 starts; at most 40) until ``done()``: each closes the one before, so the first output
    comes whichever packets best-effort transport lost while the connection was being matched
    (re-sending the same two windows could not: a node that got the second first never sees its
    window close)."""
    state = {"k": 0, "next": 0.0}

    def step() -> bool:
        if done():
            return True
        now = time.monotonic()
        if now >= state["next"] and state["k"] < 40:
            for msg in good_packets(bundle, 0, seq0=0, t0_window=state["k"]):
                pub.publish(msg)
            state["k"] += 1
            state["next"] = now + 1.5
        return False

    return probe.spin_until(step, timeout_s)


def event_packet(events, bundle: ModelBundle, seq: int, encoding: str = "mono") -> EventPacket:
    time_base, payload = encode_packet(events, "mono", bundle.sensor_width, bundle.sensor_height)
    msg = EventPacket(
        height=bundle.sensor_height,
        width=bundle.sensor_width,
        seq=seq,
        time_base=time_base,
        encoding=encoding,
        is_bigendian=False,
    )
    msg.events = payload
    return msg


def test_snn_node_survives_malformed_packets(ros, tmp_path, default_bundle_dir):
    bundle = ModelBundle.load(default_bundle_dir)
    ns = f"bad_snn_{random.randint(0, 10**6)}"
    with start({"snn_feature"}, ns, tmp_path) as group:
        probe = Probe(ns)
        pub = probe.node.create_publisher(EventPacket, "events", sensor_qos(100))
        probe.wait_for_subscriber(pub)
        good = good_packets(bundle, 2)
        bad = []
        short = event_packet(np.zeros(0, EVENT_DTYPE), bundle, 100)
        short.events = bytes(7)  # not a whole number of 8-byte mono words
        bad.append(short)
        unknown = event_packet(np.zeros(0, EVENT_DTYPE), bundle, 101, encoding="foo")
        unknown.events = bytes(8)
        bad.append(unknown)
        outside = np.zeros(1, EVENT_DTYPE)
        outside["x"] = bundle.sensor_width + 5
        time_base, payload = encode_packet(outside, "mono", 0, 0)
        oob = EventPacket(
            height=bundle.sensor_height,
            width=bundle.sensor_width,
            seq=102,
            time_base=time_base,
            encoding="mono",
        )
        oob.events = payload
        bad.append(oob)
        backwards = np.zeros(2, EVENT_DTYPE)
        backwards["t"] = [500, 100]
        time_base, payload = encode_packet(np.sort(backwards, order="t"), "mono", 0, 0)
        # swap the two 8-byte words so time goes backwards inside the packet
        swapped = payload[8:16] + payload[0:8]
        back = EventPacket(
            height=bundle.sensor_height,
            width=bundle.sensor_width,
            seq=103,
            time_base=time_base,
            encoding="mono",
        )
        back.events = swapped
        bad.append(back)
        # A good stream first: once its window comes out, both ends of the connection are matched.
        for msg in good:
            pub.publish(msg)
            probe.spin_until(lambda: False, 0.05)
        assert probe.spin_until(lambda: len(probe.received["snn/spikes"]) >= 2), group.log(
            "snn_feature"
        )
        for msg in bad:
            pub.publish(msg)
            probe.spin_until(lambda: False, 0.05)
        for msg in good_packets(bundle, 2, seq0=10, t0_window=10):
            pub.publish(msg)
            probe.spin_until(lambda: False, 0.05)
        assert probe.spin_until(lambda: len(probe.received["snn/spikes"]) >= 4), (
            "good packets after bad ones still give windows:\n" + group.log("snn_feature")
        )
        assert probe.spin_until(lambda: int(probe.diag("snn_feature").get("errors.packet", 0)) >= 4)
        assert group.poll()["snn_feature"] is None
        log = group.log("snn_feature")
        assert "foo" in log and "dropped" in log


def test_bridge_and_classifier_survive_bad_tensors(ros, tmp_path, default_bundle_dir):
    bundle = ModelBundle.load(default_bundle_dir)
    ns = f"bad_tensor_{random.randint(0, 10**6)}"
    with start({"accumulator_bridge", "classifier"}, ns, tmp_path) as group:
        probe = Probe(ns)
        spikes_pub = probe.node.create_publisher(TensorList, "snn/spikes", reliable_qos(50))
        tensors_pub = probe.node.create_publisher(TensorList, "tensors", reliable_qos(50))
        probe.wait_for_subscriber(spikes_pub)
        probe.wait_for_subscriber(tensors_pub)
        shape = (bundle.timesteps, *bundle.feature_shape)
        spikes = (np.random.default_rng(1).random(shape) < 0.2).astype(np.uint8)
        # Good input until it comes out the far end: then every connection is matched both ways.
        assert probe.spin_until(
            lambda: (
                spikes_pub.publish(make_tensor_list(0, 0, "", {"spikes": spikes}))
                or len(probe.received["classification"]) >= 1
            ),
            60,
        )
        # The same through the probe's own tensors publisher: the classifier has matched it only
        # once a tensor sent on it came back classified (volatile: earlier ones are not resent).
        good_tensor = np.zeros(bundle.ann_input_shape, np.float32)
        assert probe.spin_until(
            lambda: (
                tensors_pub.publish(
                    make_tensor_list(100, 0, "", {bundle.ann_input_name: good_tensor})
                )
                or any(c.window_id == 100 for c in probe.received["classification"])
            ),
            60,
        )
        probe.received["classification"].clear()
        # data size that does not match the declared shape
        wrong_size = make_tensor_list(0, 0, "", {"spikes": np.zeros(shape, np.uint8)})
        wrong_size.tensors[0].data = bytes(10)
        spikes_pub.publish(wrong_size)
        spikes_pub.publish(make_tensor_list(1, 0, "", {"spikes": np.zeros((3, 3), np.uint8)}))
        spikes_pub.publish(make_tensor_list(2, 0, "", {"other": np.zeros(shape, np.uint8)}))
        nan_input = np.full(bundle.ann_input_shape, np.nan, np.float32)
        tensors_pub.publish(make_tensor_list(3, 0, "", {bundle.ann_input_name: nan_input}))
        tensors_pub.publish(make_tensor_list(4, 0, "", {bundle.ann_input_name: np.zeros((1, 2))}))
        bad_rank = make_tensor_list(5, 0, "", {bundle.ann_input_name: nan_input})
        bad_rank.tensors[0].shape.rank = 7
        tensors_pub.publish(bad_rank)
        spikes_pub.publish(make_tensor_list(6, 960_000, "dvs", {"spikes": spikes}))
        assert probe.spin_until(
            lambda: any(c.window_id == 6 for c in probe.received["classification"])
        ), group.log("accumulator_bridge") + group.log("classifier")
        result = next(c for c in probe.received["classification"] if c.window_id == 6)
        assert result.window_id == 6 and result.window_stamp.sec == 0
        assert result.window_stamp.nanosec == 960_000_000
        assert 0 <= result.class_id < bundle.num_classes and len(result.scores) == 11
        assert probe.spin_until(
            lambda: (
                int(probe.diag("accumulator_bridge").get("errors.tensor", 0)) >= 3
                and int(probe.diag("classifier").get("errors.tensor", 0)) >= 3
            )
        ), probe.diagnostics
        assert "NaN" in group.log("classifier")
        assert all(code is None for code in group.poll().values())


def test_missing_model_and_bad_parameter_leave_nodes_up(ros, tmp_path):
    ns = f"bad_cfg_{random.randint(0, 10**6)}"
    overrides = {
        "classifier": {"model": str(tmp_path / "no_such_model")},
        "snn_feature": {"backend": "quantum"},
        "accumulator_bridge": {"interval": "three"},
        "event_driver": {"events_qos": "telepathic"},
    }
    nodes = ("classifier", "snn_feature", "accumulator_bridge", "event_driver")
    with start(set(nodes), ns, tmp_path, **overrides) as group:
        probe = Probe(ns)
        assert probe.spin_until(
            lambda: all(int(probe.diag(n).get("errors", 0)) >= 1 for n in nodes),
            60,
        ), probe.diagnostics
        for node in nodes:
            assert probe.diag(node)["lifecycle_state"] == "unconfigured"
        assert "no_such_model" in probe.diag("classifier")["message"]
        assert "quantum" in probe.diag("snn_feature")["message"]
        assert "three" in probe.diag("accumulator_bridge")["message"]
        assert "events_qos 'telepathic' unknown" in probe.diag("event_driver")["message"]
        time.sleep(0.5)
        assert all(code is None for code in group.poll().values()), "nodes stay up"


def test_event_subscription_type_is_a_parameter():
    from hsnn_perception.nodes.snn_node import load_message_type

    assert load_message_type("hsnn_perception/msg/EventPacket") is EventPacket
    assert load_message_type("hsnn_perception/EventPacket") is EventPacket
    with pytest.raises(ValueError, match="not allowed"):  # allowlist: test_security.py
        load_message_type("event_camera_msgs_missing/msg/EventPacket")
    with pytest.raises(ValueError, match="pkg/msg/Type"):
        load_message_type("EventPacket")
