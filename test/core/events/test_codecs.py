"""Tests of what every EventPacket codec shares (hsnn_perception.core.events.codecs): round trips of
every registered encoding, payload buffer types, unknown encodings, word lengths, geometry and time
order checks, what the encoders refuse."""

from __future__ import annotations

import array
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hsnn_perception.core.events.codecs import (
    ENCODINGS,
    EVENT_DTYPE,
    EventCodecError,
    EventDecodeError,
    EventEncodeError,
    Evt3State,
    decode_packet,
    empty_events,
    encode_packet,
    make_events,
)

W, H = 640, 480


@st.composite
def event_streams(draw, max_x: int = W - 1, max_y: int = H - 1, max_span: int = 4_000_000):
    """Sorted event arrays, with bursts of equal timestamps and rows (which EVT3 vectorises)."""
    n = draw(st.integers(0, 300))
    t0 = draw(st.integers(0, 2**40))
    dts = draw(
        st.lists(st.sampled_from([0, 0, 0, 1, 7, 4095, 4096, 70_000]), min_size=n, max_size=n)
    )
    t = t0 + np.cumsum(np.asarray(dts, dtype=np.int64))
    t = np.minimum(t, t0 + max_span)
    xs = draw(st.lists(st.integers(0, max_x), min_size=n, max_size=n))
    ys = draw(st.lists(st.sampled_from([0, 1, max_y]), min_size=n, max_size=n))
    ps = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))
    return make_events(t, xs, ys, ps)


@pytest.mark.parametrize("encoding", ENCODINGS)
@settings(max_examples=30, deadline=None)
@given(events=event_streams())
def test_round_trip_is_identity(encoding: str, events: np.ndarray) -> None:
    time_base, payload = encode_packet(events, encoding, W, H)
    out = decode_packet(payload, encoding, time_base, W, H)
    assert out.dtype == EVENT_DTYPE
    np.testing.assert_array_equal(out, events)


@pytest.mark.parametrize("kind", ["bytes", "bytearray", "memoryview", "ndarray", "array"])
def test_payload_buffer_types(kind: str) -> None:
    events = make_events([1, 2, 3], [1, 2, 3], [4, 5, 6], [0, 1, 0])
    tb, payload = encode_packet(events, "mono")
    conv = {
        "bytes": bytes,
        "bytearray": bytearray,
        "memoryview": memoryview,
        "ndarray": lambda b: np.frombuffer(b, dtype=np.uint8),
        "array": lambda b: array.array("B", b),  # what rclpy gives for uint8[]
    }[kind]
    np.testing.assert_array_equal(decode_packet(conv(payload), "mono", tb, W, H), events)


def test_unknown_encoding_is_named() -> None:
    with pytest.raises(EventDecodeError, match="'evt2'"):
        decode_packet(b"", "evt2", 0, W, H)
    with pytest.raises(EventEncodeError, match="'bayer'"):
        encode_packet(empty_events(), "bayer")


@pytest.mark.parametrize(
    ("encoding", "size"), [("mono", 8), ("libcaer", 8), ("evt3", 2), ("libcaer_cmp", 2)]
)
def test_payload_length_not_multiple_of_word(encoding: str, size: int) -> None:
    tb, payload = encode_packet(make_events([5, 6], [1, 2], [3, 4], [1, 1]), encoding, W, H)
    with pytest.raises(EventDecodeError, match=f"{size}-byte word"):
        decode_packet(payload + b"\x00", encoding, tb, W, H)
    drops: Counter = Counter()
    out = decode_packet(payload + b"\x00", encoding, tb, W, H, strict=False, drops=drops)
    assert out.size == 2 and drops == {"trailing_bytes": 1}


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_coordinates_beyond_geometry(encoding: str) -> None:
    events = make_events([1, 2, 3], [10, 130, 20], [10, 10, 128], [0, 1, 1])
    tb, payload = encode_packet(events, encoding, W, H)
    with pytest.raises(EventDecodeError, match="beyond the 128x128 sensor"):
        decode_packet(payload, encoding, tb, 128, 128)
    drops: Counter = Counter()
    out = decode_packet(payload, encoding, tb, 128, 128, strict=False, drops=drops)
    np.testing.assert_array_equal(out, events[:1])
    assert drops == {"out_of_bounds": 2}


@pytest.mark.parametrize("encoding", ["mono", "libcaer"])
def test_time_backwards_in_packet(encoding: str) -> None:
    events = make_events([100, 200, 150, 300], [1, 2, 3, 4], [1, 1, 1, 1], [0, 0, 1, 1])
    ok = events[np.argsort(events["t"], kind="stable")]
    tb, payload = encode_packet(ok, encoding)
    # swap the 2nd and 3rd 8-byte words: time 200 then 150
    b = bytearray(payload)
    b[8:16], b[16:24] = payload[16:24], payload[8:16]
    swapped = bytes(b)
    with pytest.raises(EventDecodeError, match="time goes backwards"):
        decode_packet(swapped, encoding, tb, W, H)
    drops: Counter = Counter()
    out = decode_packet(swapped, encoding, tb, W, H, strict=False, drops=drops)
    assert out["t"].tolist() == [100, 200, 300] and drops == {"time_backwards": 1}


@pytest.mark.parametrize(
    ("events", "encoding", "message"),
    [
        (make_events([5, 4], [0, 0], [0, 0], [0, 0]), "mono", "sorted"),
        (make_events([-1], [0], [0], [0]), "mono", "negative"),
        (make_events([0, 5_000_000], [0, 0], [0, 0], [0, 0]), "mono", "split it"),
        (make_events([0, 2**23], [0, 0], [0, 0], [0, 0]), "evt3", "split the packet"),
        (make_events([0], [2048], [0], [0]), "evt3", "11 bits"),
        (make_events([0], [0], [0], [2]), "libcaer", "polarity"),
    ],
)
def test_encode_errors(events: np.ndarray, encoding: str, message: str) -> None:
    with pytest.raises(EventEncodeError, match=message):
        encode_packet(events, encoding)


def test_wrong_event_dtype_is_rejected() -> None:
    with pytest.raises(EventCodecError, match="EVENT_DTYPE"):
        encode_packet(np.zeros(3, dtype=np.int64), "mono")


def test_evt3_state_as_the_compiled_passes_take_it_and_back():
    state = Evt3State()
    assert state.words_state() == (-1, -1, -1, -1, 0)  # nothing known; no base, no polarity
    state.polarity = 1
    assert state.words_state()[4] == 0
    # A pass that saw no word of a kind leaves what was carried (-1: not seen).
    state.carry(th=100, tl=7, y=-1, base=-1, pol=0, epoch=3, roll=2)
    assert (state.time_high, state.time_low, state.y, state.base_x) == (100, 7, None, None)
    assert state.epoch == 5  # the packet's first epoch plus its rollovers
    state.carry(th=-1, tl=-1, y=12, base=0x7FF, pol=1, epoch=9, roll=9)
    assert (state.time_high, state.epoch, state.y, state.base_x, state.polarity) == (
        100, 5, 12, 0x7FF, 1
    )  # fmt: skip
    assert state.words_state() == (100, 7, 12, 0x7FF, 1)
    state.carry(th=-1, tl=-1, y=-1, base=0x800, pol=0, epoch=0, roll=0)
    assert state.base_x is None  # past 11 bits: later vectors count as base-less
    assert state.words_state() == (100, 7, 12, -1, 0)
