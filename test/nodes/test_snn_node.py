"""The SNN feature node on a raw EVT3 stream cut anywhere (as event_camera_msgs' metavision
driver publishes a Prophesee camera): the decoder state is carried from packet to packet, so the
node gives exactly the spikes of the same events sent as self-contained mono packets."""

from __future__ import annotations

import numpy as np
import pytest
import rclpy

from hsnn_perception.core.events.codecs import encode_packet, make_events
from hsnn_perception.core.hybrid.bundle import ModelBundle
from hsnn_perception.msg import EventPacket

from .test_bad_input import event_packet
from .test_snn_node_backends import run_snn_node

pytestmark = pytest.mark.slow
FIRST = 50  # window ids of the test stream (after a warm-up window 0)


@pytest.fixture
def ros():
    rclpy.init()
    yield
    rclpy.try_shutdown()


def _events(bundle: ModelBundle) -> np.ndarray:
    rng = np.random.default_rng(4)
    n = 6000
    w = bundle.window_us
    t = np.sort(rng.integers(FIRST * w, (FIRST + 3) * w, n))
    ev = make_events(
        t,
        rng.integers(0, bundle.sensor_width, n),
        rng.integers(0, bundle.sensor_height, n),
        rng.integers(0, 2, n),
    )
    return ev[np.lexsort((ev["x"], ev["y"], ev["t"]))]


def _evt3_packets(bundle: ModelBundle, events: np.ndarray, seq0: int) -> list[EventPacket]:
    tb, payload = encode_packet(
        events, "evt3", bundle.sensor_width, bundle.sensor_height, use_vectors=True
    )
    words = np.frombuffer(payload, np.uint16)
    cuts = np.sort(np.random.default_rng(5).choice(np.arange(1, words.size), 30, replace=False))
    out = []
    for i, part in enumerate(np.split(words, cuts)):
        msg = EventPacket(
            height=bundle.sensor_height,
            width=bundle.sensor_width,
            seq=seq0 + i,
            time_base=tb,
            encoding="evt3",
            is_bigendian=False,
        )
        msg.events = part.tobytes()
        out.append(msg)
    return out


def _mono_packets(bundle: ModelBundle, events: np.ndarray, seq0: int) -> list[EventPacket]:
    w = bundle.window_us
    edges = np.searchsorted(events["t"], np.arange(FIRST * w, (FIRST + 4) * w, w // 4))
    parts = [events[a:b] for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]
    return [event_packet(p, bundle, seq0 + i) for i, p in enumerate(parts)]


def test_evt3_stream_cut_anywhere_gives_the_spikes_of_mono_packets(
    ros, tmp_path, default_bundle_dir
):
    bundle = ModelBundle.load(default_bundle_dir)
    events = _events(bundle)
    run = {"first": FIRST, "n_windows": 2, "settle_s": 0.5, "timeout_s": 60}
    mono, _ = run_snn_node(bundle, tmp_path, _mono_packets(bundle, events, 100), {}, **run)
    evt3, diag = run_snn_node(bundle, tmp_path, _evt3_packets(bundle, events, 100), {}, **run)
    assert sorted(mono)[:2] == sorted(evt3)[:2] == [FIRST, FIRST + 1]
    for window_id in (FIRST, FIRST + 1):
        np.testing.assert_array_equal(evt3[window_id], mono[window_id])
    assert sum(int(mono[w].sum()) for w in (FIRST, FIRST + 1)) > 0
    assert int(diag.get("errors.packet", 0)) == 0 and diag.get("evt3_state_resets") == "0"
    assert not any(k.startswith("dropped.events.") for k in diag), diag
