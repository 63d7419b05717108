"""numpy arrays to and from the fields of an Isaac ROS style Tensor
(name, shape, data_type, strides, data).

Kept free of ROS so that it can be unit-tested alone; hsnn_perception.nodes.conversions wraps it
around the generated message classes.
"""

from __future__ import annotations

import math
import struct
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from hsnn_perception.core.errors import MessageError
from hsnn_perception.core.io.cdr import CDR_LE, align, write_string

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


# ---- a whole TensorList as serialized bytes (CDR), without message objects ----
# The nodes publish and take snn/spikes and tensors as the bytes DDS carries: building the
# message objects field by field and converting them in rclpy's C layer cost more than the hop
# itself once a sleeping process's caches are cold (issue 15, bench/hops.py). The bytes are
# exactly what rclpy's serialize_message writes (test/core/io/test_tensor_codec.py), so every
# other reader and recorder of these topics sees the same messages.
MAX_STRING = 1 << 16  # names and frame ids longer than this are not ours to read


@dataclass(frozen=True)
class TensorListFields:
    """A TensorList's content: the header and each tensor with its declared rank."""

    sec: int
    nanosec: int
    frame_id: str
    tensors: list[tuple[int, TensorFields]]


def encode_tensor_list(sec: int, nanosec: int, frame_id: str, tensors: list[TensorFields]) -> bytes:
    """The serialized TensorList (header stamp, frame id, tensors), as rclpy writes it."""
    buf = bytearray(CDR_LE)
    buf += struct.pack("<iI", sec, nanosec)
    write_string(buf, frame_id)
    align(buf, 4)
    buf += struct.pack("<I", len(tensors))
    for t in tensors:
        if len(t.dims) > 255:
            raise TensorFormatError(f"tensor {t.name!r}: rank {len(t.dims)} above 255")
        write_string(buf, t.name)
        buf += struct.pack("<B", len(t.dims))
        align(buf, 4)
        buf += struct.pack(f"<I{len(t.dims)}I", len(t.dims), *t.dims)
        buf += struct.pack("<iI", t.data_type, len(t.strides))
        if t.strides:
            align(buf, 8)
            buf += struct.pack(f"<{len(t.strides)}Q", *t.strides)
        align(buf, 4)
        buf += struct.pack("<I", len(t.data))
        buf += t.data
    return bytes(buf)


class _Reader:
    """Reads CDR fields in order, each bounds-checked (struct.unpack_from: no slice per field)."""

    def __init__(self, data: bytes | memoryview) -> None:
        self.view = memoryview(data).cast("B")
        self.size = len(self.view)
        self.at = 4

    def take(self, n: int, align: int = 1) -> memoryview:
        at = self.at + (-(self.at - 4) % align)
        if n < 0 or at + n > self.size:
            raise TensorFormatError(f"TensorList bytes end at {self.size}, before {n} more")
        self.at = at + n
        return self.view[at : at + n]

    def unpack(self, fmt: str | struct.Struct, align: int) -> tuple[Any, ...]:
        packed = fmt if isinstance(fmt, struct.Struct) else struct.Struct(fmt)
        at = self.at + (-(self.at - 4) % align)
        if at + packed.size > self.size:
            raise TensorFormatError(
                f"TensorList bytes end at {self.size}, before {packed.size} more"
            )
        self.at = at + packed.size
        return packed.unpack_from(self.view, at)

    def string(self) -> str:
        (n,) = self.unpack(_U32, 4)
        if not 1 <= n <= MAX_STRING:
            raise TensorFormatError(f"string of {n} bytes in a TensorList")
        raw = self.take(n)
        if raw[-1] != 0:
            raise TensorFormatError("string in a TensorList without its terminating zero")
        try:
            return bytes(raw[:-1]).decode()
        except UnicodeDecodeError as exc:
            raise TensorFormatError(f"string in a TensorList is not UTF-8: {exc}") from None


_U8 = struct.Struct("<B")
_U32 = struct.Struct("<I")
_I32_U32 = struct.Struct("<iI")  # a stamp (sec, nanosec); a tensor's data_type and strides count


def is_cdr_le(data: bytes | memoryview) -> bool:
    """Whether ``data`` is plain little-endian CDR, the form :func:`decode_tensor_list` reads
    (others, e.g. from a big-endian host, go through rclpy's deserializer)."""
    return bytes(data[:2]) == CDR_LE[:2]


def decode_tensor_list(
    data: bytes | memoryview, max_tensors: int, *, partial: bool = False
) -> TensorListFields:
    """The fields of a serialized TensorList, every length checked against the bytes; the
    tensors' data are views of ``data`` (no copy). TensorFormatError says what is wrong; more
    than ``max_tensors`` tensors are refused before any is read. With ``partial``, the tensors
    that could be read, at most ``max_tensors`` (a receiver looking for one of them in a message
    it rejects)."""
    if not is_cdr_le(data):
        raise TensorFormatError("TensorList bytes are not little-endian CDR")
    r = _Reader(data)
    sec, nanosec = r.unpack(_I32_U32, 4)
    frame_id = r.string()
    (count,) = r.unpack(_U32, 4)
    if count > max_tensors:
        if not partial:
            raise TensorFormatError(f"{count} tensors, at most {max_tensors}")
        count = max_tensors
    tensors: list[tuple[int, TensorFields]] = []
    for _ in range(count):
        try:
            tensors.append(_read_tensor(r))
        except TensorFormatError:
            if partial:
                break
            raise
    return TensorListFields(sec, nanosec, frame_id, tensors)


def _read_tensor(r: _Reader) -> tuple[int, TensorFields]:
    name = r.string()
    (rank,) = r.unpack(_U8, 1)
    (n_dims,) = r.unpack(_U32, 4)
    if n_dims > r.size:  # each takes 4 bytes: a count past the end is a lie
        raise TensorFormatError(f"tensor {name!r}: {n_dims} dims in {r.size} bytes")
    dims = r.unpack(f"<{n_dims}I", 4) if n_dims else ()
    data_type, n_strides = r.unpack(_I32_U32, 4)
    if n_strides > r.size:
        raise TensorFormatError(f"tensor {name!r}: {n_strides} strides in {r.size} bytes")
    strides = r.unpack(f"<{n_strides}Q", 8) if n_strides else ()
    (n_data,) = r.unpack(_U32, 4)
    payload = r.take(n_data)
    return rank, TensorFields(name, dims, data_type, strides, payload)
