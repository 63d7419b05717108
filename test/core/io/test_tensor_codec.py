import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from hsnn_perception.core.io.tensor_codec import (
    CODE_DTYPES,
    DATA_TYPE_CODES,
    TensorFields,
    TensorFormatError,
    decode_tensor,
    encode_tensor,
)


@given(
    hnp.arrays(
        dtype=st.sampled_from(list(DATA_TYPE_CODES)),
        shape=hnp.array_shapes(min_dims=1, max_dims=5, min_side=0, max_side=4),
    )
)
def test_round_trip_keeps_values_shape_and_type(array):
    fields = encode_tensor("x", array)
    back = decode_tensor(fields)
    assert back.dtype == array.dtype and back.shape == array.shape
    np.testing.assert_array_equal(back, array)
    assert fields.strides == tuple(np.ascontiguousarray(array).strides)


def test_isaac_ros_type_codes():
    assert DATA_TYPE_CODES[np.dtype(np.uint8)] == 2
    assert DATA_TYPE_CODES[np.dtype(np.float32)] == 9
    assert DATA_TYPE_CODES[np.dtype(np.float64)] == 10
    assert set(CODE_DTYPES) == set(range(1, 11))


def test_non_contiguous_input_is_made_row_major():
    array = np.arange(12, dtype=np.int16).reshape(3, 4).T
    np.testing.assert_array_equal(decode_tensor(encode_tensor("t", array)), array)


def test_big_endian_input_is_stored_little_endian():
    array = np.arange(5, dtype=">i4")
    fields = encode_tensor("b", array)
    np.testing.assert_array_equal(decode_tensor(fields), array.astype("<i4"))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (TensorFields("a", (2, 3), 9, (12, 4), b"\0" * 23), "23 bytes"),
        (TensorFields("a", (2, 3), 42, (), b"\0" * 24), "unknown data_type 42"),
        (TensorFields("a", (2, 3), 9, (4, 8), b"\0" * 24), "strides"),
        (TensorFields("a", (2, -3), 9, (), b""), "negative"),
        # Empty (a zero dimension) but beyond what numpy can index: found by the fuzz suite.
        (TensorFields("a", (0, 2**40, 2**40), 9, (), b""), "too large"),
    ],
)
def test_inconsistent_fields_are_rejected_with_the_reason(fields, message):
    with pytest.raises(TensorFormatError, match=message):
        decode_tensor(fields)


def test_unsupported_dtype_is_rejected():
    with pytest.raises(TensorFormatError, match="complex"):
        encode_tensor("c", np.zeros(2, dtype=np.complex64))


def test_a_dimension_past_uint32_is_refused_when_encoding():
    # TensorShape.dims is uint32[] (Isaac ROS); an empty array can still claim a larger one.
    with pytest.raises(TensorFormatError, match="dimension > 4294967295"):
        encode_tensor("e", np.zeros((0, 1 << 32), dtype=np.uint8))
    widest = (0, (1 << 32) - 1)
    assert encode_tensor("e", np.zeros(widest, dtype=np.uint8)).dims == widest
