"""The compiled mono decoder (core/events/fast_bin.py) against the codec's own decode_packet:
same events, same errors, same drop counts, on payloads with every defect a packet can have."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hsnn_perception.core.events.codecs import EventDecodeError, decode_packet
from hsnn_perception.core.events.fast_bin import decode_mono

W, H = 346, 260


def _payload(rng: np.random.Generator, n: int, defects: set[str]) -> tuple[int, bytes, bool]:
    """Mono words with ``defects``: events beyond the sensor, time going backwards, trailing
    bytes, big-endian words, a time base that is not a whole microsecond."""
    dt = np.sort(rng.integers(0, 1 << 32, n, dtype=np.int64)).astype(np.uint64)
    if "backwards" in defects and n > 2:
        idx = rng.choice(n, max(1, n // 5), replace=False)
        dt[idx] = rng.integers(0, 1 << 32, idx.size, dtype=np.int64).astype(np.uint64)
        # and some just one microsecond (or one nanosecond) behind the event before them
        for i in rng.choice(np.arange(1, n), max(1, n // 10), replace=False):
            dt[i] = max(int(dt[i - 1]) - int(rng.choice([1000, 1001, 1])), 0)
    x = rng.integers(0, W, n).astype(np.uint64)
    y = rng.integers(0, H, n).astype(np.uint64)
    if "bounds" in defects and n:
        idx = rng.choice(n, max(1, n // 7), replace=False)
        x[idx] = rng.integers(W, 1 << 16, idx.size).astype(np.uint64)
        y[idx[::2]] = rng.integers(H, 1 << 15, idx[::2].size).astype(np.uint64)
    p = rng.integers(0, 2, n).astype(np.uint64)
    words = (p << np.uint64(63)) | (y << np.uint64(48)) | (x << np.uint64(32)) | dt
    big = "bigendian" in defects
    raw = words.astype(">u8" if big else "<u8").tobytes()
    if "trailing" in defects:
        raw += b"\x01\x02\x03"
    base = int(rng.integers(0, 1 << 50)) * 1000 + (
        int(rng.integers(1, 1000)) if "ns" in defects else 0
    )
    return base, raw, big


def _decode_both(base: int, raw: bytes, big: bool, strict: bool):
    results = []
    for fn in ("codec", "fast"):
        drops: Counter = Counter()
        try:
            if fn == "codec":
                ev = decode_packet(raw, "mono", base, W, H, big, strict=strict, drops=drops)
            else:
                ev = decode_mono(np.frombuffer(raw, np.uint8), base, W, H, big, strict, drops)
            results.append(("ok", ev, dict(drops)))
        except EventDecodeError as exc:
            results.append(("error", str(exc), dict(drops)))
    return results


@settings(max_examples=120, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(0, 300),
    defects=st.sets(st.sampled_from(["backwards", "bounds", "trailing", "bigendian", "ns"])),
    strict=st.booleans(),
)
def test_fast_mono_decoder_equals_the_codec(seed: int, n: int, defects: set, strict: bool) -> None:
    base, raw, big = _payload(np.random.default_rng(seed), n, defects)
    (kind, got, drops), (want_kind, want, want_drops) = _decode_both(base, raw, big, strict)[::-1]
    assert kind == want_kind, (got, want)
    assert drops == want_drops
    if kind == "error":
        assert got == want
    else:
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


def test_fast_mono_decoder_on_a_clean_packet_and_its_errors() -> None:
    rng = np.random.default_rng(1)
    base, raw, big = _payload(rng, 1000, set())
    ev = decode_mono(np.frombuffer(raw, np.uint8), base, W, H)
    assert ev.size == 1000 and (np.diff(ev["t"]) >= 0).all()
    np.testing.assert_array_equal(ev, decode_packet(raw, "mono", base, W, H))
    _, bad, _ = _payload(rng, 50, {"bounds"})
    with pytest.raises(EventDecodeError, match="beyond the 346x260 sensor"):
        decode_mono(np.frombuffer(bad, np.uint8), base, W, H)
    with pytest.raises(EventDecodeError, match="not a multiple of the 8-byte word"):
        decode_mono(np.frombuffer(raw + b"\x00", np.uint8), base, W, H)
