"""numpy arrays to and from the fields of an Isaac ROS style Tensor
(name, shape, data_type, strides, data).

Kept free of ROS so that it can be unit-tested alone; hsnn_perception.nodes.conversions wraps it
around the generated message classes.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from hsnn_perception.core.errors import MessageError

# isaac_ros_tensor_list_interfaces/Tensor data_type codes.
DATA_TYPE_CODES: dict[np.dtype[Any], int] = {
    np.dtype(np.int8): 1,
    np.dtype(np.uint8): 2,
    np.dtype(np.int16): 3,
    np.dtype(np.uint16): 4,
    np.dtype(np.int32): 5,
    np.dtype(np.uint32): 6,
    np.dtype(np.int64): 7,
    np.dtype(np.uint64): 8,
    np.dtype(np.float32): 9,
    np.dtype(np.float64): 10,
}
CODE_DTYPES: dict[int, np.dtype[Any]] = {code: dtype for dtype, code in DATA_TYPE_CODES.items()}


# The field types of isaac_ros_tensor_list_interfaces/msg/TensorShape: uint8 rank, uint32[] dims.
MAX_DIM = (1 << 32) - 1


class TensorFormatError(MessageError, ValueError):
    """A tensor's fields do not describe a valid array (size, strides, unknown type, ...)."""


@dataclass(frozen=True)
class TensorFields:
    name: str
    dims: tuple[int, ...]
    data_type: int
    strides: tuple[int, ...]
    data: bytes | memoryview  # a received message's buffer is not copied


_LITTLE_ENDIAN = sys.byteorder == "little"


def encode_tensor(name: str, array: NDArray[Any]) -> TensorFields:
    """Describe ``array`` as tensor fields: little-endian, C order, strides in bytes."""
    code = DATA_TYPE_CODES.get(array.dtype)
    if (
        code is not None
        and array.size  # 0-d and empty arrays: the general path
        and array.flags.c_contiguous
        and (_LITTLE_ENDIAN or array.dtype.itemsize == 1)
        and array.dtype.byteorder != ">"
    ):
        # The common case (what the nodes send): already in the message's layout, so the
        # general path's conversions are skipped; each one costs microseconds per message.
        if any(d > MAX_DIM for d in array.shape):
            raise TensorFormatError(
                f"tensor {name!r}: shape {array.shape} has a dimension > {MAX_DIM}"
            )
        # Strides computed, not copied: numpy calls an array contiguous whatever the stride of
        # a dimension of length 1, and the receiver checks for exactly the row-major ones.
        itemsize = array.dtype.itemsize
        dims = tuple(int(d) for d in array.shape)
        return TensorFields(name, dims, code, dense_strides(dims, itemsize), array.tobytes())
    dtype = array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype
    code = DATA_TYPE_CODES.get(np.dtype(dtype.str.replace(">", "<")))
    if code is None:
        raise TensorFormatError(f"tensor {name!r}: dtype {array.dtype} has no TensorList data_type")
    # reshape: ascontiguousarray turns a 0-d array into a 1-d one (found by the round-trip fuzz).
    # An empty array can have a dimension past uint32: refused here, not by the message class.
    if any(d > MAX_DIM for d in array.shape):
        raise TensorFormatError(f"tensor {name!r}: shape {array.shape} has a dimension > {MAX_DIM}")
    contiguous = np.ascontiguousarray(array, dtype=np.dtype(dtype).newbyteorder("<")).reshape(
        array.shape
    )
    return TensorFields(
        name=name,
        dims=tuple(int(d) for d in contiguous.shape),
        data_type=code,
        strides=tuple(int(s) for s in contiguous.strides),
        data=contiguous.tobytes(),
    )


def dense_strides(dims: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    """Row-major strides in bytes of ``dims`` (Python ints: no overflow whatever the dims)."""
    strides = []
    step = itemsize
    for d in reversed(dims):
        strides.append(step)
        step *= max(d, 1)
    return tuple(reversed(strides))


# numpy's limit on the number of dimensions (checked here so it is a TensorFormatError).
MAX_RANK = 32


def decode_tensor(fields: TensorFields, *, copy: bool = False) -> NDArray[Any]:
    """Array view of tensor fields, after checking that they are consistent. Nothing is allocated
    before the checks (the size is computed in Python integers: int64 products could wrap)."""
    dtype = CODE_DTYPES.get(int(fields.data_type))
    if dtype is None:
        raise TensorFormatError(f"tensor {fields.name!r}: unknown data_type {fields.data_type}")
    dims = tuple(int(d) for d in fields.dims)
    if len(dims) > MAX_RANK:
        raise TensorFormatError(f"tensor {fields.name!r}: rank {len(dims)} above {MAX_RANK}")
    if any(d < 0 for d in dims):
        raise TensorFormatError(f"tensor {fields.name!r}: negative dimension in shape {dims}")
    # numpy refuses shapes whose extent overflows its index type even when a zero dimension
    # makes them empty, so the extent of the non-zero dimensions is bounded too.
    if math.prod(d for d in dims if d) * dtype.itemsize >= 2**62:
        raise TensorFormatError(f"tensor {fields.name!r}: shape {dims} is too large to index")
    expected = math.prod(dims) * dtype.itemsize
    if len(fields.data) != expected:
        raise TensorFormatError(
            f"tensor {fields.name!r}: {len(fields.data)} bytes of data for shape {dims} of "
            f"{dtype} (expected {expected})"
        )
    if fields.strides and expected:  # an empty array has no layout (numpy gives it 0 strides)
        dense = dense_strides(dims, dtype.itemsize)
        if tuple(int(s) for s in fields.strides) != dense:
            raise TensorFormatError(
                f"tensor {fields.name!r}: strides {tuple(fields.strides)} are not the row-major "
                f"strides {dense} of shape {dims}"
            )
    array = np.frombuffer(fields.data, dtype=dtype).reshape(dims)
    return array.copy() if copy else array
