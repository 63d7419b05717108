"""Fuzz of the event codecs and the tensor codec: whatever the bytes and fields, only the codecs'
own errors come out (ValueError subclasses naming the problem), and what a payload may cost in
memory is bounded by the cap checked before decoding."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hsnn_perception.core.events.codecs import (
    ENCODINGS,
    EVENT_DTYPE,
    MAX_PACKET_EVENTS,
    EventCodecError,
    EventDecodeError,
    EventEncodeError,
    EventPacketSizeError,
    decode_packet,
    encode_packet,
    make_events,
)
from hsnn_perception.core.events.evt3_format import (
    EVT3_ADDR_X,
    EVT3_ADDR_Y,
    EVT3_TIME_HIGH,
    EVT3_TIME_LOW,
    EVT3_VECT_12,
    EVT3_VECT_BASE_X,
)
from hsnn_perception.core.events.stream import PacketStreamDecoder
from hsnn_perception.core.io.tensor_codec import (
    CODE_DTYPES,
    TensorFields,
    TensorFormatError,
    decode_tensor,
    encode_tensor,
)

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
time_bases = st.one_of(
    st.integers(0, (1 << 64) - 1),
    st.sampled_from([0, 1, (1 << 63) - 1, 1 << 63, (1 << 64) - 1]),
)
encodings = st.one_of(st.sampled_from(ENCODINGS), st.text(max_size=8))


@FUZZ
@given(
    payload=st.binary(max_size=4096),
    encoding=encodings,
    time_base=time_bases,
    width=st.integers(-2, 2048),
    height=st.integers(-2, 2048),
    bigendian=st.booleans(),
    strict=st.booleans(),
)
def test_decode_random_payloads(payload, encoding, time_base, width, height, bigendian, strict):
    try:
        events = decode_packet(
            payload, encoding, time_base, width, height, bigendian, strict=strict
        )
    except EventDecodeError:
        return
    assert events.dtype == EVENT_DTYPE and events.ndim == 1
    assert events.size <= max(len(payload) // 8, 12 * (len(payload) // 2))
    if events.size:
        t = events["t"]
        assert int(t.min()) >= 0 and np.all(t[1:] >= t[:-1])  # sensor time, in order
        assert int(t.max()) <= ((1 << 64) - 1) // 1000 + (1 << 32)  # no int64 wrap-around
        if width > 0 and height > 0:
            assert int(events["x"].max()) < width and int(events["y"].max()) < height


def test_decode_rejects_time_base_outside_uint64():
    for time_base in (-1, 1 << 64):
        with pytest.raises(EventDecodeError, match="time_base"):
            decode_packet(bytes(8), "mono", time_base, 0, 0)


def test_time_base_2_64_minus_1_is_exact():
    (event,) = decode_packet(bytes(8), "mono", (1 << 64) - 1, 0, 0)
    assert int(event["t"]) == ((1 << 64) - 1) // 1000  # exact, not a float rounding


@FUZZ
@given(
    packets=st.lists(
        st.tuples(st.binary(max_size=600), encodings, time_bases, st.integers(0, 1 << 64 - 1)),
        max_size=12,
    )
)
def test_stream_decoder_on_random_packets(packets):
    decoder = PacketStreamDecoder()
    for payload, encoding, time_base, seq in packets:
        try:
            decoder.decode(payload, encoding, time_base, 128, 128, seq=seq)
        except EventDecodeError:
            pass
    assert decoder.seq_gaps.lost >= 0


@pytest.mark.parametrize(
    ("encoding", "word"),
    [
        ("mono", bytes(8)),
        ("libcaer", (1).to_bytes(4, "little") + bytes(4)),
        ("evt3", ((EVT3_ADDR_X << 12) | 1).to_bytes(2, "little")),
        ("evt3", ((EVT3_VECT_12 << 12) | 0xFFF).to_bytes(2, "little")),
    ],
)
def test_oversized_packet_is_refused_before_decoding(encoding, word):
    """A payload over the cap (for EVT3 vectors: 50 M events in 4 MiB) is refused with a peak
    allocation of a fraction of what decoding it would take (~60 bytes per event)."""
    payload = word * (MAX_PACKET_EVENTS + 1)
    tracemalloc.start()
    try:
        with pytest.raises(EventPacketSizeError, match="more than the"):
            decode_packet(payload, encoding, 0, 0, 0, strict=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 3 * len(payload)
    # The cap is exact: at it a packet is decoded, one event over it is not.
    per_word = 12 if encoding == "evt3" and word[1] >> 4 == EVT3_VECT_12 else 1
    header = b""
    if encoding == "evt3":  # time, row and vector base before the events
        codes = (
            EVT3_TIME_HIGH << 12,
            EVT3_TIME_LOW << 12,
            EVT3_ADDR_Y << 12,
            EVT3_VECT_BASE_X << 12,
        )
        header = b"".join(c.to_bytes(2, "little") for c in codes)
    at_cap = header + word * (1200 // per_word)
    assert decode_packet(at_cap, encoding, 0, 0, 0, strict=False, max_events=1200).size == 1200
    with pytest.raises(EventPacketSizeError):
        decode_packet(at_cap + word, encoding, 0, 0, 0, strict=False, max_events=1200)


@FUZZ
@given(
    t=st.lists(st.integers(-(1 << 40), 1 << 40), max_size=60),
    encoding=st.sampled_from(ENCODINGS),
    width=st.integers(0, 4096),
    height=st.integers(0, 4096),
    data=st.data(),
)
def test_encode_random_events(t, encoding, width, height, data):
    n = len(t)
    xs = data.draw(st.lists(st.integers(0, 65535), min_size=n, max_size=n))
    ys = data.draw(st.lists(st.integers(0, 65535), min_size=n, max_size=n))
    ps = data.draw(st.lists(st.integers(0, 255), min_size=n, max_size=n))
    events = make_events(np.sort(np.asarray(t, dtype=np.int64)), xs, ys, ps)
    try:
        time_base, payload = encode_packet(events, encoding, width, height)
    except EventEncodeError:
        return
    back = decode_packet(payload, encoding, time_base, width, height)
    np.testing.assert_array_equal(back, events)


@FUZZ
@given(
    name=st.text(max_size=5),
    dims=st.lists(st.integers(-3, 1 << 31), max_size=40),
    data_type=st.integers(-5, 20),
    strides=st.lists(st.integers(0, 1 << 64 - 1), max_size=5),
    data=st.binary(max_size=512),
)
def test_decode_random_tensor_fields(name, dims, data_type, strides, data):
    fields = TensorFields(name, tuple(dims), data_type, tuple(strides), data)
    try:
        array = decode_tensor(fields)
    except TensorFormatError:
        return
    assert array.nbytes == len(data)  # a view of the data: nothing allocated beyond it


@FUZZ
@given(
    shape=st.lists(st.integers(0, 5), max_size=4),
    code=st.sampled_from(sorted(CODE_DTYPES)),
)
def test_tensor_round_trip(shape, code):
    dtype = CODE_DTYPES[code]
    array = np.arange(int(np.prod(shape)), dtype=dtype).reshape(tuple(shape))
    back = decode_tensor(encode_tensor("x", array))
    assert back.dtype == dtype and back.shape == tuple(shape)
    np.testing.assert_array_equal(back, array)


def test_codec_errors_are_value_errors():
    """Callers catch ValueError: every codec error is one."""
    assert issubclass(EventCodecError, ValueError) and issubclass(TensorFormatError, ValueError)
