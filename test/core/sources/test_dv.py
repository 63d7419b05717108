"""Tests of the AEDAT4 source (hsnn_perception.core.sources.dv) against real dv-processing I/O."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hsnn_perception.core.events.codecs import make_events
from hsnn_perception.core.sources.dv import Aedat4FileSource, SourceError, write_aedat4

W, H = 64, 48


def stream(n: int = 3000, t0: int = 1_000_000, span: int = 30_000, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(t0, t0 + span, n))
    return make_events(t, rng.integers(0, W, n), rng.integers(0, H, n), rng.integers(0, 2, n))


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> tuple[Path, np.ndarray]:
    ev = stream()
    path = tmp_path_factory.mktemp("aedat") / "rec.aedat4"
    return write_aedat4(path, ev, W, H, "DVXplorer_test", batch=250), ev


def test_file_source_replays_every_event_in_packets(recording) -> None:
    path, ev = recording
    src = Aedat4FileSource(path, packet_us=1000)
    assert (src.width, src.height, src.camera_name) == (W, H, "DVXplorer_test")
    packets = list(src)
    got = np.concatenate([p for p, _ in packets])
    np.testing.assert_array_equal(got, ev)
    start = int(ev["t"][0])
    for k, (p, t_end) in enumerate(packets):
        assert t_end == start + (k + 1) * 1000
        assert p.size == 0 or (p["t"].min() >= t_end - 1000 and p["t"].max() < t_end)
    assert src.next_packet() is None


def test_file_source_range_and_loop(recording) -> None:
    path, ev = recording
    a, b = int(ev["t"][0]) + 5_000, int(ev["t"][0]) + 12_500
    src = Aedat4FileSource(path, loop=True, start_us=a, end_us=b, packet_us=1000)
    assert src.loop_span_us == 8000
    first, second = [], []
    for _ in range(8):
        first.append(src.next_packet()[0])
    for _ in range(8):
        second.append(src.next_packet()[0])
    want = ev[(ev["t"] >= a) & (ev["t"] < b)]
    np.testing.assert_array_equal(np.concatenate(first), want)
    shifted = np.concatenate(second)
    np.testing.assert_array_equal(shifted["t"], want["t"] + 8000)
    np.testing.assert_array_equal(shifted["x"], want["x"])


def test_file_source_errors(tmp_path: Path, recording) -> None:
    path, _ = recording
    with pytest.raises(SourceError, match="does not exist"):
        Aedat4FileSource(tmp_path / "missing.aedat4")
    junk = tmp_path / "junk.aedat4"
    junk.write_bytes(b"not an event file\n" * 50)
    with pytest.raises(SourceError, match="not an AEDAT4 file"):
        Aedat4FileSource(junk)
    data = path.read_bytes()
    cut = tmp_path / "cut.aedat4"
    cut.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(SourceError, match="cut off or corrupt"):
        Aedat4FileSource(cut)
    with pytest.raises(SourceError, match="empty replay range"):
        Aedat4FileSource(path, start_us=10, end_us=5)
