"""Event-driven execution of a netx network, one sample at a time: each layer's input is a list of
spike events per step, each event adds its weights to the neurons it reaches (cost ~ spikes x
fan-out instead of neurons x fan-in), then every neuron is updated (``kernels.event_layer``).
Bit-identical to the dense path and to Lava: the same integer sums, the same wraps, the same LIF.

Where a step's input is busy (more than ``dense_above`` of the input neurons spiking), the
layer's sums for that step come from the dense conv/matmul of ``synapse.DenseSynapse`` instead,
which is faster there; the choice is made per layer and per step.

Inside, (C, H, W) layers are laid out HWC (``kernels`` says why); weights, biases and fan-outs are
permuted once at load time, and only the network's output is transposed back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from hsnn_perception.core.snn.api import SnnInputError
from hsnn_perception.core.snn.loihi import MAX_UV, Lif
from hsnn_perception.core.snn.netx import NetxLayer
from hsnn_perception.core.snn.synapse import DenseSynapse

KIND_INPUT, KIND_CONV, KIND_DENSE = 0, 1, 2
# Accumulator ring x delay groups x neurons above which a dense layer with delays is left to the
# dense path (a ring of 63 steps x 63 delay groups of a wide layer is more memory than it saves).
MAX_ACC_ELEMENTS = 1 << 24


def hwc_order(shape: tuple[int, int, int]) -> npt.NDArray[np.int64]:
    """``order[i]``: the HWC index ``(y * W + x) * C + c`` of the neuron at CHW index ``i``."""
    c, h, w = shape
    return np.arange(c * h * w, dtype=np.int64).reshape(h, w, c).transpose(2, 0, 1).reshape(-1)


def conv_taps(
    size: int, out: int, k: int, stride: int, pad: int, dil: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """For each input row ``y``: the (output row, kernel row) pairs through which it reaches an
    output (``y = oy * stride - pad + ky * dil``), ``taps[y, :count[y]]``."""
    y = np.arange(size)[:, None] + pad - np.arange(k)[None, :] * dil
    oy = y // stride
    ok = (y >= 0) & (y % stride == 0) & (oy < out)
    taps = np.zeros((size, k, 2), np.int64)
    count = ok.sum(axis=1)
    for row in range(size):
        ks = np.flatnonzero(ok[row])
        taps[row, : ks.size, 0] = oy[row, ks]
        taps[row, : ks.size, 1] = ks
    return taps, count.astype(np.int64)


@dataclass
class _Result:
    out: npt.NDArray[np.uint8]  # (T, n) spikes, HWC
    ev_off: npt.NDArray[np.int64]  # (T + 1,) offsets of each step's events
    ev_idx: npt.NDArray[np.int32]  # output events (HWC indices)
    counts: npt.NDArray[np.int64]  # (T, 3)


class EventLayer:
    """One layer's tables for ``kernels.event_layer``, built once from the network."""

    def __init__(self, layer: NetxLayer, syn: DenseSynapse | None, lif: Lif) -> None:
        self.layer = layer
        self.syn = syn
        self.lif = lif
        self.n = layer.num_neurons
        self.n_in = int(np.prod(layer.in_shape))
        out_order = hwc_order(layer.out_shape)
        in_order = hwc_order(layer.in_shape)
        self.bias = np.empty(self.n, np.int64)
        self.bias[out_order] = lif.bias_full
        self.fanout = np.zeros(self.n_in, np.int64)
        self.taps_y = self.taps_x = np.zeros((1, 1, 2), np.int64)
        self.n_taps_y = self.n_taps_x = np.zeros(1, np.int64)
        self.geom = np.zeros(7, np.int64)
        self.exp, self.wrap_bits = 0, 32
        if syn is None:  # input layer: each input spike is a current of 1, no latency
            self.kind, self.lag0 = KIND_INPUT, 0
            self.weights: npt.NDArray[Any] = np.zeros((1, 1), np.int32)
            self.delays = np.zeros(1, np.int64)
            self.acc_dtype: Any = np.int32
            self.direct = True
            self.ring = 1
            return
        self.lag0 = 1
        self.acc_dtype = syn.int_dtype
        self.fanout[in_order] = syn.fanout
        if syn.conv_weight is not None:
            self.kind = KIND_CONV
            self.weights = self._conv_weights(layer, syn.conv_weight)
            self.delays = np.zeros(1, np.int64)
            self.wrap_bits = 24
            self.direct = syn.bound < MAX_UV  # the 24-bit wrap cannot apply below 2**23
        else:
            self.kind = KIND_DENSE
            inverse = np.argsort(in_order)  # CHW index of each HWC input index
            # (groups * n_in, n_out): row g * n_in + q holds input q's weights in delay group g
            self.weights = np.concatenate([w.T[inverse] for _, w in syn.dense_groups])
            self.weights = self.weights.astype(self.acc_dtype)
            self.delays = np.array([d for d, _ in syn.dense_groups], np.int64)
            self.exp = syn.weight_exp
            self.direct = len(self.delays) == 1 and self.exp == 0 and self.acc_dtype == np.int32
        self.ring = int(self.delays.max()) + 1

    def _conv_weights(self, layer: NetxLayer, w: npt.NDArray[np.int64]) -> npt.NDArray[Any]:
        """(out, in/groups, kh, kw) -> (in * kh * kw, out/groups): row (c * kh + ky) * kw + kx
        holds input channel c's weights at tap (ky, kx) to all output channels of its group."""
        c_out, c_per_group, kh, kw = w.shape
        g = layer.groups
        k_per_group = c_out // g
        wt = np.empty((c_per_group * g, kh, kw, k_per_group), self.acc_dtype)
        for gi in range(g):
            block = w[gi * k_per_group : (gi + 1) * k_per_group]
            wt[gi * c_per_group : (gi + 1) * c_per_group] = block.transpose(1, 2, 3, 0)
        (sh, sw), (ph, pw), (dh, dw) = layer.stride, layer.padding, layer.dilation
        c_in, h_in, w_in = layer.in_shape
        _, h_out, w_out = layer.out_shape
        self.taps_y, self.n_taps_y = conv_taps(h_in, h_out, kh, sh, ph, dh)
        self.taps_x, self.n_taps_x = conv_taps(w_in, w_out, kw, sw, pw, dw)
        self.geom = np.array([c_in, w_in, c_out, w_out, c_per_group, kh, kw], np.int64)
        return wt.reshape(-1, k_per_group)

    @property
    def fits(self) -> bool:
        """Whether the accumulator ring is small enough for the event-driven kernel."""
        return self.ring * len(self.delays) * self.n <= MAX_ACC_ELEMENTS

    def run(
        self,
        ev_off: npt.NDArray[np.int64],
        ev_idx: npt.NDArray[np.int32],
        dense_input: npt.NDArray[np.uint8],
        hwc_in: bool,
        dense_above: float,
    ) -> _Result:
        """One window of this layer from the reset state. ``ev_off``/``ev_idx``: input events
        (HWC); ``dense_input`` (T, C, H, W), or (T, H, W, C) for ``hwc_in``: the same input as
        frames, read only for the steps that take the dense conv/matmul (those with more than
        ``dense_above`` of the inputs active)."""
        from hsnn_perception.core.snn import kernels

        t = dense_input.shape[0]
        dense_row = np.full(t, -1, np.int64)
        dense_raw = np.zeros((0, len(self.delays), self.n), self.acc_dtype)
        if self.syn is not None and dense_above < 1.0:
            busy = np.flatnonzero(np.diff(ev_off) > dense_above * self.n_in)
            if busy.size:
                dense_row[busy] = np.arange(busy.size)
                dense_raw = self._dense_sums(dense_input[busy], hwc_in)
        out = np.empty((t, self.n), np.uint8)
        out_off = np.empty(t + 1, np.int64)
        out_idx = np.empty(t * self.n, np.int32)
        counts = np.zeros((t, 3), np.int64)
        u = np.zeros(self.n, np.int32)
        v = np.zeros(self.n, np.int32)
        acc = np.zeros((self.ring, len(self.delays), self.n), self.acc_dtype)
        cur = np.empty(self.n, np.int32)
        lif = self.lif
        kernels.event_layer(
            ev_off,
            ev_idx,
            self.lag0,
            self.kind,
            self.taps_y,
            self.n_taps_y,
            self.taps_x,
            self.n_taps_x,
            self.geom,
            self.weights,
            self.delays,
            self.exp,
            self.wrap_bits,
            self.direct,
            dense_row,
            dense_raw,
            self.fanout,
            acc,
            cur,
            u,
            v,
            self.bias,
            lif.u_keep,
            lif.v_keep,
            lif.vth,
            out,
            out_off,
            out_idx,
            counts,
        )
        return _Result(out, out_off, out_idx, counts)

    def _dense_sums(self, frames: npt.NDArray[np.uint8], hwc_in: bool) -> npt.NDArray[Any]:
        """Exact sums of whole frames (N, C, H, W), (N, H, W, C) for ``hwc_in``, by the dense
        conv/matmul -> (N, G, n) HWC."""
        assert self.syn is not None
        raw = [s for _, s in self.syn.raw_sums(frames, hwc_in=hwc_in, hwc_out=True)]
        sums = raw[0][:, None] if len(raw) == 1 else np.stack(raw, axis=1)  # (N, G, n)
        return sums.astype(self.acc_dtype, copy=False)


