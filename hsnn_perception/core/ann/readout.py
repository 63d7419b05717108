"""Turning the last layer's output into class scores, shared by the classifier node and the offline
evaluator."""

from __future__ import annotations

import numpy as np

from hsnn_perception.core.errors import ClassifierError


class ReadoutError(ClassifierError, ValueError):
    """The output cannot be read out as the model's classes."""


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) - np.max(logits)
    e = np.exp(z)
    return (e / e.sum()).astype(np.float32)


def spike_count_readout(x: np.ndarray, num_classes: int) -> np.ndarray:
    """SNN baseline (no ANN part): logits are the output spike counts per class neuron, summed over
    the accumulated frames of the window (frames are stacked on the channel axis)."""
    flat = np.asarray(x, dtype=np.float32).reshape(-1)
    if flat.size % num_classes:
        raise ReadoutError(
            f"SNN output of {flat.size} values cannot be read out as {num_classes} classes"
        )
    return flat.reshape(-1, num_classes).sum(axis=0)
