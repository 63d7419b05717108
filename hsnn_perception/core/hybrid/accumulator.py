"""The accumulator circuit between the spiking and the non-spiking part of a hybrid model.

It sums the spikes of the last spiking layer over consecutive intervals of ``interval`` timesteps
(Seekings et al. 2024, "accumulator"). The same function is used in training (on torch tensors) and
by the accumulator bridge node (on numpy arrays), so deployment sees exactly what training saw.

Layout: the time axis is ``time_axis`` (default 1, i.e. ``(batch, T, ...)``). ``T`` must be a
multiple of ``interval``; the result has ``T // interval`` frames on that axis.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hsnn_perception.core.errors import ModelError


class AccumulatorError(ModelError, ValueError):
    """The spikes cannot be accumulated with the requested interval."""


def check_interval(timesteps: int, interval: int) -> int:
    """Frames per window (``timesteps // interval``); raises if ``interval`` does not divide it."""
    if interval < 1:
        raise AccumulatorError(f"interval must be >= 1, got {interval}")
    if timesteps % interval:
        raise AccumulatorError(
            f"interval {interval} does not divide the {timesteps} timesteps of a window"
        )
    return timesteps // interval


def accumulate(spikes: Any, interval: int, time_axis: int = 1) -> Any:
    """Sum ``spikes`` over consecutive blocks of ``interval`` steps along ``time_axis``.

    Works on numpy arrays and torch tensors alike (it uses only ``shape``, ``reshape``, ``sum``),
    returning the same kind. numpy integer/bool input is summed as float32, the ANN's input type.
    """
    shape = tuple(spikes.shape)
    axis = time_axis % len(shape)
    frames = check_interval(shape[axis], interval)
    blocked = spikes.reshape(shape[:axis] + (frames, interval) + shape[axis + 1 :])
    if isinstance(blocked, np.ndarray):
        return blocked.sum(axis=axis + 1, dtype=np.float32)
    return blocked.sum(dim=axis + 1)


def frames_to_channels(frames: Any, time_axis: int = 1) -> Any:
    """Stack the accumulated frames along the channel axis: ``(B, F, C, H, W) -> (B, F*C, H, W)``.

    The ANN part sees the T/I accumulated frames of a window as one image with F*C channels, so its
    first layer can compare frames in time order (clockwise vs counter-clockwise needs that).
    """
    shape = tuple(frames.shape)
    if len(shape) != 5 or time_axis != 1:
        raise AccumulatorError(f"expected (batch, frames, C, H, W), got shape {shape}")
    return frames.reshape((shape[0], shape[1] * shape[2]) + shape[3:])
