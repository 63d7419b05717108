"""Loihi's fixed-point arithmetic as Lava's ``fixed_pt`` process models (lava-nc 0.10) do it:
netx's dense weight pipeline, the weight exponent, conv's 24-bit wrap, and the CUBA LIF neuron
(``PyLifModelBitAcc``). docs/snn_runtime.md derives each step from Lava's source.

* Dense weights go through netx's ``optimize_weight_bits`` (scale to 8 bits, weight exponent),
  then Lava's ``clip_weights`` / ``truncate_weights``; the accumulated current is shifted by the
  weight exponent (arithmetic shift) and wraps to int32 on its way to the neuron.
* Conv weights are used as stored (netx applies no exponent to conv); the current wraps to a
  signed 24-bit value (Lava's ``signed_clamp``).
* CUBA LIF: ``u = trunc(u * (4096 - iDecay) / 4096) + (a_in << 6)`` with Lava's single 24-bit
  wrap, ``v = trunc(v * (4096 - vDecay) / 4096) + u + (bias << 6)`` saturated to
  +-(2**23 - 1), spike when ``v > vThMant << 6``, then ``v = 0``. No refractory time.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from hsnn_perception.core.snn.netx import NetxLayer

UV_BITS = 24
MAX_UV = 1 << (UV_BITS - 1)  # 2**23
DECAY_SHIFT = 12
DECAY_UNITY = 1 << DECAY_SHIFT
ACT_SHIFT = 6  # synaptic input MSB alignment
VTH_SHIFT = 6
BIAS_EXP = 6  # netx sets bias_exp = 6 for CUBA neurons

IntArray = npt.NDArray[np.integer[Any]]


def netx_dense_weights(weight: npt.ArrayLike) -> tuple[npt.NDArray[np.int32], int]:
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
    scale: float
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
    w32 = w.astype(np.int32)
    if mode == "inh":
        w32 = -w32
    w32 = np.clip(w32, -(1 << 8) * mixed, (1 << 8) - 1)
    k = 8 - num_weight_bits + mixed
    w32 = (w32 >> k) << k
    if mode == "inh":
        w32 = -w32
    return w32.astype(np.int32), int(weight_exp)


def shift_exp(accum: IntArray, weight_exp: int) -> IntArray:
    """Lava's weight exponent: left shift for positive, arithmetic right shift otherwise."""
    if weight_exp > 0:
        return np.left_shift(accum, weight_exp)
    return np.right_shift(accum, -weight_exp)


def wrap_signed(x: IntArray, bits: int) -> IntArray:
    """Two's complement wrap to ``bits`` (Lava conv's ``signed_clamp``)."""
    base = 1 << bits
    wrapped: IntArray = (x + base // 2) % base - base // 2
    return wrapped


class Lif:
    """CUBA LIF neurons of one layer, bit-accurate with Lava's ``PyLifModelBitAcc``: a numpy
    step (``step``) and the numba whole-window kernel (``window``), bit-identical."""

    def __init__(self, layer: NetxLayer) -> None:
        p = layer.neuron
        self.n = layer.num_neurons
        # netx passes du = iDecay - 1 and Lava adds ds_offset = 1: the current keeps
        # (4096 - iDecay)/4096; the voltage keeps (4096 - vDecay)/4096 (dm_offset = 0).
        self.u_keep = DECAY_UNITY - p.i_decay
        self.v_keep = DECAY_UNITY - p.v_decay
        self.vth = int(p.vth_mant) << VTH_SHIFT
        self.bias: npt.NDArray[np.int32] | None
        if layer.bias is None:
            self.bias = None
        else:
            # netx: bias -> int32 -> Lava's int16 bias_mant Var (wraps), then << bias_exp (6).
            mant = np.asarray(layer.bias).astype(np.int32).astype(np.int16).astype(np.int32)
            self.bias = np.left_shift(mant, BIAS_EXP).astype(np.int32)
        full = np.zeros(self.n, np.int64) if self.bias is None else self.bias
        self.bias_full: npt.NDArray[np.int64] = np.ascontiguousarray(
            np.broadcast_to(full, (self.n,)), dtype=np.int64
        )

    def window(
        self,
        a_in: IntArray,
        shift: int,
        u: npt.NDArray[np.int32],
        v: npt.NDArray[np.int32],
        out: npt.NDArray[np.uint8],
    ) -> npt.NDArray[np.int64]:
        """Compiled: ``out.shape[0]`` steps at once, step t fed by ``a_in[t - shift]`` (zero
        before); ``u``, ``v`` (B, n) int32 advanced in place; returns spikes per (t, b)."""
        from hsnn_perception.core.snn import kernels

        counts = np.empty(out.shape[:2], np.int64)
        kernels.lif_window(
            a_in, shift, u, v, self.bias_full, self.u_keep, self.v_keep, self.vth, out, counts
        )
        return counts

    @staticmethod
    def _decay(x: npt.NDArray[np.int32], keep: int) -> npt.NDArray[np.int32]:
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

    def step(
        self, u: npt.NDArray[np.int32], v: npt.NDArray[np.int32], a_in: IntArray
    ) -> npt.NDArray[np.bool_]:
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
