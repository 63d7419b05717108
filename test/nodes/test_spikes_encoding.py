"""snn/spikes in its sparse forms over real DDS: the SNN node sends what its spikes_encoding
parameter says, the accumulator bridge decodes every form to the same dense spikes, bit for bit,
and rejects a malformed sparse message with a counted reason."""

from __future__ import annotations

import random

import numpy as np
import pytest
import rclpy

from hsnn_perception.core.hybrid.accumulator import accumulate, frames_to_channels
from hsnn_perception.core.hybrid.bundle import ModelBundle
from hsnn_perception.core.io.spike_codec import decode_spikes, encode_spikes
from hsnn_perception.msg import EventPacket, TensorList
from hsnn_perception.nodes.base import reliable_qos, sensor_qos
from hsnn_perception.nodes.conversions import make_tensor_list, read_tensor_list

from .test_bad_input import Probe, good_packets, start, warm_up

pytestmark = pytest.mark.slow
FIRST, WINDOWS = 50, 3


@pytest.fixture
def ros():
    rclpy.init()
    yield
    rclpy.try_shutdown()


def run_snn_and_bridge(bundle: ModelBundle, tmp_path, encoding: str) -> dict:
    """SNN node (spikes_encoding ``encoding``) -> bridge; what the probe saw, by window start."""
    ns = f"enc_{random.randint(0, 10**6)}"
    tmp_path.mkdir()
    overrides = {
        "snn_feature": {"spikes_encoding": encoding, "diagnostics_period_s": 0.2},
        "accumulator_bridge": {"diagnostics_period_s": 0.2},
    }
    with start({"snn_feature", "accumulator_bridge"}, ns, tmp_path, **overrides) as group:
        probe = Probe(ns)
        pub = probe.node.create_publisher(EventPacket, "events", sensor_qos(500))
        probe.wait_for_subscriber(pub)
        warm = warm_up(probe, pub, bundle, lambda: bool(probe.received["tensors"]))
        assert warm, group.log("snn_feature") + group.log("accumulator_bridge")
        for msg in good_packets(bundle, WINDOWS, seq0=100, t0_window=FIRST):
            pub.publish(msg)
            probe.spin_until(lambda: False, 0.02)

        def after_warm_up(topic: str) -> dict[int, TensorList]:
            msgs = {read_tensor_list(m)[1]: m for m in probe.received[topic]}
            # The windows of the test stream (its partial last one may be flushed, or not yet).
            first, end = FIRST * bundle.window_us, (FIRST + WINDOWS) * bundle.window_us
            return {t: m for t, m in msgs.items() if first <= t < end}

        assert probe.spin_until(
            lambda: min(len(after_warm_up(t)) for t in ("snn/spikes", "tensors")) >= WINDOWS, 60
        ), group.log("snn_feature") + group.log("accumulator_bridge")
        probe.spin_until(lambda: False, 0.5)  # one more diagnostics period
        return {
            "spikes": after_warm_up("snn/spikes"),
            "tensors": after_warm_up("tensors"),
            "snn": probe.diag("snn_feature"),
            "bridge": probe.diag("accumulator_bridge"),
        }


def test_sparse_spikes_reach_the_bridge_as_the_dense_ones(ros, tmp_path, default_bundle_dir):
    bundle = ModelBundle.load(default_bundle_dir)
    dense = run_snn_and_bridge(bundle, tmp_path / "dense", "dense")
    sparse = run_snn_and_bridge(bundle, tmp_path / "sparse", "sparse")
    assert sorted(dense["spikes"]) == sorted(sparse["spikes"]) == sorted(sparse["tensors"])
    shape = (bundle.timesteps, *bundle.feature_shape)
    for start_us, msg in sparse["spikes"].items():
        names = {t.name for t in msg.tensors}
        assert "spikes" not in names and names & {"spikes_index", "spikes_mask"}, names
        _, _, sent = read_tensor_list(msg)
        _, _, reference = read_tensor_list(dense["spikes"][start_us])
        assert set(reference) == {"spikes"}
        assert sum(a.nbytes for a in sent.values()) < reference["spikes"].nbytes
        spikes = decode_spikes(sent)
        assert spikes.shape == shape and spikes.dtype == reference["spikes"].dtype
        assert spikes.tobytes() == reference["spikes"].tobytes()
        # The bridge's output from the sparse message equals the one from the dense message.
        got = read_tensor_list(sparse["tensors"][start_us])[2]
        want = read_tensor_list(dense["tensors"][start_us])[2]
        assert got.keys() == want.keys()
        for name in got:
            assert got[name].tobytes() == want[name].tobytes()
    assert sum(int(decode_spikes(read_tensor_list(m)[2]).sum()) for m in sparse["spikes"].values())
    assert int(sparse["bridge"].get("errors", 0)) == 0, sparse["bridge"]
    assert int(sparse["snn"].get("errors", 0)) == 0, sparse["snn"]


