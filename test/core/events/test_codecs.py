"""Tests of the EventPacket codecs (mono, evt3, libcaer) in hsnn_perception.core.events.codecs."""

from __future__ import annotations

import array
import struct
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


@settings(max_examples=25, deadline=None)
@given(events=event_streams(), vectors=st.booleans(), cuts=st.lists(st.integers(0, 2000)))
def test_evt3_split_anywhere_with_state(events: np.ndarray, vectors: bool, cuts: list[int]) -> None:
    """A raw EVT3 stream cut at arbitrary words decodes the same when the state is carried."""
    time_base, payload = encode_packet(events, "evt3", W, H, use_vectors=vectors)
    words = np.frombuffer(payload, dtype="<u2")
    bounds = sorted({0, words.size, *[c for c in cuts if c < words.size]})
    state = Evt3State()
    parts = [
        decode_packet(words[a:b].tobytes(), "evt3", time_base, W, H, evt3_state=state)
        for a, b in zip(bounds[:-1], bounds[1:], strict=True)
    ]
    np.testing.assert_array_equal(np.concatenate([empty_events(), *parts]), events)


def test_evt3_rollover_of_24_bit_time() -> None:
    t = np.array([2**24 - 5000, 2**24 - 1, 2**24, 2**24 + 9000], dtype=np.int64)
    events = make_events(t, [1, 2, 3, 4], [5, 5, 6, 6], [0, 1, 0, 1])
    time_base, payload = encode_packet(events, "evt3", W, H)
    np.testing.assert_array_equal(decode_packet(payload, "evt3", time_base, W, H), events)


def test_mono_bit_layout_matches_event_camera_msgs() -> None:
    # bit 63 polarity, 48-62 y, 32-47 x, 0-31 dt in ns relative to time_base
    word = (1 << 63) | (479 << 48) | (639 << 32) | 2_500
    payload = struct.pack("<Q", word) + struct.pack("<Q", (3 << 48) | (4 << 32) | 7_999)
    out = decode_packet(payload, "mono", time_base_ns=1_000_000_000, width=W, height=H)
    assert out.tolist() == [(1_000_002, 639, 479, 1), (1_000_007, 4, 3, 0)]
    # and the encoder writes exactly that layout
    tb, enc = encode_packet(make_events([10, 12], [639, 4], [479, 3], [1, 0]), "mono")
    assert tb == 10_000
    assert struct.unpack("<2Q", enc) == (
        (1 << 63) | (479 << 48) | (639 << 32),
        (3 << 48) | (4 << 32) | 2000,
    )


def test_mono_big_endian_flag() -> None:
    word = (1 << 63) | (2 << 48) | (3 << 32) | 4_000
    out = decode_packet(struct.pack(">Q", word), "mono", 0, W, H, is_bigendian=True)
    assert out.tolist() == [(4, 3, 2, 1)]


def test_libcaer_layout_and_rollover() -> None:
    # data: bit0 valid, bit1 polarity, bits 2-16 y, bits 17-31 x; then int32 us timestamp.
    def pe(x: int, y: int, p: int, ts: int, valid: int = 1) -> bytes:
        return struct.pack("<Ii", (x << 17) | (y << 2) | (p << 1) | valid, ts)

    payload = pe(5, 6, 1, 2**31 - 10) + pe(7, 8, 0, 3) + pe(9, 9, 1, 4, valid=0)
    drops: Counter = Counter()
    out = decode_packet(payload, "libcaer", 2_000_000, W, H, drops=drops)
    assert out.tolist() == [(2_000 + 2**31 - 10, 5, 6, 1), (2_000 + 2**31 + 3, 7, 8, 0)]
    assert drops == {"invalid_mark": 1}


def test_evt3_hand_written_words() -> None:
    def wd(code: int, v: int) -> int:
        return (code << 12) | v

    words = [
        wd(0x8, 0x001),  # TIME_HIGH -> t = 0x001000
        wd(0x6, 0x010),  # TIME_LOW
        wd(0x0, 7),  # ADDR_Y 7
        wd(0x2, (1 << 11) | 100),  # ADDR_X x=100 on
        wd(0x3, 200),  # VECT_BASE_X 200 off
        wd(0x4, 0b100000000101),  # VECT_12: x = 200, 202, 211
        wd(0x5, 0b10000001),  # VECT_8 from base 212: x = 212, 219
        wd(0xA, 0),  # EXT_TRIGGER, skipped
        wd(0xE, 0x19),  # OTHERS, skipped
        wd(0x6, 0x011),  # TIME_LOW
        wd(0x2, 5),
    ]
    payload = np.asarray(words, dtype="<u2").tobytes()
    out = decode_packet(payload, "evt3", 0, W, H)
    t = 0x1010
    assert out.tolist() == [
        (t, 100, 7, 1),
        (t, 200, 7, 0),
        (t, 202, 7, 0),
        (t, 211, 7, 0),
        (t, 212, 7, 0),
        (t, 219, 7, 0),
        (t + 1, 5, 7, 0),
    ]


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


