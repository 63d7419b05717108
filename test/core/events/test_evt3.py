"""The EVT3 codec (hsnn_perception.core.events.evt3 and its two decoders): packets cut anywhere,
rollover, hand-written words, truncated packets, the epoch from time_base, vectors, trigger
events, and the sequential (numba) decoder equal to the vectorised one on any words."""

from __future__ import annotations

import copy
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hsnn_perception.core.events.codecs import (
    EventCodecError,
    EventDecodeError,
    Evt3State,
    decode_packet,
    empty_events,
    encode_packet,
    make_events,
)
from hsnn_perception.core.events.evt3_sequential import decode_evt3_sequential, evt3_engine
from hsnn_perception.core.events.evt3_vectorised import decode_evt3_vectorised

from .test_codecs import event_streams

W, H = 640, 480


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


def _run_evt3(decoder, words, state, strict, time_base, width, keep_triggers):
    drops: Counter = Counter()
    state = copy.deepcopy(state)
    raw = words.view(np.uint8)
    try:
        out, triggers = decoder(raw, time_base, width, width, strict, drops, state, keep_triggers)
    except EventDecodeError as exc:
        return ("error", str(exc), state)
    return (out.tobytes(), None if triggers is None else triggers.tobytes(), dict(drops), state)


@settings(max_examples=300, deadline=None)
@given(
    words=evt3_words(),
    state=evt3_states(),
    strict=st.booleans(),
    time_base=st.sampled_from([0, 5_000_000_000, 2**24 * 1000 * 3 + 17]),
    width=st.sampled_from([0, 64, 4096]),
    keep_triggers=st.booleans(),
)
def test_evt3_compiled_decoder_equals_vectorised(
    words, state, strict, time_base, width, keep_triggers
) -> None:
    if evt3_engine() != "numba":
        pytest.skip("numba is not installed")
    args = (words, state, strict, time_base, width, keep_triggers)
    want = _run_evt3(decode_evt3_vectorised, *args)
    got = _run_evt3(decode_evt3_sequential, *args)
    assert got == want


def test_evt3_engine_choice(monkeypatch) -> None:
    monkeypatch.setenv("HSNN_EVT3_ENGINE", "numpy")
    assert evt3_engine() == "numpy"
    with pytest.raises(EventCodecError, match="evt3 engine must be"):
        evt3_engine("gpu")
    # A real stream decodes the same with the environment forcing either engine.
    events = make_events([10, 10, 20, 4100], [1, 2, 3, 4], [5, 5, 6, 7], [1, 0, 1, 1])
    tb, payload = encode_packet(events, "evt3", W, H, use_vectors=True)
    forced = decode_packet(payload, "evt3", tb, W, H)
    monkeypatch.delenv("HSNN_EVT3_ENGINE")
    np.testing.assert_array_equal(decode_packet(payload, "evt3", tb, W, H), forced)
    np.testing.assert_array_equal(forced, events)


def w(code: int, value: int) -> int:
    return (code << 12) | value


@pytest.mark.parametrize("engine", ["numpy", "numba"])
def test_evt3_trigger_events_are_counted_or_kept(monkeypatch, engine):
    if engine == "numba" and evt3_engine("auto") != "numba":
        pytest.skip("numba is not installed")
    monkeypatch.setenv("HSNN_EVT3_ENGINE", engine)
    words = [
        w(0x8, 1),  # TIME_HIGH
        w(0x6, 2),  # TIME_LOW
        w(0xA, (3 << 8) | 1),  # EXT_TRIGGER id 3, rising
        w(0x0, 7),  # ADDR_Y
        w(0x2, 10),  # ADDR_X: one event
        w(0xA, 3 << 8),  # EXT_TRIGGER id 3, falling
    ]
    drops: Counter = Counter()
    out = decode_packet(np.asarray(words, "<u2").tobytes(), "evt3", 0, W, H, drops=drops)
    assert out.tolist() == [(0x1002, 10, 7, 0)]
    assert drops == {"ext_trigger": 2}
    # Asked for, they are returned (time, edge, channel) instead of counted.
    drops.clear()
    triggers: list = []
    raw = np.asarray(words, "<u2").tobytes()
    out = decode_packet(raw, "evt3", 0, W, H, drops=drops, triggers=triggers)
    assert out.tolist() == [(0x1002, 10, 7, 0)] and not drops
    assert [t.tolist() for t in triggers] == [[(0x1002, 1, 3), (0x1002, 0, 3)]]
    # A trigger before any time: named, or dropped and counted.
    early = np.asarray([w(0xA, 1), *words], "<u2").tobytes()
    with pytest.raises(EventDecodeError, match="1 EXT_TRIGGER words before any TIME_HIGH"):
        decode_packet(early, "evt3", 0, W, H, triggers=[])
    triggers.clear()
    decode_packet(early, "evt3", 0, W, H, strict=False, drops=drops, triggers=triggers)
    assert drops == {"trigger_no_time_reference": 1} and len(triggers[0]) == 2


def test_evt3_trigger_times_follow_the_stream_across_packets_and_rollover():
    """Trigger events take the time of the stream (carried state, 24-bit rollover, epoch from
    time_base) exactly as the events around them do."""
    t = np.array([2**24 * 2 - 3000, 2**24 * 2 - 3000, 2**24 * 2 + 5], dtype=np.int64)
    events = make_events(t, [1, 2, 3], [4, 4, 5], [1, 1, 0])
    tb, payload = encode_packet(events, "evt3", W, H)
    words = list(np.frombuffer(payload, "<u2"))
    # a rising trigger on channel 2 after the first TIME_LOW, a falling one at the end
    first_low = next(i for i, x in enumerate(words) if x >> 12 == 0x6)
    words.insert(first_low + 1, w(0xA, (2 << 8) | 1))
    words.append(w(0xA, 2 << 8))
    raw = np.asarray(words, "<u2")
    state, triggers = Evt3State(), []
    got = [
        decode_packet(part.tobytes(), "evt3", tb, W, H, evt3_state=state, triggers=triggers)
        for part in np.split(raw, [3, len(words) - 1])
    ]
    np.testing.assert_array_equal(np.concatenate(got), events)
    assert np.concatenate(triggers).tolist() == [(int(t[0]), 1, 2), (int(t[2]), 0, 2)]
