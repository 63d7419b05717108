"""Turning the last layer's output into class scores, shared by the classifier node and the offline
evaluator."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from hsnn_perception.core.errors import ClassifierError


class ReadoutError(ClassifierError, ValueError):
    """The output cannot be read out as the model's classes."""


def softmax(logits: NDArray[Any]) -> NDArray[np.float32]:
    """Class probabilities of ``logits`` (float32), computed in float64 after subtracting the
    maximum, so large logits do not overflow."""
    z = np.asarray(logits, dtype=np.float64) - np.max(logits)
    e = np.exp(z)
    probs: NDArray[np.float32] = (e / e.sum()).astype(np.float32)
    return probs


def spike_count_readout(x: NDArray[Any], num_classes: int) -> NDArray[np.float32]:
    """SNN baseline (no ANN part): logits are the output spike counts per class neuron, summed over
    the accumulated frames of the window (frames are stacked on the channel axis)."""
    flat = np.asarray(x, dtype=np.float32).reshape(-1)
    if flat.size % num_classes:
        raise ReadoutError(
            f"SNN output of {flat.size} values cannot be read out as {num_classes} classes"
        )
    counts: NDArray[np.float32] = flat.reshape(-1, num_classes).sum(axis=0)
    return counts