def test_evt3_time_backwards() -> None:
    words = [0x8000 | 1, 0x6000 | 50, 0x0000 | 3, 0x2000 | 4, 0x6000 | 20, 0x2000 | 5]
    payload = np.asarray(words, dtype="<u2").tobytes()
    with pytest.raises(EventDecodeError, match="backwards"):
        decode_packet(payload, "evt3", 0, W, H)


@pytest.mark.parametrize(
    ("words", "reason", "message"),
    [
        ([0x0000 | 3, 0x2000 | 4], "no_time_reference", "TIME_HIGH/TIME_LOW"),
        ([0x8000, 0x6000, 0x2000 | 4], "no_y_address", "EVT_ADDR_Y"),
        ([0x8000, 0x6000, 0x0000 | 1, 0x4000 | 0xFFF], "vector_without_base", "VECT_BASE_X"),
        ([0x8000, 0x6000, 0x0000 | 1, 0xB000], "unknown_code", "unknown word code 11"),
    ],
)
def test_evt3_truncated_or_bad(words: list[int], reason: str, message: str) -> None:
    payload = np.asarray(words, dtype="<u2").tobytes()
    with pytest.raises(EventDecodeError, match=message):
        decode_packet(payload, "evt3", 0, W, H)
    drops: Counter = Counter()
    out = decode_packet(payload, "evt3", 0, W, H, strict=False, drops=drops)
    assert out.size == 0
    assert drops[reason] >= 1


def test_evt3_time_base_selects_epoch() -> None:
    t = 5 * 2**24 + 12345
    events = make_events([t, t + 3], [1, 2], [3, 3], [1, 0])
    tb, payload = encode_packet(events, "evt3", W, H)
    assert tb == t * 1000
    np.testing.assert_array_equal(decode_packet(payload, "evt3", tb, W, H), events)
    # a time_base a bit before the packet (driver stamping at packet start) still works
    out = decode_packet(payload, "evt3", (t - 50_000) * 1000, W, H)
    np.testing.assert_array_equal(out, events)


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


def test_evt3_uses_vectors_and_is_smaller() -> None:
    n = 48
    events = make_events(np.full(n, 1000), np.arange(n), np.full(n, 9), np.ones(n))
    _, with_vec = encode_packet(events, "evt3", W, H, use_vectors=True)
    _, without = encode_packet(events, "evt3", W, H, use_vectors=False)
    codes = np.frombuffer(with_vec, dtype="<u2") >> 12
    assert 0x4 in codes and len(with_vec) < len(without)


# --- the two EVT3 decoders (vectorised numpy, sequential numba) agree on everything -----------

_CODES = [0, 2, 3, 4, 5, 6, 8, 8, 6, 2, 4, 7, 9, 10, 14, 15, 1, 11]  # weighted, unknown included


@st.composite
def evt3_words(draw):
    n = draw(st.integers(0, 120))
    codes = draw(st.lists(st.sampled_from(_CODES), min_size=n, max_size=n))
    vals = draw(
        st.lists(
            st.one_of(st.integers(0, 0xFFF), st.sampled_from([0, 1, 10, 11, 0x7FF, 0xFFF])),
            min_size=n,
            max_size=n,
        )
    )
    return np.asarray([(c << 12) | v for c, v in zip(codes, vals, strict=True)], np.uint16)


@st.composite
def evt3_states(draw):
    if draw(st.booleans()):
        return None
    return Evt3State(
        time_high=draw(st.one_of(st.none(), st.integers(0, 0xFFF))),
        time_low=draw(st.one_of(st.none(), st.integers(0, 0xFFF))),
        epoch=draw(st.integers(0, 3)),
        y=draw(st.one_of(st.none(), st.integers(0, 0xFFF))),
        base_x=draw(st.one_of(st.none(), st.integers(0, 0x7FF))),
        polarity=draw(st.integers(0, 1)),
    )


