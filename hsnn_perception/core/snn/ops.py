"""Operation counts of a netx network, as an energy model needs them: synaptic operations (input
spikes x structural fan-out, zero weights included, exact at conv borders and strides), neuron
updates (every neuron every step, as on Loihi) and spikes. Shared by the native runtime and the
Lava backend (which counts from the spikes Lava produced)."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from hsnn_perception.core.snn.netx import NetxLayer, NetxNetwork


def conv_fanout(layer: NetxLayer) -> npt.NDArray[np.int64]:
    """Number of synapses leaving each input pixel of a conv layer, shape (C_in, H, W)."""
    c_in, h_in, w_in = layer.in_shape
    _, h_out, w_out = layer.out_shape
    if layer.weight is None:
        raise ValueError(f"layer {layer.name}: a conv layer without weights")
    kh, kw = layer.weight.shape[2:]

    def axis_count(size: int, out: int, k: int, s: int, p: int, d: int) -> npt.NDArray[np.int64]:
        cnt = np.zeros(size, dtype=np.int64)
        pos = (np.arange(out)[:, None] * s - p + np.arange(k)[None, :] * d).ravel()
        np.add.at(cnt, pos[(pos >= 0) & (pos < size)], 1)
        return cnt

    ch = axis_count(h_in, h_out, kh, layer.stride[0], layer.padding[0], layer.dilation[0])
    cw = axis_count(w_in, w_out, kw, layer.stride[1], layer.padding[1], layer.dilation[1])
    per_pixel = np.outer(ch, cw) * (layer.out_shape[0] // layer.groups)
    return np.broadcast_to(per_pixel, (c_in, h_in, w_in)).copy()


def layer_fanout(layer: NetxLayer) -> npt.NDArray[np.int64] | None:
    """Synapses leaving each input neuron of ``layer`` (flat, C-order); None for an input layer."""
    if layer.kind == "conv":
        return conv_fanout(layer).reshape(-1)
    if layer.kind == "dense":
        return np.full(int(np.prod(layer.in_shape)), layer.num_neurons, dtype=np.int64)
    return None


def count_ops(
    network: NetxNetwork, inputs: npt.NDArray[Any], layer_spikes: list[npt.NDArray[Any]]
) -> npt.NDArray[np.int64]:
    """Counts (T, layers, 3) from the input spikes (T, ...) and each layer's output (T, ...)."""
    t = inputs.shape[0]
    counts = np.zeros((t, len(network.layers), 3), np.int64)
    prev = inputs.reshape(t, -1)
    for i, (layer, out) in enumerate(zip(network.layers, layer_spikes, strict=True)):
        fan = layer_fanout(layer)
        if fan is not None:
            counts[:, i, 0] = synaptic_ops(prev, fan)
        counts[:, i, 1] = layer.num_neurons
        out = out.reshape(t, -1)
        counts[:, i, 2] = out.sum(axis=1, dtype=np.int64)
        prev = out
    return counts


def synaptic_ops(spikes: npt.NDArray[Any], fanout: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Per row of ``spikes`` (N, n_in) binary: sum of the fan-out of the neurons that spiked."""
    exact32 = spikes.shape[1] * int(fanout.max(initial=0)) < (1 << 24)
    dtype = np.float32 if exact32 else np.float64  # exact integer sums either way
    ops: npt.NDArray[np.int64] = np.rint(spikes.astype(dtype) @ fanout.astype(dtype)).astype(
        np.int64
    )
    return ops
