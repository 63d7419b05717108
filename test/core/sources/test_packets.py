"""The driver's packet sources over real dv-processing files, cameras (none here) and streams."""

from __future__ import annotations

import socket
import time

import dv_processing as dv
import numpy as np
import pytest

from hsnn_perception.core.events.codecs import make_events
from hsnn_perception.core.events.filters import to_dv_store
from hsnn_perception.core.sources.dv import Aedat4FileSource, write_aedat4
from hsnn_perception.core.sources.live import CameraSource, NetworkStreamSource
from hsnn_perception.core.sources.packets import (
    BatchSource,
    FilteredSource,
    IteratorSource,
    ReadAheadSource,
    ReconnectingSource,
    filter_config,
)
from hsnn_perception.core.sources.streams import Packet

W, H = 64, 48


def stream(n: int = 2000, t0: int = 5_000_000, span: int = 40_000) -> np.ndarray:
    rng = np.random.default_rng(4)
    t = np.sort(rng.integers(t0, t0 + span, n))
    return make_events(t, rng.integers(0, W, n), rng.integers(0, H, n), rng.integers(0, 2, n))


def test_aedat4_batches_become_contiguous_packets(tmp_path):
    events = stream()
    write_aedat4(tmp_path / "r.aedat4", events, W, H, "DVXplorer_test")
    source = BatchSource(Aedat4FileSource(tmp_path / "r.aedat4", packet_us=5000))
    packets = []
    while (p := source.poll()) is not None:
        packets.append(p)
    assert source.finished and (source.width, source.height) == (W, H)
    np.testing.assert_array_equal(np.concatenate([p.events for p in packets]), events)
    for a, b in zip(packets, packets[1:], strict=False):
        assert a.t_end_us == b.t_start_us and b.t_end_us - b.t_start_us == 5000


def test_filters_map_a_large_sensor_to_the_model_geometry():
    events = make_events([1, 2, 3, 4], [0, 100, 320, 639], [0, 240, 479, 10], [1, 0, 1, 1])
    inner = IteratorSource(iter([Packet(events, 0, 10)]), 640, 480)
    source = FilteredSource(inner, filter_config([], "on", 0, 128, 128))
    packet = source.poll()
    assert (source.width, source.height) == (128, 128)
    # the off event is gone; "crop" keeps the centre 480x480 square, so x = 0 and 639 fall outside
    assert packet.events["t"].tolist() == [3]
    assert (packet.events["x"][0], packet.events["y"][0]) == (
        (320 - 80) * 128 // 480,
        479 * 128 // 480,
    )


def test_a_recorded_source_checks_its_filters_when_made():
    """The driver's configure makes the source: a chain that cannot fit a recording's geometry
    fails there, not on the first packet; the output geometry is known before any poll."""
    from hsnn_perception.core.events.filters import FilterConfigError

    def recording() -> IteratorSource:
        return IteratorSource(iter([]), 64, 48)

    with pytest.raises(FilterConfigError, match="cannot map 64x48 up to a larger 128x128"):
        FilteredSource(recording(), filter_config([], "both", 0, 128, 128))
    source = FilteredSource(recording(), filter_config([], "both", 0, 32, 24))
    assert (source.width, source.height) == (32, 24)


def test_filter_config_checks_its_parameters():
    assert filter_config([], "both", 0, 0, 0) == []
    stages = filter_config([1, 2, 30, 20], "off", 2000, 16, 16)
    assert [s["type"] for s in stages] == ["roi", "polarity", "background_activity", "spatial_map"]
    with pytest.raises(ValueError, match="roi"):
        filter_config([1, 2], "both", 0, 0, 0)
    with pytest.raises(ValueError, match="polarity"):
        filter_config([], "sideways", 0, 0, 0)


def test_absent_camera_is_retried_on_its_period_and_never_raises():
    now = [0.0]
    errors: list[str] = []
    source = ReconnectingSource(
        CameraSource, retry_s=2.0, on_error=errors.append, clock=lambda: now[0]
    )
    assert source.poll() is None and "no event camera connected" in source.status
    assert source.poll() is None and len(errors) == 1, "no new attempt before retry_s"
    now[0] += 2.5
    assert source.poll() is None and len(errors) == 2
    assert not source.finished and source.live


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_network_stream_connects_when_the_sender_appears():
    port = free_port()
    errors: list[str] = []
    source = ReconnectingSource(lambda: NetworkStreamSource("127.0.0.1", port), 0.0, errors.append)
    assert source.poll() is None and "cannot connect" in errors[0]
    writer = dv.io.NetworkWriter(
        "127.0.0.1", port, dv.io.Stream.EventStream(0, "events", "DVXplorer_test", (W, H))
    )
    events = stream(300)
    got = []
    deadline = time.monotonic() + 10
    sent = False
    while sum(p.events.size for p in got) < 300 and time.monotonic() < deadline:
        packet = source.poll()
        if packet is not None:
            got.append(packet)
        if source.status == "streaming" and writer.getClientCount() > 0 and not sent:
            writer.writeEvents(to_dv_store(events))
            sent = True
        time.sleep(0.005)
    np.testing.assert_array_equal(np.concatenate([p.events for p in got]), events)
    source.close()
    deadline = time.monotonic() + 5
    while writer.getClientCount() > 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    del writer


def _drain(source, timeout_s: float = 10.0) -> list[Packet]:
    out: list[Packet] = []
    deadline = time.monotonic() + timeout_s
    while not source.finished and time.monotonic() < deadline:
        packet = source.poll()
        if packet is None:
            time.sleep(0.001)
        else:
            out.append(packet)
    return out


def test_read_ahead_hands_out_every_packet_in_order_then_finishes():
    ev = stream()
    packets = [Packet(c, int(c["t"][0]), int(c["t"][-1]) + 1) for c in np.array_split(ev, 37)]
    source = ReadAheadSource(IteratorSource(iter(packets), W, H), depth=4)
    assert (source.width, source.height, source.live) == (W, H, False)
    got = _drain(source)
    assert source.finished and source.status == "finished" and source.poll() is None
    assert [p.t_start_us for p in got] == [p.t_start_us for p in packets]
    np.testing.assert_array_equal(np.concatenate([p.events for p in got]), ev)
    source.close()


def test_read_ahead_raises_the_sources_error_where_it_came_and_closes_early():
    def failing():
        yield Packet(stream(10), 0, 1)
        raise ValueError("corrupt recording")

    source = ReadAheadSource(IteratorSource(failing(), W, H))
    first = None
    deadline = time.monotonic() + 10
    while first is None and time.monotonic() < deadline:
        first = source.poll()
    assert first is not None and first.events.size == 10
    with pytest.raises(ValueError, match="corrupt recording"):
        while time.monotonic() < deadline:
            source.poll()
    assert source.finished
    endless = ReadAheadSource(IteratorSource(iter(lambda: Packet(stream(5), 0, 1), None), W, H), 2)
    time.sleep(0.05)  # the reader blocks on its full queue: close must still end it
    endless.close()
    assert not endless._thread.is_alive()
    with pytest.raises(ValueError, match="recorded"):
        ReadAheadSource(ReconnectingSource(lambda: None, 1.0, lambda m: None))
