"""Conversions between numpy/core types and the package's ROS messages."""

from __future__ import annotations

import math
import time

import numpy as np
from builtin_interfaces.msg import Duration, Time

from hsnn_perception.core.energy import EnergyFigure
from hsnn_perception.core.tensor_codec import (
    TensorFields,
    TensorFormatError,
    decode_tensor,
    encode_tensor,
)
from hsnn_perception.msg import EnergyReport, Tensor, TensorList, TensorShape

WINDOW_ID_TENSOR = "window_id"


def us_to_time(t_us: int) -> Time:
    t_us = int(t_us)
    return Time(sec=t_us // 1_000_000, nanosec=(t_us % 1_000_000) * 1000)


def time_to_us(t: Time) -> int:
    return int(t.sec) * 1_000_000 + int(t.nanosec) // 1000


def us_to_duration(d_us: int) -> Duration:
    d_us = int(d_us)
    return Duration(sec=d_us // 1_000_000, nanosec=(d_us % 1_000_000) * 1000)


def ns_to_time(t_ns: int) -> Time:
    return Time(sec=int(t_ns) // 1_000_000_000, nanosec=int(t_ns) % 1_000_000_000)


def time_to_ns(t: Time) -> int:
    return int(t.sec) * 1_000_000_000 + int(t.nanosec)


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


def read_tensor_list(msg: TensorList) -> tuple[int, int, dict[str, np.ndarray]]:
    """(window_id, window_start_us, {name: array}) of a TensorList; -1 when no window id."""
    arrays = {t.name: tensor_to_array(t) for t in msg.tensors}
    window = arrays.pop(WINDOW_ID_TENSOR, None)
    window_id = int(window.reshape(-1)[0]) if window is not None and window.size else -1
    return window_id, time_to_us(msg.header.stamp), arrays


def _nan_if_none(value: float | None) -> float:
    return math.nan if value is None else float(value)


def energy_report(
    figure: EnergyFigure,
    window_id: int,
    window_start_us: int,
    stamp: Time,
    host_latency_s: float | None = None,
) -> EnergyReport:
    """The message of ``figure``; ``host_latency_s`` is what the stage took here when the figure
    is for another device (a modelled Loihi or Jetson), whose time stays in device_latency_s."""
    msg = EnergyReport()
    msg.header.stamp = stamp
    msg.host_stamp = ns_to_time(time.time_ns())
    msg.window_id = int(window_id)
    msg.window_stamp = us_to_time(window_start_us)
    msg.stage = figure.stage
    msg.device = figure.device
    msg.source = figure.source
    msg.method = figure.method
    msg.energy_j = _nan_if_none(figure.energy_j)
    msg.power_w = _nan_if_none(figure.power_w)
    msg.device_latency_s = float(figure.latency_s)
    msg.latency_s = float(figure.latency_s if host_latency_s is None else host_latency_s)
    msg.synaptic_ops = int(figure.synaptic_ops)
    msg.neuron_updates = int(figure.neuron_updates)
    msg.spikes = int(figure.spikes)
    msg.macs = int(figure.macs)
    return msg


def figure_from_report(msg: EnergyReport) -> EnergyFigure:
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
