"""The sparse forms of snn/spikes give back the dense tensor bit for bit, are as small as they
say, and a receiver rejects any set of tensors that does not describe exactly one spike tensor."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from hsnn_perception.core.io.spike_codec import (
    ENCODINGS,
    SpikeCodecError,
    decode_spikes,
    encode_spikes,
    encoded_nbytes,
)
from hsnn_perception.core.io.tensor_codec import DATA_TYPE_CODES

DEFAULT_SHAPE = (16, 32, 8, 8)  # T x the default model's SNN output


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@st.composite
def sparse_arrays(draw):
    """Arrays of every TensorList dtype, mostly zeros, any values (NaN, -0.0, extremes)."""
    dtype = draw(st.sampled_from(list(DATA_TYPE_CODES)))
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=9))
    array = draw(hnp.arrays(dtype, shape))
    keep = draw(hnp.arrays(np.bool_, shape, elements=st.booleans() | st.just(False)))
    return np.where(keep, array, np.zeros((), dtype)).astype(dtype)


@given(sparse_arrays(), st.sampled_from(ENCODINGS))
def test_every_encoding_round_trips_bit_exactly(array, encoding):
    back = decode_spikes(encode_spikes(array, encoding), max_size=max(array.size, 1))
    assert same_bits(back, array)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_negative_zero_and_nan_payloads_survive(dtype):
    array = np.zeros(40, dtype)
    array[[3, 7, 30]] = [-0.0, np.nan, 1.0]
    for encoding in ("sparse", "auto"):
        tensors = encode_spikes(array, encoding)
        assert "spikes" not in tensors
        assert same_bits(decode_spikes(tensors), array)


def test_binary_spikes_cost_two_bytes_each_or_one_bit_per_entry():
    rng = np.random.default_rng(1)
    spikes = np.zeros(DEFAULT_SHAPE, np.uint8)
    flat = spikes.reshape(-1)
    flat[rng.choice(flat.size, 300, replace=False)] = 1
    index = encode_spikes(spikes, "sparse")
    assert set(index) == {"spikes_index", "spikes_value", "spikes_shape"}
    assert index["spikes_index"].dtype == np.uint16  # 32768 entries fit 16 bits
    assert index["spikes_value"].size == 0  # all ones: no values sent
    assert encoded_nbytes(index) == 300 * 2 + 4 * 8
    assert same_bits(decode_spikes(index), spikes)
    flat[: flat.size // 2] = 1  # busy: the bit mask is smaller than 2 bytes a spike
    mask = encode_spikes(spikes, "sparse")
    assert set(mask) == {"spikes_mask", "spikes_value", "spikes_shape"}
    assert encoded_nbytes(mask) == flat.size // 8 + 4 * 8
    assert same_bits(decode_spikes(mask), spikes)


def test_auto_keeps_dense_where_it_is_smallest():
    busy = np.random.default_rng(2).integers(2, 255, DEFAULT_SHAPE, dtype=np.uint8)
    assert set(encode_spikes(busy, "auto")) == {"spikes"}
    assert set(encode_spikes(busy, "sparse")) == {"spikes_mask", "spikes_value", "spikes_shape"}
    assert set(encode_spikes(np.zeros(DEFAULT_SHAPE, np.uint8), "auto")) == {
        "spikes_index",
        "spikes_value",
        "spikes_shape",
    }


def test_large_tensors_get_wider_indices():
    spikes = np.zeros(70_000, np.uint8)
    spikes[[0, 69_999]] = 1
    tensors = encode_spikes(spikes, "sparse")
    assert tensors["spikes_index"].dtype == np.uint32
    assert same_bits(decode_spikes(tensors), spikes)


def test_unknown_encoding_and_dtype_are_refused():
    with pytest.raises(ValueError, match="unknown"):
        encode_spikes(np.zeros(3, np.uint8), "zip")
    with pytest.raises(ValueError, match="data_type"):
        encode_spikes(np.zeros(3, bool), "sparse")


def _index(**changes):
    tensors = {
        "spikes_index": np.array([1, 4], np.uint16),
        "spikes_value": np.array([], np.uint8),
        "spikes_shape": np.array([2, 3], np.int64),
    }
    tensors.update(changes)
    return {k: v for k, v in tensors.items() if v is not None}


def test_the_reference_message_decodes():
    np.testing.assert_array_equal(decode_spikes(_index()), [[0, 1, 0], [0, 1, 0]])


@pytest.mark.parametrize(
    ("tensors", "message"),
    [
        ({**_index(), "spikes": np.zeros((2, 3), np.uint8)}, "both a dense"),
        ({"other": np.zeros(3, np.uint8)}, "no tensor named"),
        (_index(spikes_mask=np.zeros(1, np.uint8)), "one of"),
        (_index(spikes_shape=None), "needs"),
        (_index(spikes_value=None), "needs"),
        (_index(spikes_index=np.array([4, 1], np.uint16)), "ascend"),
        (_index(spikes_index=np.array([1, 1], np.uint16)), "ascend"),
        (_index(spikes_index=np.array([1, 6], np.uint16)), "below 6"),
        (_index(spikes_index=np.array([1, 4], np.int16)), "unsigned"),
        (_index(spikes_value=np.array([1, 2, 3], np.uint8)), "3 values for 2"),
        (_index(spikes_value=np.array([1, 0], np.uint8)), "value 0"),
        (_index(spikes_shape=np.array([2, -3], np.int64)), "negative"),
        (_index(spikes_shape=np.array([2.0, 3.0])), "integers"),
        (_index(spikes_shape=np.array([1 << 40, 1 << 20], np.int64)), "more than"),
        (
            {
                "spikes_mask": np.array([0b0100_1001], np.uint8),  # bit 7 lies past 6 entries
                "spikes_value": np.array([], np.uint8),
                "spikes_shape": np.array([2, 3], np.int64),
            },
            "past the end",
        ),
        (
            {
                "spikes_mask": np.zeros(2, np.uint8),
                "spikes_value": np.array([], np.uint8),
                "spikes_shape": np.array([2, 3], np.int64),
            },
            "expected",
        ),
    ],
)
def test_inconsistent_tensors_are_rejected_with_the_reason(tensors, message):
    with pytest.raises(SpikeCodecError, match=message):
        decode_spikes(tensors, max_size=1 << 20)
