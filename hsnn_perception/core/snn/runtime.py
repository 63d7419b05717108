"""The project's SNN runtime: runs a netx HDF5 network with Loihi's fixed-point arithmetic,
bit for bit as Lava's ``fixed_pt`` process models (lava-nc 0.10) do, but vectorised.

What is reproduced (see docs/snn_runtime.md for the derivation):

* Dense weights go through netx's ``optimize_weight_bits`` (scale to 8 bits, weight exponent),
  then Lava's ``clip_weights`` / ``truncate_weights``; the accumulated current is shifted by the
  weight exponent (arithmetic shift) and wraps to int32 on its way to the neuron.
* Conv weights are used as stored (netx applies no exponent to conv); the current wraps to a
  signed 24-bit value (Lava's ``signed_clamp``). Lava's convolution of the flipped kernel equals
  the torch correlation with the stored kernel, which is what is computed here.
* CUBA LIF (``PyLifModelBitAcc``): ``u = trunc(u * (4096 - iDecay) / 4096) + (a_in << 6)`` with
  Lava's single 24-bit wrap, ``v = trunc(v * (4096 - vDecay) / 4096) + u + (bias << 6)``
  saturated to +-(2**23 - 1), spike when ``v > vThMant << 6``, then ``v = 0``. No refractory time.
* Every conv/dense synapse delivers its current one timestep after the input spike (Lava's
  ``a_buff``), dense delays ``d`` add ``d`` more steps. An input layer's neuron has no synapse and
  no latency. So output step ``t`` depends on input steps ``<= t - L`` for ``L`` synaptic layers,
  exactly as in Lava and as in slayer with its default ``delay_shift=True``.

``run`` is batched over samples and goes layer by layer over the whole window, which turns each
synapse into one large conv/matmul over B*T frames and, with numba installed, each layer's
neurons into one compiled pass over the window; ``run_window`` is one sample of it (the node's).

Synaptic currents are computed exactly in integers: torch float32/float64 conv/matmul when torch
is installed (faster on CPU here than its int32 kernels), else numpy float32/float64 im2col
matmuls; sums of integer weights stay exact because the worst case is bounded at load time and
picks the float width. Neuron updates run in a numba-compiled whole-window kernel when numba is
installed, else in vectorised numpy per step (``engine``); both are bit-identical.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from hsnn_perception.core.errors import SnnError
from hsnn_perception.core.registry import SNN_BACKENDS, UnknownNameError
from hsnn_perception.core.snn.netx import (
    MAX_NETWORK_NEURONS,
    MAX_NETWORK_WEIGHTS,
    NetxFormatError,
    NetxLayer,
    NetxNetwork,
    read_netx,
)

UV_BITS = 24
MAX_UV = 1 << (UV_BITS - 1)  # 2**23
DECAY_SHIFT = 12
DECAY_UNITY = 1 << DECAY_SHIFT
ACT_SHIFT = 6  # synaptic input MSB alignment
VTH_SHIFT = 6
BIAS_EXP = 6  # netx sets bias_exp = 6 for CUBA neurons
COUNT_FIELDS = ("synaptic_ops", "neuron_updates", "spikes")
# Elements (time x batch x neurons) handled at once by ``run``; bounds its working memory.
_CHUNK_ELEMENTS = 1 << 24


class SnnInputError(SnnError, ValueError):
    """Input spikes of the wrong shape, dtype or values."""


class SnnConfigError(SnnError, ValueError):
    """Unknown backend or option."""


@dataclass
class OpCounts:
    """Operations an energy model needs, summed over the timesteps (and samples) it covers.

    ``synaptic_ops``: input spikes x structural fan-out (synapses reached, zero weights included);
    ``neuron_updates``: neurons x timesteps; ``spikes``: output spikes of all layers.
    ``per_layer``: one dict per layer with ``layer`` (name) and the three counts.
    """

    synaptic_ops: int = 0
    neuron_updates: int = 0
    spikes: int = 0
    per_layer: list[dict[str, Any]] = field(default_factory=list)
    timesteps: int = 0

    def __add__(self, other: OpCounts) -> OpCounts:
        if not isinstance(other, OpCounts):
            return NotImplemented
        if self.per_layer and other.per_layer:
            names = [d["layer"] for d in self.per_layer]
            if names != [d["layer"] for d in other.per_layer]:
                raise ValueError("cannot add OpCounts of different networks")
            per_layer = [
                {"layer": a["layer"], **{k: int(a[k]) + int(b[k]) for k in COUNT_FIELDS}}
                for a, b in zip(self.per_layer, other.per_layer, strict=True)
            ]
        else:
            per_layer = [dict(d) for d in (self.per_layer or other.per_layer)]
        return OpCounts(
            synaptic_ops=self.synaptic_ops + other.synaptic_ops,
            neuron_updates=self.neuron_updates + other.neuron_updates,
            spikes=self.spikes + other.spikes,
            per_layer=per_layer,
            timesteps=self.timesteps + other.timesteps,
        )

    def __radd__(self, other: Any) -> OpCounts:
        if other == 0:  # lets sum() start from 0
            return self
        return self.__add__(other)

    @classmethod
    def from_array(cls, counts: np.ndarray, layer_names: list[str]) -> OpCounts:
        """Sum a ``(..., T, L, 3)`` count array (see ``SnnRuntime.run_with_counts``)."""
        counts = np.asarray(counts, dtype=np.int64)
        per = counts.reshape(-1, counts.shape[-2], 3).sum(axis=0)
        timesteps = counts.shape[-3] if counts.ndim >= 3 else 1
        per_layer = [
            {"layer": name, **{k: int(per[i, j]) for j, k in enumerate(COUNT_FIELDS)}}
            for i, name in enumerate(layer_names)
        ]
        total = per.sum(axis=0)
        return cls(int(total[0]), int(total[1]), int(total[2]), per_layer, int(timesteps))


# --------------------------------------------------------------------------------------------
# netx / Lava weight arithmetic
# --------------------------------------------------------------------------------------------


def netx_dense_weights(weight: np.ndarray) -> tuple[np.ndarray, int]:
    """Weights and weight exponent that Lava's fixed_pt Dense ends up using for a netx dense layer.

    netx's ``optimize_weight_bits`` scales the stored 8-bit weights up to use the full synapse
    range and returns ``num_weight_bits`` and ``weight_exp``; Lava's Dense model then clips to
    8 bits and truncates the low bits (``truncate_weights``). Both steps are reproduced here.
    """
    w = np.asarray(weight).astype(np.int64)
    if w.size == 0 or (w.max() == 0 and w.min() == 0):
        # netx itself fails on an all-zero matrix (log2 of inf); the result is zero anyway.
        return np.zeros(w.shape, dtype=np.int32), 0
    w_max, w_min = int(w.max()), int(w.min())
    if (w_max > 254 and w_min < 0) or (w_min < -256 and w_max > 0):
        w = np.clip(w, -256, 254)  # netx warns and clips weights that cannot fit the synapse
        w_max, w_min = int(w.max()), int(w.min())
    if w_max < 0:
        signed, scale = 0, -256 / w_min
    elif w_min >= 0:
        signed, scale = 0, 255 / w_max
    else:
        signed = 1
        pos = 127 / w_max if w_max > 0 else np.inf
        scale = min(pos, -128 / w_min)
    scale_bits = int(np.floor(np.log2(scale))) + signed
    n = 8
    while n > 0 and np.any(w % (1 << n)):  # largest power of two dividing every weight
        n -= 1
    n -= signed
    num_weight_bits = 8 - scale_bits - n
    weight_exp = -scale_bits
    w = np.left_shift(w.astype(np.int32), scale_bits).astype(np.int64)

    # Lava PyDenseModelBitAcc: sign mode from the (scaled) weights, clip, truncate.
    if w.min() >= 0:
        mode = "exc"
    elif w.max() <= 0:
        mode = "inh"
    else:
        mode = "mixed"
    mixed = int(mode == "mixed")
    w = w.astype(np.int32)
    if mode == "inh":
        w = -w
    w = np.clip(w, -(1 << 8) * mixed, (1 << 8) - 1)
    k = 8 - num_weight_bits + mixed
    w = (w >> k) << k
    if mode == "inh":
        w = -w
    return w.astype(np.int32), int(weight_exp)


def shift_exp(accum: np.ndarray, weight_exp: int) -> np.ndarray:
    """Lava's weight exponent: left shift for positive, arithmetic right shift otherwise."""
    if weight_exp > 0:
        return np.left_shift(accum, weight_exp)
    return np.right_shift(accum, -weight_exp)