def _run_evt3(decoder, words, state, strict, time_base, width):
    import copy

    drops: Counter = Counter()
    state = copy.deepcopy(state)
    try:
        out = decoder(words.view(np.uint8), time_base, width, width, strict, drops, state)
    except EventDecodeError as exc:
        return ("error", str(exc), state)
    return (out.tobytes(), dict(drops), state)


@settings(max_examples=300, deadline=None)
@given(
    words=evt3_words(),
    state=evt3_states(),
    strict=st.booleans(),
    time_base=st.sampled_from([0, 5_000_000_000, 2**24 * 1000 * 3 + 17]),
    width=st.sampled_from([0, 64, 4096]),
)
def test_evt3_compiled_decoder_equals_vectorised(words, state, strict, time_base, width) -> None:
    from hsnn_perception.core.events import codecs as ev

    if ev.evt3_engine() != "numba":
        pytest.skip("numba is not installed")
    want = _run_evt3(ev._decode_evt3_numpy, words, state, strict, time_base, width)
    got = _run_evt3(ev._decode_evt3_compiled, words, state, strict, time_base, width)
    assert got == want


def test_evt3_engine_choice(monkeypatch) -> None:
    from hsnn_perception.core.events import codecs as ev

    monkeypatch.setenv("HSNN_EVT3_ENGINE", "numpy")
    assert ev.evt3_engine() == "numpy"
    with pytest.raises(EventCodecError, match="evt3 engine must be"):
        ev.evt3_engine("gpu")
    # A real stream decodes the same with the environment forcing either engine.
    events = make_events([10, 10, 20, 4100], [1, 2, 3, 4], [5, 5, 6, 7], [1, 0, 1, 1])
    tb, payload = encode_packet(events, "evt3", W, H, use_vectors=True)
    forced = decode_packet(payload, "evt3", tb, W, H)
    monkeypatch.delenv("HSNN_EVT3_ENGINE")
    np.testing.assert_array_equal(decode_packet(payload, "evt3", tb, W, H), forced)
    np.testing.assert_array_equal(forced, events)


def test_stream_decoder_carries_evt3_state_across_packets_cut_anywhere() -> None:
    from hsnn_perception.core.events.codecs import PacketStreamDecoder

    rng = np.random.default_rng(9)
    n = 3000
    t = np.sort(rng.integers(10_000_000, 10_400_000, n))
    events = make_events(t, rng.integers(0, W, n), rng.integers(0, H, n), rng.integers(0, 2, n))
    events = events[np.lexsort((events["x"], events["y"], events["t"]))]
    tb, payload = encode_packet(events, "evt3", W, H, use_vectors=True)
    words = np.frombuffer(payload, np.uint16)
    cuts = np.sort(rng.choice(np.arange(1, words.size), 40, replace=False))
    parts = np.split(words, cuts)
    dec = PacketStreamDecoder()
    got = [dec.decode(p.tobytes(), "evt3", tb, W, H, seq=i) for i, p in enumerate(parts)]
    np.testing.assert_array_equal(np.concatenate(got), events)  # nothing lost at any cut
    assert not dec.drops and dec.resets == 0
    # A lost packet: the state is reset, events before the next time reference are dropped and
    # counted (not misplaced), the stream goes on.
    dec = PacketStreamDecoder()
    kept = [dec.decode(p.tobytes(), "evt3", tb, W, H, seq=i) for i, p in enumerate(parts) if i != 5]
    assert dec.resets == 1 and dec.drops["no_time_reference"] > 0
    before = np.concatenate(kept[:5])
    after = np.concatenate(kept[5:])
    np.testing.assert_array_equal(before, events[: len(before)])
    np.testing.assert_array_equal(after, events[len(events) - len(after) :])  # intact from there
    assert len(before) + len(got[5]) + len(after) < n  # what no state could place was dropped
    # A source that never sets seq (all 0) is not a stream of gaps.
    dec = PacketStreamDecoder()
    zero = [dec.decode(p.tobytes(), "evt3", tb, W, H, seq=0) for p in parts]
    np.testing.assert_array_equal(np.concatenate(zero), events)
    assert dec.resets == 0
    # mono packets stand alone and stay strict
    with pytest.raises(EventDecodeError):
        PacketStreamDecoder().decode(b"\x00" * 7, "mono", 0, W, H, seq=0)
