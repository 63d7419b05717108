"""Synaptic currents of one conv/dense layer for a batch of whole input frames (the dense path):
one conv or matmul over all frames, exact in floats, as Lava's synapse processes send them.

Sums of binary inputs x integer weights are computed in float32/float64 (torch when asked, else
numpy im2col + BLAS) because float GEMM/conv is several times faster on CPU than integer kernels;
they stay exact because every partial sum is an integer of magnitude <= the layer's bound
(largest row sum of |w|), which picks the float width at load time.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from hsnn_perception.core.snn.api import SnnConfigError
from hsnn_perception.core.snn.loihi import (
    MAX_UV,
    UV_BITS,
    IntArray,
    netx_dense_weights,
    shift_exp,
    wrap_signed,
)
from hsnn_perception.core.snn.netx import NetxLayer
from hsnn_perception.core.snn.ops import layer_fanout

# numpy 1.26's type stub refuses the tuple ``axis`` the function accepts
_window_view: Any = np.lib.stride_tricks.sliding_window_view


class DenseSynapse:
    """Synaptic current of one conv/dense layer for a batch of input spike frames.

    Also holds the layer's integer weights as Lava uses them (``conv_weight``: (out, in/groups,
    kh, kw) as stored; ``dense_groups``: one (delay, (out, in) weights) per distinct dense delay,
    after netx's/Lava's weight pipeline, with ``weight_exp``), for the event-driven kernels.
    """

    def __init__(self, layer: NetxLayer, compute: str) -> None:
        self.layer = layer
        self.compute = compute
        self.n_in = int(np.prod(layer.in_shape))
        self.n_out = layer.num_neurons
        fanout = layer_fanout(layer)
        if layer.weight is None or fanout is None:
            raise SnnConfigError(f"layer {layer.name}: a {layer.kind} layer without weights")
        self.fanout = fanout
        self.weight_exp = 0
        self.conv_weight: npt.NDArray[np.int64] | None = None
        self.dense_groups: list[tuple[int, npt.NDArray[np.int64]]] = []
        if layer.kind == "conv":
            self.conv_weight = layer.weight.astype(np.int64)
            self._init_conv(self.conv_weight)
        else:
            w_eff, self.weight_exp = netx_dense_weights(layer.weight)
            if layer.delay is None:
                self.dense_groups = [(0, w_eff.astype(np.int64))]
            else:
                self.dense_groups = [
                    (int(d), np.where(layer.delay == d, w_eff, 0).astype(np.int64))
                    for d in np.unique(layer.delay)
                ]
            self._init_dense(self.dense_groups)

    # -- setup --------------------------------------------------------------------------------
    def _float_dtype(self, bound: int) -> Any:
        # float32 represents every integer exactly below 2**24, float64 below 2**53
        if bound < (1 << 24):
            return np.float32
        if bound < (1 << 53):
            return np.float64
        raise SnnConfigError(f"layer {self.layer.name}: weights too large to accumulate exactly")

    def _setup(self, bound: int) -> None:
        self.bound = bound
        self._fdtype = self._float_dtype(bound)
        self.int_dtype: Any = np.int32 if bound < (1 << 31) else np.int64
        if self.compute == "torch":
            import torch

            self._torch: Any = torch
            self._tdtype = torch.float32 if self._fdtype == np.float32 else torch.float64

    def _init_conv(self, w: npt.NDArray[np.int64]) -> None:
        self._setup(int(np.abs(w).reshape(w.shape[0], -1).sum(axis=1).max(initial=0)))
        self._groups: list[tuple[int, Any]] = [(0, None)]
        if self.compute == "torch":
            self._w: Any = self._torch.from_numpy(w).to(self._tdtype)
        else:
            self._w = w.astype(self._fdtype)

    def _init_dense(self, groups: list[tuple[int, npt.NDArray[np.int64]]]) -> None:
        self._setup(max(int(np.abs(w).sum(axis=1).max(initial=0)) for _, w in groups))
        if self.compute == "torch":
            torch = self._torch
            self._groups = [(d, torch.from_numpy(w.T.copy()).to(self._tdtype)) for d, w in groups]
        else:
            self._groups = [(d, np.ascontiguousarray(w.T.astype(self._fdtype))) for d, w in groups]

    # -- compute ------------------------------------------------------------------------------
    def raw_sums(
        self, spikes: npt.NDArray[np.uint8], hwc_in: bool = False, hwc_out: bool = False
    ) -> list[tuple[int, IntArray]]:
        """``spikes`` (N, C, H, W) binary -> [(delay, exact weighted sums (N, n_out)), ...]
        before the weight exponent and the wraps (``int_dtype``). ``hwc_in``: ``spikes`` are
        (N, H, W, C); ``hwc_out``: a conv's sums come out in (H, W, C) order (the event-driven
        layout)."""
        n = spikes.shape[0]
        if self.layer.kind == "conv":
            return [(0, self._conv(spikes, hwc_in, hwc_out).reshape(n, -1))]
        if hwc_in:
            spikes = spikes.transpose(0, 3, 1, 2)
        flat = np.ascontiguousarray(spikes).reshape(n, -1)
        return [(d, self._matmul(flat, w)) for d, w in self._groups]

    def currents(self, spikes: npt.NDArray[np.uint8]) -> list[tuple[int, npt.NDArray[np.int32]]]:
        """``spikes`` (N, C, H, W) binary -> [(delay, int32 (N, n_out)), ...] as Lava sends them."""
        out = []
        for d, acc in self.raw_sums(spikes):
            if self.layer.kind == "conv":
                if self.bound >= MAX_UV:  # Lava conv: signed 24-bit wrap (impossible below 2**23)
                    acc = wrap_signed(acc.astype(np.int64), UV_BITS)
            else:
                # shifting the int32 sum equals Lava's int64 shift + int32 cast (both mod 2**32)
                acc = shift_exp(acc, self.weight_exp)
            out.append((d, acc.astype(np.int32, copy=False)))
        return out

    def _to_int(self, y: Any) -> IntArray:
        """Exact float sums -> integers (round only guards against algorithmic float noise)."""
        if self.compute == "torch":
            torch = self._torch
            idt = torch.int32 if self.int_dtype == np.int32 else torch.int64
            ints: IntArray = y.round_().to(idt).numpy()
            return ints
        ints = np.rint(y).astype(self.int_dtype)
        return ints

    def _matmul(self, flat: npt.NDArray[np.uint8], w: Any) -> IntArray:
        if self.compute == "torch":
            x = self._torch.from_numpy(flat).to(self._tdtype)
            return self._to_int(x @ w)
        return self._to_int(flat.astype(self._fdtype) @ w)

    def _conv(
        self, spikes: npt.NDArray[np.uint8], hwc_in: bool = False, hwc_out: bool = False
    ) -> IntArray:
        """Sums (N, C_out, H, W), or (N, H, W, C_out) for ``hwc_out``, of (N, C, H, W) spikes,
        or (N, H, W, C) ones for ``hwc_in``."""
        layer = self.layer
        if self.compute == "torch":
            torch = self._torch
            x = torch.from_numpy(spikes)
            if hwc_in:  # an NCHW view of NHWC memory: torch runs it channels-last, no copy
                x = x.permute(0, 3, 1, 2)
            x = x.to(self._tdtype)
            if hwc_out and not hwc_in:  # channels-last in, channels-last out: no output copy
                x = x.contiguous(memory_format=torch.channels_last)
            y = torch.nn.functional.conv2d(
                x,
                self._w,
                stride=layer.stride,
                padding=layer.padding,
                dilation=layer.dilation,
                groups=layer.groups,
            )
            if hwc_out:
                y = y.permute(0, 2, 3, 1).contiguous()
            return self._to_int(y)
        nhwc = spikes if hwc_in else spikes.transpose(0, 2, 3, 1)  # a view: im2col copies
        y_hwc = self._conv_numpy(nhwc)
        return self._to_int(y_hwc if hwc_out else y_hwc.transpose(0, 3, 1, 2))

    def _conv_numpy(self, spikes: npt.NDArray[np.uint8]) -> npt.NDArray[np.floating[Any]]:
        """im2col + BLAS on (N, H, W, C) spikes -> sums (N, H_out, W_out, C_out)."""
        layer = self.layer
        n = spikes.shape[0]
        c_out, c_per_group, kh, kw = self._w.shape
        (sh, sw), (ph, pw), (dh, dw) = layer.stride, layer.padding, layer.dilation
        _, h_out, w_out = layer.out_shape
        x = spikes.astype(self._fdtype)
        if ph or pw:
            x = np.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
        span_h, span_w = dh * (kh - 1) + 1, dw * (kw - 1) + 1
        win = _window_view(x, (span_h, span_w), axis=(1, 2))
        # (N, OH', OW', C, span_h, span_w) -> strided output positions, dilated taps
        win = win[:, : (h_out - 1) * sh + 1 : sh, : (w_out - 1) * sw + 1 : sw, :, ::dh, ::dw]
        g = layer.groups
        outs = []
        k_per_group = c_out // g
        for gi in range(g):
            # (N * OH * OW, C/g * kh * kw) @ (C/g * kh * kw, K/g)
            cols = win[:, :, :, gi * c_per_group : (gi + 1) * c_per_group]
            cols = cols.reshape(n * h_out * w_out, -1)
            wg = self._w[gi * k_per_group : (gi + 1) * k_per_group].reshape(k_per_group, -1)
            outs.append((cols @ wg.T).reshape(n, h_out, w_out, k_per_group))
        conv: npt.NDArray[np.floating[Any]] = np.concatenate(outs, axis=3)
        return conv
