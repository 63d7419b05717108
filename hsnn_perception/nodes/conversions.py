"""Conversions between numpy/core types and the package's ROS messages."""

from __future__ import annotations

import math
import time
from typing import Any, NamedTuple

import numpy as np
from builtin_interfaces.msg import Duration, Time

from hsnn_perception.core.energy.figure import EnergyFigure
from hsnn_perception.core.errors import MessageError
from hsnn_perception.core.io.classification_codec import encode_classification
from hsnn_perception.core.io.tensor_codec import (
    TensorFields,
    TensorFormatError,
    decode_tensor,
    decode_tensor_list,
    encode_tensor,
    encode_tensor_list,
    is_cdr_le,
)
from hsnn_perception.msg import EnergyReport, Tensor, TensorList, TensorShape

WINDOW_ID_TENSOR = "window_id"
# Window ids are int64 in the window_id tensor and uint64 in Classification/EnergyReport: the ids
# both can carry.
WINDOW_ID_MAX = (1 << 63) - 1
UINT64_MAX = (1 << 64) - 1
# builtin_interfaces/Time holds int32 seconds: the sensor times a message can carry.
TIME_MIN_US = -(1 << 31) * 1_000_000
TIME_MAX_US = ((1 << 31) - 1) * 1_000_000 + 999_999
# More tensors than any hsnn message carries: a list of thousands is rejected, not walked.
MAX_TENSORS = 64


class MessageFieldError(MessageError, ValueError):
    """A received message field is missing or out of range; ``reason`` is the short name under
    which the node counts the rejection (``errors.<reason>`` in /diagnostics)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def us_to_sec_nanosec(t_us: int, what: str = "time") -> tuple[int, int]:
    """A time or duration in us as builtin_interfaces' (int32 sec, uint32 nanosec)."""
    t_us = int(t_us)
    if not TIME_MIN_US <= t_us <= TIME_MAX_US:
        raise MessageFieldError("time_range", f"{what} {t_us} us does not fit int32 seconds")
    return t_us // 1_000_000, (t_us % 1_000_000) * 1000


def us_to_time(t_us: int) -> Time:
    sec, nanosec = us_to_sec_nanosec(t_us)
    return Time(sec=sec, nanosec=nanosec)


def time_to_us(t: Time) -> int:
    return int(t.sec) * 1_000_000 + int(t.nanosec) // 1000


def us_to_duration(d_us: int) -> Duration:
    sec, nanosec = us_to_sec_nanosec(d_us, "duration")
    return Duration(sec=sec, nanosec=nanosec)


