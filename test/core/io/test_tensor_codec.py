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
    decode_tensor_list,
    encode_tensor,
    encode_tensor_list,
    is_cdr_le,
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


def test_a_contiguous_view_gets_row_major_strides():
    # numpy calls the first row of every other row of a (4, 3) array contiguous, with the
    # strides (48, 8) of the array it views: the tensor must say (24, 8)
    row = np.zeros((4, 3))[::2][:1]
    assert row.flags.c_contiguous and row.strides == (48, 8)
    fields = encode_tensor("r", row)
    assert fields.strides == (24, 8)
    np.testing.assert_array_equal(decode_tensor(fields), row)


@given(
    st.lists(
        hnp.arrays(
            dtype=st.sampled_from(list(DATA_TYPE_CODES)),
            shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=3),
        ),
        max_size=4,
    ),
    st.integers(-(1 << 31), (1 << 31) - 1),
    st.integers(0, (1 << 32) - 1),
    st.text(max_size=6),
)
def test_tensor_list_bytes_round_trip(arrays, sec, nanosec, frame_id):
    tensors = [encode_tensor(f"t{i}", a) for i, a in enumerate(arrays)]
    data = encode_tensor_list(sec, nanosec, frame_id, tensors)
    assert is_cdr_le(data)
    back = decode_tensor_list(data, max_tensors=64)
    assert (back.sec, back.nanosec, back.frame_id) == (sec, nanosec, frame_id)
    assert [rank for rank, _ in back.tensors] == [len(t.dims) for t in tensors]
    for (_, got), sent, array in zip(back.tensors, tensors, arrays, strict=True):
        assert (got.name, got.dims, got.data_type, got.strides) == (
            sent.name,
            sent.dims,
            sent.data_type,
            sent.strides,
        )
        np.testing.assert_array_equal(decode_tensor(got), array.reshape(sent.dims))
    # Every truncation, and any bytes at all, is read or refused with TensorFormatError.
    for cut in range(len(data)):
        try:
            decode_tensor_list(data[:cut], max_tensors=64)
        except TensorFormatError:
            pass


@given(st.binary(max_size=128))
def test_garbage_bytes_are_refused_with_the_reason(data):
    for candidate in (data, b"\x00\x01\x00\x00" + data):
        try:
            decode_tensor_list(candidate, max_tensors=64)
        except TensorFormatError as exc:
            assert str(exc)


def test_tensor_count_is_bounded_before_reading():
    tensors = [encode_tensor(f"t{i}", np.zeros(1, np.uint8)) for i in range(5)]
    data = encode_tensor_list(0, 0, "", tensors)
    with pytest.raises(TensorFormatError, match="5 tensors, at most 3"):
        decode_tensor_list(data, max_tensors=3)
    assert len(decode_tensor_list(data, max_tensors=3, partial=True).tensors) == 3
    # A tensor cut short ends a partial read there; a full read refuses it.
    assert len(decode_tensor_list(data[:-3], max_tensors=8, partial=True).tensors) == 4
    with pytest.raises(TensorFormatError):
        decode_tensor_list(data[:-3], max_tensors=8)