def wrap_signed(x: np.ndarray, bits: int) -> np.ndarray:
    """Two's complement wrap to ``bits`` (Lava conv's ``signed_clamp``)."""
    base = 1 << bits
    return (x + base // 2) % base - base // 2


def conv_fanout(layer: NetxLayer) -> np.ndarray:
    """Number of synapses leaving each input pixel of a conv layer, shape (C_in, H, W)."""
    c_in, h_in, w_in = layer.in_shape
    c_out, _, h_out, w_out = (layer.out_shape[0], 0, layer.out_shape[1], layer.out_shape[2])
    assert layer.weight is not None
    kh, kw = layer.weight.shape[2:]

    def axis_count(size: int, out: int, k: int, s: int, p: int, d: int) -> np.ndarray:
        cnt = np.zeros(size, dtype=np.int64)
        pos = (np.arange(out)[:, None] * s - p + np.arange(k)[None, :] * d).ravel()
        np.add.at(cnt, pos[(pos >= 0) & (pos < size)], 1)
        return cnt

    ch = axis_count(h_in, h_out, kh, layer.stride[0], layer.padding[0], layer.dilation[0])
    cw = axis_count(w_in, w_out, kw, layer.stride[1], layer.padding[1], layer.dilation[1])
    per_pixel = np.outer(ch, cw) * (c_out // layer.groups)
    return np.broadcast_to(per_pixel, (c_in, h_in, w_in)).copy()


# --------------------------------------------------------------------------------------------
# Synapses (currents as Lava's synapse processes send them, int32 per output neuron)
# --------------------------------------------------------------------------------------------


class _Synapse:
    """Synaptic current of one conv/dense layer for a batch of input spike frames."""

    def __init__(self, layer: NetxLayer, compute: str) -> None:
        self.layer = layer
        self.compute = compute
        self.n_in = int(np.prod(layer.in_shape))
        self.n_out = layer.num_neurons
        assert layer.weight is not None
        fanout = layer_fanout(layer)
        assert fanout is not None
        self.fanout = fanout
        if layer.kind == "conv":
            self._init_conv(layer.weight.astype(np.int64))
        else:
            w_eff, self.weight_exp = netx_dense_weights(layer.weight)
            if layer.delay is None:
                groups = [(0, w_eff.astype(np.int64))]
            else:
                groups = [
                    (int(d), np.where(layer.delay == d, w_eff, 0).astype(np.int64))
                    for d in np.unique(layer.delay)
                ]
            self._init_dense(groups)

    # -- setup --------------------------------------------------------------------------------
    def _float_dtype(self, bound: int) -> Any:
        # Every partial sum of binary inputs x integer weights is an integer of magnitude <= bound;
        # float32 represents all of them exactly below 2**24, float64 below 2**53. Float GEMM/conv
        # is used because it is several times faster on CPU than torch's integer kernels.
        if bound < (1 << 24):
            return np.float32
        if bound < (1 << 53):
            return np.float64
        raise SnnConfigError(f"layer {self.layer.name}: weights too large to accumulate exactly")

    def _setup(self, bound: int) -> None:
        self.bound = bound
        self._fdtype = self._float_dtype(bound)
        self._idtype = np.int32 if bound < (1 << 31) else np.int64
        if self.compute == "torch":
            import torch

            self._torch = torch
            self._tdtype = torch.float32 if self._fdtype == np.float32 else torch.float64

    def _init_conv(self, w: np.ndarray) -> None:
        self._setup(int(np.abs(w).reshape(w.shape[0], -1).sum(axis=1).max(initial=0)))
        self._groups = [(0, None)]
        if self.compute == "torch":
            self._w = self._torch.from_numpy(w).to(self._tdtype)
        else:
            self._w = w.astype(self._fdtype)

    def _init_dense(self, groups: list[tuple[int, np.ndarray]]) -> None:
        self._setup(max(int(np.abs(w).sum(axis=1).max(initial=0)) for _, w in groups))
        if self.compute == "torch":
            torch = self._torch
            self._groups = [(d, torch.from_numpy(w.T.copy()).to(self._tdtype)) for d, w in groups]
        else:
            self._groups = [(d, np.ascontiguousarray(w.T.astype(self._fdtype))) for d, w in groups]

    # -- compute ------------------------------------------------------------------------------
    def currents(self, spikes: np.ndarray) -> list[tuple[int, np.ndarray]]:
        """``spikes`` (N, C, H, W) binary -> [(delay, int32 (N, n_out)), ...] as Lava sends them."""
        n = spikes.shape[0]
        if self.layer.kind == "conv":
            acc = self._conv(spikes).reshape(n, -1)
            if self.bound >= MAX_UV:  # Lava conv: signed 24-bit wrap (cannot happen below 2**23)
                acc = wrap_signed(acc.astype(np.int64), UV_BITS)
            return [(0, acc.astype(np.int32, copy=False))]
        flat = spikes.reshape(n, -1)
        out = []
        for d, w in self._groups:
            acc = self._matmul(flat, w)
            # shifting the int32 sum equals Lava's int64 shift + int32 cast (both modulo 2**32)
            out.append((d, shift_exp(acc, self.weight_exp).astype(np.int32, copy=False)))
        return out

    def _to_int(self, y: Any) -> np.ndarray:
        """Exact float sums -> integers (round only guards against algorithmic float noise)."""
        if self.compute == "torch":
            torch = self._torch
            idt = torch.int32 if self._idtype == np.int32 else torch.int64
            return y.round_().to(idt).numpy()
        return np.rint(y).astype(self._idtype)

    def _matmul(self, flat: np.ndarray, w: Any) -> np.ndarray:
        if self.compute == "torch":
            x = self._torch.from_numpy(flat).to(self._tdtype)
            return self._to_int(x @ w)
        return self._to_int(flat.astype(self._fdtype) @ w)

    def _conv(self, spikes: np.ndarray) -> np.ndarray:
        layer = self.layer
        if self.compute == "torch":
            torch = self._torch
            x = torch.from_numpy(spikes).to(self._tdtype)
            y = torch.nn.functional.conv2d(
                x,
                self._w,
                stride=layer.stride,
                padding=layer.padding,
                dilation=layer.dilation,
                groups=layer.groups,
            )
            return self._to_int(y)
        return self._to_int(self._conv_numpy(spikes))

    def _conv_numpy(self, spikes: np.ndarray) -> np.ndarray:
        layer = self.layer
        n = spikes.shape[0]
        c_out, c_per_group, kh, kw = self._w.shape
        (sh, sw), (ph, pw), (dh, dw) = layer.stride, layer.padding, layer.dilation
        _, h_out, w_out = layer.out_shape
        x = spikes.astype(self._fdtype)
        if ph or pw:
            x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
        span_h, span_w = dh * (kh - 1) + 1, dw * (kw - 1) + 1
        win = np.lib.stride_tricks.sliding_window_view(x, (span_h, span_w), axis=(2, 3))
        # (N, C, OH', OW', span_h, span_w) -> strided output positions, dilated taps
        win = win[:, :, : (h_out - 1) * sh + 1 : sh, : (w_out - 1) * sw + 1 : sw, ::dh, ::dw]
        g = layer.groups
        outs = []
        k_per_group = c_out // g
        for gi in range(g):
            cols = win[:, gi * c_per_group : (gi + 1) * c_per_group]
            # (N, OH, OW, C*kh*kw) @ (C*kh*kw, K)
            cols = cols.transpose(0, 2, 3, 1, 4, 5).reshape(n * h_out * w_out, -1)
            wg = self._w[gi * k_per_group : (gi + 1) * k_per_group].reshape(k_per_group, -1)
            outs.append((cols @ wg.T).reshape(n, h_out, w_out, k_per_group))
        return np.concatenate(outs, axis=3).transpose(0, 3, 1, 2)


# --------------------------------------------------------------------------------------------
# Compiled kernels (numba, optional): the LIF recurrence of a whole window fused into one pass,
# and the synaptic-op count. Written as plain Python at module level and compiled on first use,
# so numba stays an optional, lazily imported dependency and its on-disk cache can key them by
# file and name. Their integer arithmetic is the same as ``_Lif.step`` (int64 with explicit
# int32 wraps where numpy's int32 arithmetic wraps); the tests check them against the numpy path
# and Lava. (An event-driven conv kernel, one scatter per input spike, was tried and dropped: at
# 5 % input rate it was no faster than torch's dense float conv, see docs/snn_runtime.md.)
# --------------------------------------------------------------------------------------------


def _lif_window_py(a_in, shift, u, v, bias, u_keep, v_keep, vth, out, counts):  # noqa: ANN001, ANN202
    """``a_in`` (Ta, B, n) currents; step t reads row ``t - shift`` (zero before it). Advances
    ``u``, ``v`` (B, n) int32 in place, writes spikes to ``out`` (T, B, n) uint8 and spikes per
    (t, b) to ``counts``."""
    n_t, n_b, n = out.shape
    half32 = 1 << 31
    mask32 = (1 << 32) - 1
    max_uv = 1 << 23
    for t in range(n_t):
        src = t - shift
        for b in range(n_b):
            cnt = 0
            for i in range(n):
                a = np.int64(a_in[src, b, i]) if src >= 0 else np.int64(0)
                # current: trunc(u * keep / 4096) + (a << 6), int32 wrap, Lava's single 24-bit wrap
                p = np.int64(u[b, i]) * u_keep
                d = (p >> 12) if p >= 0 else -((-p) >> 12)
                cur = ((d + a * 64 + half32) & mask32) - half32
                if cur > max_uv:
                    cur -= 2 * max_uv
                elif cur <= -max_uv:
                    cur += 2 * max_uv
                u[b, i] = cur
                p = np.int64(v[b, i]) * v_keep
                d = (p >> 12) if p >= 0 else -((-p) >> 12)
                vol = ((d + cur + bias[i] + half32) & mask32) - half32
                if vol > max_uv - 1:
                    vol = max_uv - 1
                elif vol < 1 - max_uv:
                    vol = 1 - max_uv
                if vol > vth:
                    out[t, b, i] = 1
                    cnt += 1
                    vol = 0
                else:
                    out[t, b, i] = 0
                v[b, i] = vol
            counts[t, b] = cnt


def _fanout_sum_py(x, fanout, out):  # noqa: ANN001, ANN202
    """Per row of ``x`` (N, n_in) binary: the sum of ``fanout`` over the neurons that spiked."""
    for r in range(x.shape[0]):
        acc = 0
        for j in range(x.shape[1]):
            if x[r, j] != 0:
                acc += fanout[j]
        out[r] = acc


_KERNELS: dict[str, Any] = {}


def numba_available() -> bool:
    """Whether the compiled kernels can be used (numba importable)."""
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def _kernel(name: str) -> Any:
    """The numba-compiled version of ``_<name>_py`` (compiled once, cached on disk)."""
    fn = _KERNELS.get(name)
    if fn is None:
        import numba

        py = globals()[f"_{name}_py"]
        try:
            fn = numba.njit(cache=True, nogil=True)(py)
        except RuntimeError:  # no writable cache location (read-only install): compile per process
            fn = numba.njit(cache=False, nogil=True)(py)
        _KERNELS[name] = fn
    return fn


# --------------------------------------------------------------------------------------------
# CUBA LIF, bit-accurate with PyLifModelBitAcc
# --------------------------------------------------------------------------------------------


class _Lif:
    def __init__(self, layer: NetxLayer) -> None:
        p = layer.neuron
        self.n = layer.num_neurons
        # netx passes du = iDecay - 1 and Lava adds ds_offset = 1: the current keeps
        # (4096 - iDecay)/4096; the voltage keeps (4096 - vDecay)/4096 (dm_offset = 0).
        self.u_keep = DECAY_UNITY - p.i_decay
        self.v_keep = DECAY_UNITY - p.v_decay
        self.vth = int(p.vth_mant) << VTH_SHIFT
        if layer.bias is None:
            self.bias = None
        else:
            # netx: bias -> int32 -> Lava's int16 bias_mant Var (wraps), then << bias_exp (6).
            mant = np.asarray(layer.bias).astype(np.int32).astype(np.int16).astype(np.int32)
            self.bias = np.left_shift(mant, BIAS_EXP).astype(np.int32)
        full = np.zeros(self.n, np.int64) if self.bias is None else self.bias
        self._bias_full = np.ascontiguousarray(np.broadcast_to(full, (self.n,)), dtype=np.int64)

    def window(
        self, a_in: np.ndarray, shift: int, u: np.ndarray, v: np.ndarray, out: np.ndarray
    ) -> np.ndarray:
        """Compiled: ``out.shape[0]`` steps at once, step t fed by ``a_in[t - shift]`` (zero
        before); ``u``, ``v`` (B, n) int32 advanced in place; returns spikes per (t, b)."""
        counts = np.empty(out.shape[:2], np.int64)
        _kernel("lif_window")(
            a_in, shift, u, v, self._bias_full, self.u_keep, self.v_keep, self.vth, out, counts
        )
        return counts

    @staticmethod
    def _decay(x: np.ndarray, keep: int) -> np.ndarray:
        """Lava's ``sign(x) * ((|x| * keep) >> 12)``: the product scaled by 2**-12, rounded toward
        zero. Done in float64, where it is exact (|x * keep| < 2**37 and the scale is a power of
        two) and faster than numpy's int64 sign/abs/shift sequence."""
        if keep == DECAY_UNITY:
            return x.copy()
        if keep == 0:
            return np.zeros_like(x)
        scaled = x * (keep / DECAY_UNITY)
        np.trunc(scaled, out=scaled)
        return scaled.astype(np.int32)

    def step(self, u: np.ndarray, v: np.ndarray, a_in: np.ndarray) -> np.ndarray:
        """Advance state ``u``, ``v`` (int32, modified in place) by one step; return spikes."""
        act = np.left_shift(a_in.astype(np.int32, copy=False), ACT_SHIFT)  # int32 wraps as Lava
        cur = self._decay(u, self.u_keep)
        cur += act  # int32 addition wraps as in Lava
        if cur.size and (cur.max() > MAX_UV or cur.min() <= -MAX_UV):
            # Lava's single 24-bit wrap of the current (rare: only checked when it can apply)
            wrapped = np.where(cur > MAX_UV, cur - 2 * MAX_UV, cur)
            cur = np.where(wrapped <= -MAX_UV, cur + 2 * MAX_UV, wrapped)
        u[...] = cur
        volt = self._decay(v, self.v_keep)
        volt += u
        if self.bias is not None:
            volt += self.bias
        np.clip(volt, -MAX_UV + 1, MAX_UV - 1, out=volt)
        spikes = volt > self.vth
        np.copyto(volt, 0, where=spikes)
        v[...] = volt
        return spikes


# --------------------------------------------------------------------------------------------
# Input checks and operation counts (shared with the Lava backend)
# --------------------------------------------------------------------------------------------


def check_spikes(
    input_shape: tuple[int, int, int], x: np.ndarray, lead: int, what: str
) -> np.ndarray:
    """Validate binary spikes of shape (*lead dims, C, H, W); return them as uint8."""
    arr = np.asarray(x)
    want = tuple(input_shape)
    if arr.ndim != lead + 3 or tuple(arr.shape[lead:]) != want:
        raise SnnInputError(
            f"{what}: expected shape {what_shape(lead)} with (C, H, W) = {list(want)}, "
            f"got {list(arr.shape)}"
        )
    if arr.dtype != np.bool_:
        if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
            raise SnnInputError(f"{what}: dtype {arr.dtype} is not a spike array")
        if arr.size and np.issubdtype(arr.dtype, np.integer):
            binary = arr.min() >= 0 and arr.max() <= 1
        else:
            binary = not arr.size or bool(np.isin(arr, (0, 1)).all())
        if not binary:
            raise SnnInputError(f"{what}: spikes must be binary (0/1)")
    return arr.astype(np.uint8, copy=False)


def what_shape(lead: int) -> str:
    return {0: "(C, H, W)", 1: "(B, C, H, W) or (T, C, H, W)", 2: "(B, T, C, H, W)"}.get(
        lead, "(..., C, H, W)"
    )


def layer_fanout(layer: NetxLayer) -> np.ndarray | None:
    """Synapses leaving each input neuron of ``layer`` (flat, C-order); None for an input layer."""
    if layer.kind == "conv":
        return conv_fanout(layer).reshape(-1)
    if layer.kind == "dense":
        return np.full(int(np.prod(layer.in_shape)), layer.num_neurons, dtype=np.int64)
    return None


def count_ops(
    network: NetxNetwork, inputs: np.ndarray, layer_spikes: list[np.ndarray]
) -> np.ndarray:
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


def synaptic_ops(spikes: np.ndarray, fanout: np.ndarray) -> np.ndarray:
    """Per row of ``spikes`` (N, n_in) binary: sum of the fan-out of the neurons that spiked."""
    exact32 = spikes.shape[1] * int(fanout.max(initial=0)) < (1 << 24)
    dtype = np.float32 if exact32 else np.float64  # exact integer sums either way
    return np.rint(spikes.astype(dtype) @ fanout.astype(dtype)).astype(np.int64)


# --------------------------------------------------------------------------------------------
# The runtime
# --------------------------------------------------------------------------------------------


def _pick_compute(compute: str) -> str:
    if compute not in ("auto", "torch", "numpy"):
        raise SnnConfigError(f"compute must be 'auto', 'torch' or 'numpy', not {compute!r}")
    if compute == "numpy":
        return "numpy"
    try:
        import torch  # noqa: F401
    except ImportError:
        if compute == "torch":
            raise SnnConfigError("compute='torch' but torch is not installed") from None
        return "numpy"
    return "torch"


def _pick_engine(engine: str) -> str:
    if engine not in ("auto", "numba", "numpy"):
        raise SnnConfigError(f"engine must be 'auto', 'numba' or 'numpy', not {engine!r}")
    if engine == "numpy":
        return "numpy"
    if numba_available():
        return "numba"
    if engine == "numba":
        raise SnnConfigError("engine='numba' but numba is not installed")
    return "numpy"


def check_network_size(network: NetxNetwork) -> None:
    """Refuse a network whose runtime tables would be too large, before building any of them.

    ``read_netx`` bounds what a file declares; this bounds what the runtime derives from it: a
    dense layer with delays gets one weight matrix per distinct delay (up to 63 copies), and a
    network built in code has not been through ``read_netx`` at all.
    """
    neurons = weights = 0
    for layer in network.layers:
        neurons += layer.num_neurons
        if layer.weight is None:
            continue
        copies = 1 if layer.delay is None else max(1, len(np.unique(layer.delay)))
        weights += copies * int(layer.weight.size)
        if weights > MAX_NETWORK_WEIGHTS:
            raise NetxFormatError(
                f"{network.path}: layer {layer.name}: the runtime would hold {weights} weights "
                f"({copies} delay groups here), more than the limit of {MAX_NETWORK_WEIGHTS}"
            )
    if neurons > MAX_NETWORK_NEURONS:
        raise NetxFormatError(
            f"{network.path}: {neurons} neurons, more than the limit of {MAX_NETWORK_NEURONS}"
        )


class SnnRuntime:
    """Loihi-exact execution of a netx network, batched over samples (``run``) or one window of
    one sample (``run_window``).

    Shapes are (C, H, W) like slayer/torch; dense outputs are (N, 1, 1).

    ``compute`` picks the dense conv/matmul library (``"auto"``: torch if installed, else numpy);
    ``engine`` the neuron update (``"auto"``: a numba-compiled kernel that runs a layer's whole
    window in one fused pass when numba is installed, else vectorised numpy per step). All
    combinations give identical results.
    """

    def __init__(self, network: NetxNetwork, compute: str = "auto", engine: str = "auto") -> None:
        check_network_size(network)
        self.network = network
        self.compute = _pick_compute(compute)
        self.engine = _pick_engine(engine)
        self.backend_name = f"native ({self.compute})"
        if self.engine == "numba":
            self.backend_name = f"native ({self.compute}+numba)"
        self.input_shape: tuple[int, int, int] = network.input_shape
        self.output_shape: tuple[int, int, int] = network.output_shape
        self.layer_names = [layer.name for layer in network.layers]
        self._syn = [
            None if layer.kind == "input" else _Synapse(layer, self.compute)
            for layer in network.layers
        ]
        self._lif = [_Lif(layer) for layer in network.layers]

    # -- context manager / API symmetry with the Lava backend --------------------------------
    def close(self) -> None:
        """Nothing to release (kept for the same interface as LavaSnn)."""

    def __enter__(self) -> SnnRuntime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def latency(self) -> int:
        """Timesteps between an input spike and the earliest output it can cause."""
        return self.network.num_synaptic_layers

    # -- batched ----------------------------------------------------------------------------------
    def run(self, inputs: np.ndarray) -> np.ndarray:
        """``inputs`` (B, T, C, H, W) binary -> output spikes (B, T, *output_shape) uint8.

        Each sample starts from the reset state.
        """
        return self.run_with_counts(inputs)[0]

    def run_with_counts(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Like ``run`` and also the counts, int64 (B, T, layers, 3) in ``COUNT_FIELDS`` order."""
        x = check_spikes(self.input_shape, inputs, 2, "run input")
        b, t = x.shape[:2]
        widest = max(int(np.prod(layer.out_shape)) for layer in self.network.layers)
        widest = max(widest, int(np.prod(self.input_shape)))
        chunk = max(1, _CHUNK_ELEMENTS // max(1, t * widest))
        outs, counts = [], []
        for start in range(0, b, chunk):
            o, c = self._run_chunk(x[start : start + chunk])
            outs.append(o)
            counts.append(c)
        if not outs:
            empty = np.zeros((0, t, *self.output_shape), np.uint8)
            return empty, np.zeros((0, t, len(self._lif), 3), np.int64)
        return np.concatenate(outs), np.concatenate(counts)

    def _run_chunk(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        b, t = x.shape[:2]
        counts = np.zeros((t, b, len(self._lif), 3), np.int64)
        s = np.ascontiguousarray(x.transpose(1, 0, 2, 3, 4))  # time-major (T, B, ...)
        if self.engine == "numba":
            return self._run_chunk_compiled(s, counts)
        for i, (syn, lif) in enumerate(zip(self._syn, self._lif, strict=True)):
            if syn is None:
                a_in = s.reshape(t, b, -1).astype(np.int32)
            else:
                flat = s.reshape(t * b, -1)
                counts[:, :, i, 0] = synaptic_ops(flat, syn.fanout).reshape(t, b)
                a_in = np.zeros((t, b, lif.n), np.int32)
                for d, cur in syn.currents(s.reshape(t * b, *syn.layer.in_shape)):
                    lag = d + 1  # one step of synaptic latency, plus the delay
                    if lag < t:
                        a_in[lag:] += cur.reshape(t, b, -1)[: t - lag]
            u = np.zeros((b, lif.n), np.int32)
            v = np.zeros((b, lif.n), np.int32)
            out = np.empty((t, b, lif.n), np.uint8)
            for step in range(t):
                out[step] = lif.step(u, v, a_in[step])
            counts[:, :, i, 1] = lif.n
            counts[:, :, i, 2] = out.sum(axis=2, dtype=np.int64)
            s = out
        spikes = s.reshape(t, b, *self.output_shape).transpose(1, 0, 2, 3, 4)
        return np.ascontiguousarray(spikes), counts.transpose(1, 0, 2, 3)

    def _run_chunk_compiled(
        self, s: np.ndarray, counts: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """``_run_chunk`` with the numba kernels: each layer's LIF runs the whole window in one
        fused pass, fed straight from the synapse's currents (the one-step latency is an index
        shift, not a copy); ``s`` (T, B, ...) uint8, ``counts`` (T, B, layers, 3) zeroed."""
        t, b = s.shape[:2]
        for i, (syn, lif) in enumerate(zip(self._syn, self._lif, strict=True)):
            if syn is None:
                a_in, shift = s.reshape(t, b, -1), 0  # input neuron: no synapse, no latency
            else:
                ops = self._syn_ops(s.reshape(t * b, -1), syn.fanout)
                counts[:, :, i, 0] = ops.reshape(t, b)
                groups = syn.currents(s.reshape(t * b, *syn.layer.in_shape))
                if len(groups) == 1:
                    d, cur = groups[0]
                    a_in, shift = cur.reshape(t, b, -1), d + 1
                else:  # dense delays: sum the delay groups once
                    a_in, shift = np.zeros((t, b, lif.n), np.int32), 0
                    for d, cur in groups:
                        lag = d + 1
                        if lag < t:
                            a_in[lag:] += cur.reshape(t, b, -1)[: t - lag]
            u = np.zeros((b, lif.n), np.int32)
            v = np.zeros((b, lif.n), np.int32)
            out = np.empty((t, b, lif.n), np.uint8)
            counts[:, :, i, 2] = lif.window(a_in, shift, u, v, out)
            counts[:, :, i, 1] = lif.n
            s = out
        spikes = s.reshape(t, b, *self.output_shape).transpose(1, 0, 2, 3, 4)
        return np.ascontiguousarray(spikes), counts.transpose(1, 0, 2, 3)

    def _syn_ops(self, flat: np.ndarray, fanout: np.ndarray) -> np.ndarray:
        """Per row of binary ``flat`` (N, n_in): total fan-out of its spikes, int64 (N,)."""
        if self.engine != "numba":
            return synaptic_ops(flat, fanout)
        out = np.empty(flat.shape[0], np.int64)
        _kernel("fanout_sum")(np.ascontiguousarray(flat), fanout, out)
        return out

    def run_window(self, spikes: np.ndarray) -> tuple[np.ndarray, OpCounts]:
        """One sample: ``spikes`` (T, C, H, W) -> (output spikes (T, *output_shape), OpCounts).

        Starts from the reset state; output step t sees input steps <= t - ``latency``.
        """
        arr = np.asarray(spikes)
        if arr.ndim != 4:
            raise SnnInputError(
                f"run_window input: expected (T, C, H, W) with (C, H, W) = "
                f"{list(self.input_shape)}, got shape {list(arr.shape)}"
            )
        out, counts = self.run_with_counts(arr[None])
        return out[0], OpCounts.from_array(counts[0], self.layer_names)


@runtime_checkable
class SnnBackend(Protocol):
    """What ``load_snn`` returns and the SNN node, the offline evaluation and the calibration
    use: one window of one sample at a time, each from the reset state. A backend with an
    energy probe also has ``last_measurement`` and ``probe_error`` (see LavaSnn)."""

    input_shape: tuple[int, int, int]  # (C, H, W)
    output_shape: tuple[int, int, int]
    backend_name: str  # what runs it, for logs and energy reports

    def run_window(self, spikes: np.ndarray) -> tuple[np.ndarray, OpCounts | None]:
        """``spikes`` (T, C, H, W) binary -> (output spikes (T, *output_shape) uint8, counts)."""
        ...

    def close(self) -> None:
        """Release what runs the network (worker processes, a board); idempotent."""
        ...


def open_native(
    path: str | Path,
    *,
    compute: str = "auto",
    input_shape: tuple[int, int, int] | None = None,
    engine: str = "auto",
    energy_probe: bool | None = None,
) -> SnnRuntime:
    """The ``native*`` entries of the SNN backend registry (no energy probe: nothing to probe)."""
    return SnnRuntime(read_netx(path, input_shape), compute=compute, engine=engine)


def load_snn(
    path: str | Path,
    backend: str = "native",
    input_shape: tuple[int, int, int] | None = None,
    engine: str = "auto",
    energy_probe: bool | None = None,
) -> SnnBackend:
    """Load a netx HDF5 SNN for execution on ``backend``, a name of
    :data:`~hsnn_perception.core.registry.SNN_BACKENDS` (its module is imported now).

    ``"native"`` (this runtime, torch if installed else numpy), ``"native-numpy"``,
    ``"native-torch"``, ``"lava"`` (Lava CPU simulation, ``Loihi2SimCfg(select_tag='fixed_pt')``)
    or ``"lava-hw"`` (Loihi 2 through lava-loihi). ``input_shape`` (C, H, W) is needed only when
    the file has no input layer and starts with a conv. ``engine`` (native only): ``"auto"``,
    ``"numba"`` or ``"numpy"``, see ``SnnRuntime``. ``energy_probe`` (Lava only; default on
    for ``"lava-hw"``) measures each window's energy with Lava's Loihi 2 profiler.
    """
    try:
        entry = SNN_BACKENDS.entry(backend)
    except UnknownNameError as exc:
        raise SnnConfigError(str(exc)) from None
    opener = entry.load()
    return opener(
        path, input_shape=input_shape, engine=engine, energy_probe=energy_probe, **entry.options
    )