def test_bridge_reads_every_form_and_rejects_a_malformed_one(ros, tmp_path, default_bundle_dir):
    bundle = ModelBundle.load(default_bundle_dir)
    ns = f"enc_bridge_{random.randint(0, 10**6)}"
    shape = (bundle.timesteps, *bundle.feature_shape)
    rng = np.random.default_rng(7)
    binary = (rng.random(shape) < 0.3).astype(np.uint8)  # dense enough for the bit mask
    graded = (binary * rng.integers(1, 4, shape)).astype(np.uint8)  # values other than 1
    forms = {
        "dense": encode_spikes(binary, "dense"),
        "mask": encode_spikes(binary, "sparse"),
        "index": {
            "spikes_index": np.flatnonzero(binary).astype(np.uint32),
            "spikes_value": np.zeros(0, np.uint8),
            "spikes_shape": np.array(shape, np.int64),
        },
        "graded": encode_spikes(graded, "sparse"),
    }
    assert "spikes_mask" in forms["mask"] and forms["graded"]["spikes_value"].size
    with start({"accumulator_bridge"}, ns, tmp_path, accumulator_bridge={}) as group:
        probe = Probe(ns)
        pub = probe.node.create_publisher(TensorList, "snn/spikes", reliable_qos(50))
        probe.wait_for_subscriber(pub)
        assert probe.spin_until(
            lambda: (
                pub.publish(make_tensor_list(0, 0, "", forms["dense"]))
                or bool(probe.received["tensors"])
            ),
            60,
        ), group.log("accumulator_bridge")
        probe.received["tensors"].clear()
        bad = dict(forms["mask"])
        bad["spikes_shape"] = np.array([shape[0] * 2, *shape[1:]], np.int64)  # claims 2x entries
        ids = {"dense": 1, "mask": 2, "bad": 3, "index": 4, "graded": 5}
        for name, window_id in ids.items():
            tensors = bad if name == "bad" else forms[name]
            pub.publish(make_tensor_list(window_id, window_id * bundle.window_us, "", tensors))

        def seen() -> set[int]:  # warm-up windows (id 0) may still be arriving
            return {read_tensor_list(m)[0] for m in probe.received["tensors"]} - {0}

        assert probe.spin_until(lambda: len(seen()) >= 4, 30), group.log("accumulator_bridge")
        assert probe.spin_until(
            lambda: int(probe.diag("accumulator_bridge").get("errors.tensor", 0)) >= 1, 30
        ), probe.diagnostics
        assert "more than" in probe.diag("accumulator_bridge")["message"]
        out = {read_tensor_list(m)[0]: read_tensor_list(m)[2] for m in probe.received["tensors"]}
        assert sorted(seen()) == [1, 2, 4, 5]

        def expected(spikes: np.ndarray) -> bytes:
            frames = accumulate(spikes[np.newaxis], bundle.interval)
            return frames_to_channels(frames).tobytes()

        name = bundle.ann_input_name
        for window_id in (1, 2, 4):
            assert out[window_id][name].tobytes() == expected(binary)
        assert out[5][name].tobytes() == expected(graded) != expected(binary)
        assert group.poll()["accumulator_bridge"] is None


def test_an_unknown_encoding_is_refused_at_configure(ros):
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter

    from hsnn_perception.nodes.snn_node import SnnFeatureNode

    node = SnnFeatureNode(
        parameter_overrides=[
            Parameter("autostart", value=False),
            Parameter("spikes_encoding", value="telegraph"),
        ]
    )
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert "telegraph" in node.last_errors["parameter"]
        assert node.counters["errors.parameter"] == 1
    finally:
        node.destroy_node()
