"""Sparse encodings of a spike tensor, as plain TensorList tensors (no new message type).

The SNN's output spikes are mostly zeros; sent dense across a network (the paper's Loihi host to
its Jetson host) they are the bulk of the traffic. Two sparse forms, both bit-exact for every
TensorList dtype, and chosen per window by size:

- index: ``<name>_index``, the flat row-major positions of the nonzero entries, ascending, as
  uint16 where the tensor has at most 2^16 entries, else uint32/uint64 (2 or 4 bytes a spike);
- mask: ``<name>_mask``, one bit per entry (``np.packbits``, big bit order, padding bits zero).

Both carry ``<name>_shape`` (int64, the dense shape) and ``<name>_value`` (the dense dtype): the
nonzero entries' values in index order, or empty when every one of them is 1 (binary spikes cost
nothing more). The dense form is the tensor ``<name>`` itself. A message holds exactly one form.

No ROS here: hsnn_perception.nodes.conversions turns these arrays into Tensor messages.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from hsnn_perception.core.errors import MessageError
from hsnn_perception.core.io.tensor_codec import DATA_TYPE_CODES, MAX_RANK

ENCODINGS = ("dense", "sparse", "auto")
INDEX, MASK, VALUE, SHAPE = "_index", "_mask", "_value", "_shape"


class SpikeCodecError(MessageError, ValueError):
    """Received tensors do not describe one spike tensor (mixed forms, bad indices, ...)."""


def _bits(array: NDArray[Any]) -> NDArray[Any]:
    """The entries as unsigned integers of the same width: "nonzero" and "equal to 1" are decided
    on the bits, so -0.0 and NaN payloads survive the round trip."""
    return array.view(f"u{array.dtype.itemsize}") if array.dtype.itemsize > 1 else array.view("u1")


def _index_dtype(size: int) -> np.dtype[Any]:
    for dtype in (np.uint16, np.uint32):
        if size <= np.iinfo(dtype).max + 1:
            return np.dtype(dtype)
    return np.dtype(np.uint64)


def _sparse_forms(name: str, spikes: NDArray[Any]) -> list[dict[str, NDArray[Any]]]:
    flat = np.ascontiguousarray(spikes).reshape(-1)
    bits = _bits(flat)
    nonzero = bits != 0
    index = np.flatnonzero(nonzero)
    values = flat[index]
    one = _bits(np.ones(1, flat.dtype))[0]
    if np.all(_bits(values) == one):
        values = values[:0]  # every spike is a 1: the positions say it all
    common = {f"{name}{SHAPE}": np.array(spikes.shape, np.int64), f"{name}{VALUE}": values}
    return [
        {f"{name}{INDEX}": index.astype(_index_dtype(flat.size)), **common},
        {f"{name}{MASK}": np.packbits(nonzero), **common},
    ]


def encoded_nbytes(tensors: Mapping[str, NDArray[Any]]) -> int:
    """Payload bytes of ``tensors`` (each Tensor message adds its name, shape and strides)."""
    return sum(int(a.nbytes) for a in tensors.values())


def encode_spikes(
    spikes: NDArray[Any], encoding: str = "dense", name: str = "spikes"
) -> dict[str, NDArray[Any]]:
    """The tensors that carry ``spikes``: ``dense`` as it is; ``sparse`` the smaller of the index
    and mask forms; ``auto`` the smallest of all three (dense wins for busy windows)."""
    if encoding not in ENCODINGS:
        raise ValueError(f"spikes encoding {encoding!r} unknown; expected one of {ENCODINGS}")
    if np.dtype(spikes.dtype) not in DATA_TYPE_CODES:
        raise ValueError(f"spikes of dtype {spikes.dtype} have no TensorList data_type")
    dense = {name: np.ascontiguousarray(spikes)}
    if encoding == "dense":
        return dense
    forms = _sparse_forms(name, spikes)
    if encoding == "auto":
        forms.append(dense)
    return min(forms, key=encoded_nbytes)  # first of equals: index before mask before dense


def _shape(array: NDArray[Any], max_size: int | None) -> tuple[tuple[int, ...], int]:
    if array.ndim != 1 or array.dtype.kind not in "iu" or array.size > MAX_RANK:
        raise SpikeCodecError(
            f"shape tensor must be at most {MAX_RANK} integers, got {array.shape} {array.dtype}"
        )
    dims = tuple(int(d) for d in array)
    if any(d < 0 for d in dims):
        raise SpikeCodecError(f"negative dimension in shape {dims}")
    size = math.prod(dims)  # Python integers: no wrap
    if max_size is not None and size > max_size:
        raise SpikeCodecError(f"shape {dims} has {size} entries, more than the {max_size} expected")
    return dims, size


def decode_spikes(
    arrays: Mapping[str, NDArray[Any]], name: str = "spikes", max_size: int | None = None
) -> NDArray[Any]:
    """The dense spike tensor of ``arrays`` in whichever form it came. ``max_size`` bounds the
    entries a sparse form may declare (a few bytes must not make the receiver allocate
    gigabytes). Every field is checked; SpikeCodecError says what is wrong."""
    parts = {k for k in (INDEX, MASK, VALUE, SHAPE) if f"{name}{k}" in arrays}
    if name in arrays:
        if parts:
            raise SpikeCodecError(f"both a dense {name!r} and sparse parts {sorted(parts)}")
        return arrays[name]
    if not parts:
        raise SpikeCodecError(f"no tensor named {name!r} nor its sparse form")
    if (INDEX in parts) == (MASK in parts) or not {VALUE, SHAPE} <= parts:
        raise SpikeCodecError(
            f"a sparse {name!r} needs {SHAPE}, {VALUE} and one of {INDEX} / {MASK}; got "
            f"{sorted(parts)}"
        )
    dims, size = _shape(arrays[f"{name}{SHAPE}"], max_size)
    values = arrays[f"{name}{VALUE}"]
    if values.ndim != 1:
        raise SpikeCodecError(f"values of shape {values.shape}, expected one dimension")
    if INDEX in parts:
        index = arrays[f"{name}{INDEX}"]
        if index.ndim != 1 or index.dtype.kind != "u":
            raise SpikeCodecError(f"index of {index.shape} {index.dtype}, expected unsigned 1-D")
        index = index.astype(np.int64) if index.dtype.itemsize < 8 else index
        if index.size and (int(index[-1]) >= size or np.any(np.diff(index) <= 0)):
            raise SpikeCodecError(f"indices must ascend strictly and stay below {size}")
    else:
        mask = arrays[f"{name}{MASK}"]
        if mask.dtype != np.uint8 or mask.shape != (-(-size // 8),):
            raise SpikeCodecError(
                f"mask of {mask.shape} {mask.dtype}, expected ({-(-size // 8)},) uint8"
            )
        flags = np.unpackbits(mask)
        if flags[size:].any():
            raise SpikeCodecError("mask bits set past the end of the tensor")
        index = np.flatnonzero(flags[:size])
    if values.size not in (0, index.size):
        raise SpikeCodecError(f"{values.size} values for {index.size} nonzero entries")
    if values.size and not np.all(_bits(values) != 0):
        raise SpikeCodecError("a listed entry has the value 0")
    dense = np.zeros(size, values.dtype)
    dense[index] = values if values.size else 1
    return dense.reshape(dims)