def ns_to_time(t_ns: int) -> Time:
    return Time(sec=int(t_ns) // 1_000_000_000, nanosec=int(t_ns) % 1_000_000_000)


def array_to_tensor(name: str, array: np.ndarray) -> Tensor:
    fields = encode_tensor(name, array)
    return Tensor(
        name=fields.name,
        shape=TensorShape(rank=len(fields.dims), dims=list(fields.dims)),
        data_type=fields.data_type,
        strides=list(fields.strides),
        data=fields.data,  # bytes: ~0.2 ms/MB where assigning an array costs ~56 ms/MB
    )


def tensor_to_array(tensor: Tensor) -> np.ndarray:
    """Array view of a Tensor message; raises TensorFormatError when its fields disagree."""
    dims = tuple(int(d) for d in tensor.shape.dims)
    if int(tensor.shape.rank) != len(dims):
        raise TensorFormatError(
            f"tensor {tensor.name!r}: rank {tensor.shape.rank} but {len(dims)} dims {dims}"
        )
    return decode_tensor(
        TensorFields(
            name=tensor.name,
            dims=dims,
            data_type=int(tensor.data_type),
            strides=tuple(int(s) for s in tensor.strides),
            data=memoryview(tensor.data).cast("B")
            if not isinstance(tensor.data, bytes)
            else tensor.data,
        )
    )


def make_tensor_list(
    window_id: int, window_start_us: int, frame_id: str, tensors: dict[str, np.ndarray]
) -> TensorList:
    msg = TensorList()
    msg.header.stamp = us_to_time(window_start_us)
    msg.header.frame_id = frame_id
    msg.tensors = [array_to_tensor(name, arr) for name, arr in tensors.items()]
    msg.tensors.append(array_to_tensor(WINDOW_ID_TENSOR, np.array([window_id], dtype=np.int64)))
    return msg


def tensor_list_bytes(
    window_id: int, window_start_us: int, frame_id: str, tensors: dict[str, np.ndarray]
) -> bytes:
    """:func:`make_tensor_list`'s message, serialized: what the nodes publish on snn/spikes and
    tensors (rclpy sends bytes as they are; no message objects are built and converted)."""
    sec, nanosec = us_to_sec_nanosec(window_start_us)
    fields = [encode_tensor(name, arr) for name, arr in tensors.items()]
    fields.append(encode_tensor(WINDOW_ID_TENSOR, np.array([window_id], dtype=np.int64)))
    try:
        return encode_tensor_list(sec, nanosec, frame_id, fields)
    except TensorFormatError as exc:
        raise MessageFieldError("tensor", str(exc)) from None


def classification_bytes(
    window_id: int,
    window_start_us: int,
    window_us: int,
    frame_id: str,
    label: str,
    class_id: int,
    scores: np.ndarray,
) -> bytes:
    """A serialized Classification of one window (header and window stamped with the window's
    sensor start): what the classifier publishes, without building the message object."""
    stamp = us_to_sec_nanosec(window_start_us)
    return encode_classification(
        stamp=stamp,
        frame_id=frame_id,
        window_id=window_id,
        window_stamp=stamp,
        window_duration=us_to_sec_nanosec(window_us, "duration"),
        class_id=class_id,
        label=label,
        score=float(scores[class_id]),
        scores=scores,
    )


def _deserialize(data: bytes) -> TensorList:
    """A serialized TensorList that is not little-endian CDR (a big-endian host's), the slow
    way: rclpy's deserializer."""
    from rclpy.serialization import deserialize_message

    try:
        return deserialize_message(data, TensorList)
    except Exception as exc:  # noqa: BLE001 - rclpy's C layer raises untyped errors on bad bytes
        raise MessageFieldError("tensor", f"TensorList bytes not readable: {exc}") from None


def _fields_to_array(rank: int, fields: TensorFields) -> np.ndarray:
    """:func:`tensor_to_array` of a tensor read from bytes."""
    if int(rank) != len(fields.dims):
        raise TensorFormatError(
            f"tensor {fields.name!r}: rank {rank} but {len(fields.dims)} dims {fields.dims}"
        )
    return decode_tensor(fields)


def read_window_id(window: np.ndarray | None) -> int:
    """The id in a window_id tensor: one integer, 0 <= id <= WINDOW_ID_MAX."""
    if window is None:
        raise MessageFieldError("window_id", f"no {WINDOW_ID_TENSOR!r} tensor")
    if window.size != 1 or window.dtype.kind not in "iu":
        raise MessageFieldError(
            "window_id",
            f"{WINDOW_ID_TENSOR!r} must be one integer, got {window.size} of {window.dtype}",
        )
    window_id = int(window.reshape(-1)[0])
    if not 0 <= window_id <= WINDOW_ID_MAX:
        raise MessageFieldError("window_id", f"window id {window_id} outside [0, {WINDOW_ID_MAX}]")
    return window_id


def read_stamp_us(stamp: Time) -> int:
    """Sensor time of a header stamp in us; a nanosec field of a second or more is rejected (it
    would carry over into a second the int32 field may not hold)."""
    return stamp_us(int(stamp.sec), int(stamp.nanosec))


def stamp_us(sec: int, nanosec: int) -> int:
    """:func:`read_stamp_us` of a stamp's two fields."""
    if not 0 <= nanosec < 1_000_000_000:
        raise MessageFieldError("stamp", f"stamp nanosec {nanosec} is not below 10^9")
    return sec * 1_000_000 + nanosec // 1000


def peek_window_id(msg: TensorList | bytes) -> int | None:
    """The message's window id if it has a valid one, else None (never raises): a receiver counts
    gaps in the ids of every message that arrived, even one it then rejects. ``msg`` may be the
    serialized message (a raw subscription's)."""
    try:
        if isinstance(msg, bytes):
            if not is_cdr_le(msg):
                return peek_window_id(_deserialize(msg))
            read = decode_tensor_list(msg, MAX_TENSORS, partial=True).tensors
            found = [(r, f) for r, f in read if f.name == WINDOW_ID_TENSOR]
            return read_window_id(_fields_to_array(*found[0])) if len(found) == 1 else None
        tensors = [t for t in msg.tensors[:MAX_TENSORS] if t.name == WINDOW_ID_TENSOR]
        return read_window_id(tensor_to_array(tensors[0])) if len(tensors) == 1 else None
    except ValueError:
        return None


class TensorListContent(NamedTuple):
    window_id: int
    window_start_us: int
    frame_id: str
    arrays: dict[str, np.ndarray]


def read_tensor_message(msg: TensorList | bytes) -> TensorListContent:
    """What a TensorList carries, every field checked: MessageFieldError (reason ``tensor``,
    ``window_id`` or ``stamp``) names what is wrong. ``msg`` may be the serialized message (a
    raw subscription's: its tensors are then read straight from the bytes, no copy)."""
    if isinstance(msg, bytes) and not is_cdr_le(msg):
        msg = _deserialize(msg)
    if isinstance(msg, bytes):
        try:
            parsed = decode_tensor_list(msg, MAX_TENSORS)
        except TensorFormatError as exc:
            raise MessageFieldError("tensor", str(exc)) from None
        sec, nanosec = parsed.sec, parsed.nanosec
        frame_id = parsed.frame_id
        items: list[tuple[str, int | None, Any]] = [(f.name, r, f) for r, f in parsed.tensors]
    else:
        if len(msg.tensors) > MAX_TENSORS:
            raise MessageFieldError("tensor", f"{len(msg.tensors)} tensors, at most {MAX_TENSORS}")
        sec, nanosec = int(msg.header.stamp.sec), int(msg.header.stamp.nanosec)
        frame_id = msg.header.frame_id
        items = [(t.name, None, t) for t in msg.tensors]
    arrays: dict[str, np.ndarray] = {}
    for name, rank, item in items:
        if name in arrays:
            raise MessageFieldError("tensor", f"two tensors named {name!r}")
        try:
            arrays[name] = tensor_to_array(item) if rank is None else _fields_to_array(rank, item)
        except TensorFormatError as exc:
            raise MessageFieldError("tensor", str(exc)) from None
    window_id = read_window_id(arrays.pop(WINDOW_ID_TENSOR, None))
    return TensorListContent(window_id, stamp_us(sec, nanosec), frame_id, arrays)


def read_tensor_list(msg: TensorList | bytes) -> tuple[int, int, dict[str, np.ndarray]]:
    """(window_id, window_start_us, {name: array}) of a TensorList (:func:`read_tensor_message`)."""
    content = read_tensor_message(msg)
    return content.window_id, content.window_start_us, content.arrays


def _nan_if_none(value: float | None) -> float:
    return math.nan if value is None else float(value)


def saturate_u64(value: float) -> int:
    """An operation count as a uint64 field takes it: clamped to [0, 2^64 - 1]; NaN -> 0.
    A sum of many windows' counts may pass 2^64; the count saturates instead of failing."""
    if isinstance(value, float) and not math.isfinite(value):
        return 0 if math.isnan(value) else (UINT64_MAX if value > 0 else 0)
    return max(0, min(int(value), UINT64_MAX))


def energy_report(
    figure: EnergyFigure,
    window_id: int,
    window_start_us: int,
    stamp: Time,
    host_latency_s: float | None = None,
    host_ns: int | None = None,
) -> EnergyReport:
    """The message of ``figure``; ``host_latency_s`` is what the stage took here when the figure
    is for another device (a modelled Loihi or Jetson), whose time stays in device_latency_s;
    ``host_ns`` the host time at which the stage finished the window (default: now)."""
    msg = EnergyReport()
    msg.header.stamp = stamp
    msg.host_stamp = ns_to_time(time.time_ns() if host_ns is None else host_ns)
    window_id = int(window_id)
    if not 0 <= window_id <= UINT64_MAX:
        raise MessageFieldError("window_id", f"window id {window_id} does not fit uint64")
    msg.window_id = window_id
    msg.window_stamp = us_to_time(window_start_us)
    msg.stage = figure.stage
    msg.device = figure.device
    msg.source = figure.source
    msg.method = figure.method
    msg.energy_j = _nan_if_none(figure.energy_j)
    msg.power_w = _nan_if_none(figure.power_w)
    msg.device_latency_s = float(figure.latency_s)
    msg.latency_s = float(figure.latency_s if host_latency_s is None else host_latency_s)
    msg.synaptic_ops = saturate_u64(figure.synaptic_ops)
    msg.neuron_updates = saturate_u64(figure.neuron_updates)
    msg.spikes = saturate_u64(figure.spikes)
    msg.macs = saturate_u64(figure.macs)
    return msg


def figure_from_report(msg: EnergyReport) -> EnergyFigure:
    """The figure of a report; EnergyError (a ValueError) when its fields contradict each other
    (unknown source, "unavailable" with a finite energy)."""
    return EnergyFigure(
        stage=msg.stage,
        device=msg.device,
        source=msg.source,
        method=msg.method,
        energy_j=msg.energy_j,
        power_w=msg.power_w,
        latency_s=msg.device_latency_s,
        synaptic_ops=msg.synaptic_ops,
        neuron_updates=msg.neuron_updates,
        spikes=msg.spikes,
        macs=msg.macs,
    )
