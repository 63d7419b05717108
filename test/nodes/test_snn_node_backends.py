"""The SNN feature node with backend lava (Lava's Loihi2SimCfg fixed_pt) gives the same output
spikes over DDS as with the native runtime, window by window; lava-hw fails clearly here."""

from __future__ import annotations

import random

import numpy as np
import pytest
import rclpy

from hsnn_perception.core.hybrid.bundle import ModelBundle
from hsnn_perception.msg import EventPacket
from hsnn_perception.nodes.base import sensor_qos
from hsnn_perception.nodes.conversions import read_tensor_list

from .test_bad_input import Probe, good_packets, start, warm_up

pytestmark = pytest.mark.slow


@pytest.fixture
def ros():
    rclpy.init()
    yield
    rclpy.try_shutdown()


def run_snn_node(
    bundle: ModelBundle,
    tmp_path,
    packets: list[EventPacket],
    params: dict,
    first: int = 50,
    n_windows: int = 2,
    settle_s: float = 0.0,
    timeout_s: float = 180,
) -> tuple[dict[int, np.ndarray], dict[str, str]]:
    """Start an SNN node with ``params``, warm it up with window 0 (both ends of the connection
    matched once a window comes out), publish ``packets``; return the output spikes of windows
    ``first`` on (keyed by their start time in windows: after the jump from the warm-up the
    windower re-origins and window ids go on from the warm-up's) and the node's diagnostics
    ``settle_s`` after they came out."""
    ns = f"snn_{random.randint(0, 10**6)}"
    params = {"diagnostics_period_s": 0.2, **params}
    with start({"snn_feature"}, ns, tmp_path, snn_feature=params) as group:
        probe = Probe(ns)
        pub = probe.node.create_publisher(EventPacket, "events", sensor_qos(500))
        probe.wait_for_subscriber(pub)
        warm = warm_up(probe, pub, bundle, lambda: bool(probe.received["snn/spikes"]))
        assert warm, group.log("snn_feature")
        for msg in packets:
            pub.publish(msg)
            probe.spin_until(lambda: False, 0.02)
        assert probe.spin_until(
            lambda: (
                sum(
                    read_tensor_list(m)[1] >= first * bundle.window_us
                    for m in probe.received["snn/spikes"]
                )
                >= n_windows
            ),
            timeout_s,
        ), group.log("snn_feature")
        probe.spin_until(lambda: False, settle_s)
        out = {}
        for m in probe.received["snn/spikes"]:
            _, start_us, arrays = read_tensor_list(m)
            if start_us >= first * bundle.window_us:
                out[start_us // bundle.window_us] = arrays["spikes"].copy()
        return out, probe.diag("snn_feature")


def run_backend(
    backend: str, bundle: ModelBundle, tmp_path, n_windows: int
) -> dict[int, np.ndarray]:
    packets = good_packets(bundle, n_windows, seq0=100, t0_window=50)
    return run_snn_node(bundle, tmp_path, packets, {"backend": backend}, 50, n_windows)[0]


def test_lava_backend_matches_native_over_dds(ros, tmp_path, default_bundle_dir):
    bundle = ModelBundle.load(default_bundle_dir)
    native = run_backend("native", bundle, tmp_path, 2)
    lava = run_backend("lava", bundle, tmp_path, 2)
    assert sorted(native) == sorted(lava) == [50, 51]
    for window_id in native:
        assert native[window_id].shape == (bundle.timesteps, *bundle.feature_shape)
        np.testing.assert_array_equal(lava[window_id], native[window_id])
    assert sum(int(a.sum()) for a in native.values()) > 0, "the test input makes spikes"


def test_lava_hw_without_lava_loihi_is_a_clear_error(ros, tmp_path):
    ns = f"snn_hw_{random.randint(0, 10**6)}"
    with start({"snn_feature"}, ns, tmp_path, snn_feature={"backend": "lava-hw"}) as group:
        probe = Probe(ns)
        assert probe.spin_until(lambda: int(probe.diag("snn_feature").get("errors", 0)) >= 1, 90)
        assert "lava-loihi" in probe.diag("snn_feature")["message"]
        assert group.poll()["snn_feature"] is None
