"""libcaer_cmp (libcaer_driver's default encoding) in hsnn_perception.core.events.libcaer_cmp.

The known packet below is written word by word from the format's public description: the word
layout of event_camera_codecs' libcaer_cmp_types.h and the rules by which libcaer_driver's
message_converter.cpp emits words (ADDR_X first; TIME_HIGH, TIME_LOW, ADDR_X before an event
group when they change; a lone event as ADDR_Y, a group in one 8-row block as VECT_BASE_Y +
VECT_8).
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hsnn_perception.core.events import codecs as ev
from hsnn_perception.core.events.codecs import (
    EventDecodeError,
    EventEncodeError,
    decode_packet,
    encode_packet,
    make_events,
    packet_event_bound,
)
from hsnn_perception.core.events.stream import PacketStreamDecoder
from hsnn_perception.core.registry import EVENT_CODECS

W, H = 346, 260  # DAVIS346
T0 = 5_000_000  # us: time_base 5 s


def w(code: int, value: int) -> int:
    return (code << 12) | value


KNOWN_WORDS = [
    w(2, 100),  # ADDR_X 100
    w(3, (1 << 11) | 7),  # ADDR_Y 7, on: one event at offset 0
    w(1, 16),  # TIME_LOW: offset 16
    w(4, 16),  # VECT_BASE_Y 16, off
    w(5, 0b10000101),  # VECT_8: rows 16, 18, 23
    w(3, 25),  # ADDR_Y 25, off
    w(0, 1),  # TIME_HIGH 1: offset 0x1000 | 16
    w(2, 3),  # ADDR_X 3
    w(3, 0),  # ADDR_Y 0, off
]
KNOWN_EVENTS = make_events(
    [T0, T0 + 16, T0 + 16, T0 + 16, T0 + 16, T0 + 4112],
    [100, 100, 100, 100, 100, 3],
    [7, 16, 18, 23, 25, 0],
    [1, 0, 0, 0, 0, 0],
)


def test_registered_as_a_codec():
    assert "libcaer_cmp" in EVENT_CODECS and "libcaer_cmp" in ev.ENCODINGS
    assert isinstance(ev.codec_for("libcaer_cmp"), ev.EventCodec)


def test_known_packet_decodes_and_encodes_bit_for_bit():
    payload = np.asarray(KNOWN_WORDS, dtype="<u2").tobytes()
    out = decode_packet(payload, "libcaer_cmp", T0 * 1000, W, H)
    np.testing.assert_array_equal(out, KNOWN_EVENTS)
    time_base, encoded = encode_packet(KNOWN_EVENTS, "libcaer_cmp", W, H)
    assert (time_base, encoded) == (T0 * 1000, payload)


def test_vector_base_moves_on_by_8_and_time_base_below_a_microsecond_is_floored():
    words = [w(2, 9), w(1, 5), w(4, (1 << 11) | 8), w(5, 0b1), w(5, 0b10000000), w(5, 0b11)]
    out = decode_packet(np.asarray(words, "<u2").tobytes(), "libcaer_cmp", 1999, W, H)
    assert out.tolist() == [(6, 9, 8, 1), (6, 9, 23, 1), (6, 9, 24, 1), (6, 9, 25, 1)]


@st.composite
def streams(draw, max_span: int = (1 << 24) - 1):
    """Sorted events with bursts at one time and column (which become VECT_8 words), rows in
    any order and duplicates."""
    n = draw(st.integers(0, 200))
    t0 = draw(st.integers(0, 2**40))
    dts = draw(st.lists(st.sampled_from([0, 0, 0, 1, 4095, 4096, 70_000]), min_size=n, max_size=n))
    t = np.minimum(t0 + np.cumsum(np.asarray(dts, dtype=np.int64)), t0 + max_span)
    xs = draw(st.lists(st.sampled_from([0, 1, 200, W - 1]), min_size=n, max_size=n))
    ys = draw(st.lists(st.integers(0, H - 1) | st.integers(0, 17), min_size=n, max_size=n))
    ps = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))
    return make_events(t, xs, ys, ps)


@settings(max_examples=150, deadline=None)
@given(events=streams(), vectors=st.booleans())
def test_round_trip_keeps_every_event_in_order(events, vectors):
    time_base, payload = encode_packet(events, "libcaer_cmp", W, H, use_vectors=vectors)
    out = decode_packet(payload, "libcaer_cmp", time_base, W, H)
    np.testing.assert_array_equal(out, events)
    assert packet_event_bound(np.frombuffer(payload, np.uint8), "libcaer_cmp") >= events.size
    if vectors:  # vectors never cost words
        assert len(payload) <= len(encode_packet(events, "libcaer_cmp", use_vectors=False)[1])


@settings(max_examples=200, deadline=None)
@given(words=st.lists(st.integers(0, 0xFFFF), max_size=64), time_base=st.integers(0, 2**63))
def test_any_words_decode_or_are_counted(words, time_base):
    raw = np.asarray(words, dtype="<u2").view(np.uint8)
    drops: Counter = Counter()
    out = decode_packet(raw, "libcaer_cmp", time_base, W, H, strict=False, drops=drops)
    assert out.size <= packet_event_bound(raw, "libcaer_cmp")
    assert out.size == 0 or (out["x"].max() < W and out["y"].max() < H)
    assert np.all(np.diff(out["t"]) >= 0)
    assert set(drops) <= {
        "unknown_code",
        "no_x_address",
        "vector_without_base",
        "out_of_bounds",
        "time_backwards",
    }
    strict_ok = not drops
    try:
        strict = decode_packet(raw, "libcaer_cmp", time_base, W, H)
    except EventDecodeError:
        assert not strict_ok
    else:
        assert strict_ok
        np.testing.assert_array_equal(strict, out)


@pytest.mark.parametrize(
    ("words", "reason", "n"),
    [
        ([w(3, 5), w(2, 1), w(3, 6)], "no_x_address", 1),
        ([w(2, 1), w(5, 0b11), w(3, 6)], "vector_without_base", 2),
        ([w(2, 1), w(6, 0xFFF), w(3, 6)], "unknown_code", 1),
    ],
)
def test_words_no_state_can_place_are_named_or_counted(words, reason, n):
    raw = np.asarray(words, dtype="<u2").tobytes()
    with pytest.raises(EventDecodeError, match="libcaer_cmp"):
        decode_packet(raw, "libcaer_cmp", 0, W, H)
    drops: Counter = Counter()
    out = decode_packet(raw, "libcaer_cmp", 0, W, H, strict=False, drops=drops)
    assert drops == {reason: n}
    assert out.tolist() == [(0, 1, 6, 0)]


def test_packets_stand_alone_in_a_stream():
    """Every packet restarts its time offset: packets decode alone, in any order."""
    first, second = KNOWN_EVENTS[:3], KNOWN_EVENTS[3:]
    decoder = PacketStreamDecoder()
    for part, seq in ((second, 2), (first, 1)):
        tb, payload = encode_packet(part, "libcaer_cmp", W, H)
        got = decoder.decode(payload, "libcaer_cmp", tb, W, H, seq=seq)
        np.testing.assert_array_equal(got, part)


def test_encoder_refuses_what_the_format_cannot_hold():
    with pytest.raises(EventEncodeError, match="24-bit"):
        encode_packet(make_events([0, 1 << 24], [0, 0], [0, 0], [0, 0]), "libcaer_cmp")
    with pytest.raises(EventEncodeError, match="11 bits"):
        encode_packet(make_events([0], [2048], [0], [0]), "libcaer_cmp")


def _sequential_decode(words: list[int], time_base_ns: int) -> tuple[list, Counter]:
    """The format read word by word, as a driver's subscriber loop would (the reference the
    vectorised decoder must equal)."""
    hi = lo = 0
    x = base = pol = None
    events, drops = [], Counter()
    for word in words:
        code, v = word >> 12, word & 0xFFF
        if code == 0:
            hi = v << 12
        elif code == 1:
            lo = v
        elif code == 2:
            x = v & 0x7FF
        elif code == 3:
            if x is None:
                drops["no_x_address"] += 1
            else:
                events.append((time_base_ns // 1000 + (hi | lo), x, v & 0x7FF, v >> 11))
        elif code == 4:
            base, pol = v & 0x7FF, v >> 11
        elif code == 5:
            rows = [i for i in range(8) if v >> i & 1]
            if x is None:
                drops["no_x_address"] += len(rows)
            elif base is None:
                drops["vector_without_base"] += len(rows)
            else:
                events += [(time_base_ns // 1000 + (hi | lo), x, base + i, pol) for i in rows]
            if base is not None:
                base += 8
        else:
            drops["unknown_code"] += 1
    kept, latest = [], -1
    for e in events:  # a packet's time never goes back: older events are dropped
        if e[0] >= latest:
            kept.append(e)
            latest = e[0]
        else:
            drops["time_backwards"] += 1
    return kept, drops


@settings(max_examples=300, deadline=None)
@given(
    words=st.lists(
        st.tuples(st.sampled_from([0, 1, 2, 2, 3, 3, 4, 5, 5, 6]), st.integers(0, 0xFFF)).map(
            lambda cv: (cv[0] << 12) | cv[1]
        ),
        max_size=80,
    ),
    time_base=st.sampled_from([0, 1999, 5_000_000_000]),
)
def test_vectorised_decoder_equals_reading_word_by_word(words, time_base):
    raw = np.asarray(words, dtype="<u2").tobytes()
    drops: Counter = Counter()
    out = decode_packet(raw, "libcaer_cmp", time_base, 0, 0, strict=False, drops=drops)
    want, want_drops = _sequential_decode(words, time_base)
    assert out.tolist() == want
    assert drops == want_drops
