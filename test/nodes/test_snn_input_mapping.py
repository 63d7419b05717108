"""Any sensor into the default model over DDS: a 1280x720 EVT3 stream (a Prophesee camera) into
the SNN node, whose model input is 32x32 from a 128x128 sensor. With ``input_mapping`` scale the
node must give exactly the spikes of a 128x128 stream whose events land on the same model pixels
(1280 -> 32 is 40 columns per input pixel, 720 -> 32 is 22.5 rows: a non-integer factor)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import rclpy

from hsnn_perception.core.events.codecs import encode_packet
from hsnn_perception.core.hybrid.bundle import ModelBundle
from hsnn_perception.msg import EventPacket
from hsnn_perception.nodes.base import sensor_qos

from .test_bad_input import Probe, good_packets, start
from .test_snn_node import FIRST, _events, _mono_packets
from .test_snn_node_backends import run_snn_node

pytestmark = pytest.mark.slow
W, H = 1280, 720


@pytest.fixture
def ros():
    rclpy.init()
    yield
    rclpy.try_shutdown()


def _to_hd(bundle: ModelBundle, events: np.ndarray) -> np.ndarray:
    """The events moved to a 1280x720 sensor, each onto a pixel that scale mapping sends to the
    model pixel its 128x128 original pools into (chosen here by hand, not by core/filters)."""
    fy, fx = bundle.sensor_height // bundle.height, bundle.sensor_width // bundle.width
    out = events.copy()
    col, row = events["x"].astype(np.int64) // fx, events["y"].astype(np.int64) // fy
    out["x"] = col * (W // bundle.width) + events["x"] % fx  # model pixel col: 40 columns
    out["y"] = -(-row * H // bundle.height)  # first row of pixel ``row``: ceil(22.5 * row)
    return out


def _hd_packets(events: np.ndarray, window_us: int, seq0: int) -> list[EventPacket]:
    edges = np.searchsorted(events["t"], np.arange(FIRST, FIRST + 4.25, 0.25) * window_us)
    packets = [EventPacket(height=H, width=W, seq=seq0 + i, encoding="evt3") for i in range(2)]
    for i, (a, b) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
        if b > a:
            time_base, payload = encode_packet(events[a:b], "evt3", W, H)
            msg = EventPacket(height=H, width=W, seq=seq0 + 2 + i, time_base=time_base)
            msg.encoding, msg.events = "evt3", payload
            packets.append(msg)
    return packets  # two empty packets first: a new geometry is taken on its third packet


def test_a_1280x720_stream_runs_with_the_default_model(ros, tmp_path, default_bundle_dir):
    bundle = ModelBundle.load(default_bundle_dir)
    assert (bundle.sensor_height, bundle.sensor_width, bundle.height) == (128, 128, 32)
    events = _events(bundle)
    run = {"first": FIRST, "n_windows": 2, "settle_s": 0.5, "timeout_s": 90}
    small, _ = run_snn_node(bundle, tmp_path, _mono_packets(bundle, events, 100), {}, **run)
    hd_packets = _hd_packets(_to_hd(bundle, events), bundle.window_us, 100)
    hd, diag = run_snn_node(bundle, tmp_path, hd_packets, {"input_mapping": "scale"}, **run)
    assert sorted(small)[:2] == sorted(hd)[:2] == [FIRST, FIRST + 1], diag
    for window_id in (FIRST, FIRST + 1):
        np.testing.assert_array_equal(hd[window_id], small[window_id])
    assert sum(int(small[w].sum()) for w in (FIRST, FIRST + 1)) > 0
    assert not any(k.startswith("dropped.events.") for k in diag), diag


def test_a_mapping_the_sensor_cannot_take_rejects_packets_with_the_reason(
    ros, tmp_path, default_bundle_dir
):
    bundle = ModelBundle.load(default_bundle_dir)
    ns = f"snn_roi_{random.randint(0, 10**6)}"
    roi = {"input_roi": [100, 0, 200, 64]}  # wider than the 128x128 sensor
    with start({"snn_feature"}, ns, tmp_path, snn_feature=roi) as group:
        probe = Probe(ns)
        pub = probe.node.create_publisher(EventPacket, "events", sensor_qos(100))
        probe.wait_for_subscriber(pub)
        assert probe.spin_until(
            lambda: (
                [pub.publish(m) for m in good_packets(bundle, 1)]
                and int(probe.diag("snn_feature").get("errors.geometry", 0)) >= 2
            ),
            60,
        ), group.log("snn_feature")
        assert "not inside the 128x128" in group.log("snn_feature")
        assert not probe.received["snn/spikes"]
        assert group.poll()["snn_feature"] is None, "the node stays up"