class EventNetwork:
    """A network run event-driven, one sample at a time (see the module's docstring)."""

    def __init__(
        self,
        layers: list[NetxLayer],
        synapses: list[DenseSynapse | None],
        lifs: list[Lif],
        dense_above: float,
    ) -> None:
        self.layers = [EventLayer(*parts) for parts in zip(layers, synapses, lifs, strict=True)]
        self.dense_above = dense_above
        self.input_shape = layers[0].in_shape
        self.input_order = hwc_order(self.input_shape)
        self.output_shape = layers[-1].out_shape
        self.output_chw = np.argsort(hwc_order(self.output_shape))  # CHW index of each HWC one

    @property
    def fits(self) -> bool:
        return all(layer.fits for layer in self.layers)

    def run_sample(
        self, x: npt.NDArray[np.uint8]
    ) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
        """``x`` (T, C, H, W) uint8 -> (spikes (T, *output_shape), counts (T, layers, 3)).
        ``SnnInputError`` if ``x`` holds a value above 1 (checked on the way: only nonzero
        values are looked at)."""
        from hsnn_perception.core.snn import kernels

        t = x.shape[0]
        frames = np.ascontiguousarray(x).reshape(t, -1)
        if not frames.flags.writeable:  # numba compiles read-only arrays as another type
            frames = frames.copy()
        ev_off = np.empty(t + 1, np.int64)
        ev_idx = np.empty(frames.size, np.int32)
        if kernels.scan_events(frames, self.input_order, ev_off, ev_idx):
            raise SnnInputError("run input: spikes must be binary (0/1)")
        counts = np.empty((t, len(self.layers), 3), np.int64)
        dense_in, hwc = x, False  # frames, copied only for the steps that take the dense sums
        for i, layer in enumerate(self.layers):
            res = layer.run(ev_off, ev_idx, dense_in, hwc, self.dense_above)
            counts[:, i] = res.counts
            ev_off, ev_idx = res.ev_off, res.ev_idx
            c, h, w = layer.layer.out_shape
            dense_in, hwc = res.out.reshape(t, h, w, c), True
        # the output back in CHW order, from its events (a transpose of the HWC frames strides
        # over every byte; the events are few)
        out = np.zeros((t, self.layers[-1].n), np.uint8)
        kernels.events_to_dense(ev_off, ev_idx, self.output_chw, out)
        return out.reshape(t, *self.output_shape), counts
