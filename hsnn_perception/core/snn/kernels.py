"""The native runtime's compiled kernels (numba): the CUBA LIF recurrence of a whole window in one
pass, the synaptic-op count, and the event-driven layer kernels (input events scattered through a
conv or dense synapse into a current accumulator, then every neuron updated, step by step).

This module imports numba at its top, so it is imported only by the functions that run a kernel
(numba stays an optional dependency; a node that runs no kernel never loads it). Kernels compile
on first use and are cached on disk (``cache=True``; per process where no cache is writable).

Integer arithmetic is Lava's ``PyLifModelBitAcc`` (see ``loihi.py``) in int64 with explicit int32
wraps where numpy's int32 arithmetic wraps; the tests drive each kernel against the numpy step,
the dense path and Lava. Layouts: the event kernels index neurons of a (C, H, W) layer as
``(y * W + x) * C + c`` ("HWC"), so that one input spike's weights for all output channels of a
kernel tap land in consecutive accumulator words (one vector add instead of C scattered ones).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba
import numpy as np

HALF32 = 1 << 31
MASK32 = (1 << 32) - 1
MAX_UV = 1 << 23


def _jit(fn: Callable[..., Any]) -> Any:
    """A kernel: compiled without the GIL, cached on disk where a cache can be written."""
    try:
        return numba.njit(cache=True, nogil=True)(fn)
    except RuntimeError:  # no writable cache location (read-only install): compile per process
        return numba.njit(cache=False, nogil=True)(fn)


def _inline(fn: Callable[..., Any]) -> Any:
    """A helper compiled into the kernels that call it."""
    return numba.njit(inline="always")(fn)


@_inline
def _decay(x: Any, keep: Any) -> Any:
    """``trunc(x * keep / 4096)`` (round toward zero, as Lava's sign/abs/shift), branch-free."""
    p = np.int64(x) * keep
    return (p + ((p >> 63) & 4095)) >> 12


@_inline
def _wrap32(x: Any) -> Any:
    return ((x + HALF32) & MASK32) - HALF32


@_inline
def _lif(a: int, u: int, v: int, bias: int, u_keep: int, v_keep: int, vth: int) -> Any:
    """One neuron, one step: (new u, new v, spiked)."""
    cur = _wrap32(_decay(u, u_keep) + a * 64)  # a << 6 and the sum wrap as int32 in Lava
    # Lava's single 24-bit wrap of the current
    cur = cur - 2 * MAX_UV if cur > MAX_UV else cur
    cur = cur + 2 * MAX_UV if cur <= -MAX_UV else cur
    vol = _wrap32(_decay(v, v_keep) + cur + bias)
    vol = min(max(vol, 1 - MAX_UV), MAX_UV - 1)  # saturation at +-(2**23 - 1)
    spiked = vol > vth
    return cur, (0 if spiked else vol), spiked


@_jit
def lif_window(
    a_in: Any,
    shift: int,
    u: Any,
    v: Any,
    bias: Any,
    u_keep: int,
    v_keep: int,
    vth: int,
    out: Any,
    counts: Any,
) -> None:
    """``a_in`` (Ta, B, n) currents; step t reads row ``t - shift`` (zero before it). Advances
    ``u``, ``v`` (B, n) int32 in place, writes spikes to ``out`` (T, B, n) uint8 and spikes per
    (t, b) to ``counts``."""
    n_t, n_b, n = out.shape
    for t in range(n_t):
        src = t - shift
        for b in range(n_b):
            cnt = 0
            for i in range(n):
                a = np.int64(a_in[src, b, i]) if src >= 0 else np.int64(0)
                cur, vol, spiked = _lif(a, u[b, i], v[b, i], bias[i], u_keep, v_keep, vth)
                u[b, i] = cur
                v[b, i] = vol
                out[t, b, i] = spiked
                cnt += spiked
            counts[t, b] = cnt


@_jit
def fanout_sum(x: Any, fanout: Any, out: Any) -> None:
    """Per row of ``x`` (N, n_in) binary: the sum of ``fanout`` over the neurons that spiked."""
    for r in range(x.shape[0]):
        acc = 0
        for j in range(x.shape[1]):
            if x[r, j] != 0:
                acc += fanout[j]
        out[r] = acc


@_inline
def _emit(row: Any, order: Any, idx: Any, pos: int) -> Any:
    """Append the positions of the nonzero bytes of ``row`` to ``idx`` from ``pos``, each as
    ``order[k]`` (as ``k`` itself where ``order`` is empty); return the new end and the number
    of bytes above 1. Skips zero bytes eight at a time (spikes are sparse). ``idx`` must hold
    one more element than the nonzero bytes before the last one (a zero byte's index is written
    and then overwritten)."""
    n = row.shape[0]
    whole = n - n % 8
    words = row[:whole].view(np.uint64)
    mapped = order.shape[0] > 0
    bad = 0
    for j in range(words.shape[0]):
        if words[j] != 0:
            for k in range(j * 8, j * 8 + 8):  # branch-free: store always, advance on a spike
                value = row[k]
                idx[pos] = order[k] if mapped else k
                pos += value != 0
                bad += value > 1
    for k in range(whole, n):
        value = row[k]
        idx[pos] = order[k] if mapped else k
        pos += value != 0
        bad += value > 1
    return pos, bad


@_jit
def scan_events(x: Any, order: Any, ev_off: Any, ev_idx: Any) -> int:
    """Dense spikes ``x`` (T, n) uint8 -> events: step t's are ``ev_idx[ev_off[t]:ev_off[t+1]]``,
    each the neuron's index ``order[i]`` (the HWC index of CHW position i). Returns the number
    of values above 1 (not spikes: the caller refuses the input)."""
    pos = 0
    bad = 0
    ev_off[0] = 0
    for t in range(x.shape[0]):
        pos, more = _emit(x[t], order, ev_idx, pos)
        bad += more
        ev_off[t + 1] = pos
    return bad


@_jit
def events_to_dense(ev_off: Any, ev_idx: Any, order: Any, out: Any) -> None:
    """Events (HWC indices, as ``event_layer`` writes them) -> ``out`` (T, n) zeroed, at the
    positions ``order[q]`` (the CHW index of HWC index q)."""
    for t in range(out.shape[0]):
        row = out[t]
        for e in range(ev_off[t], ev_off[t + 1]):
            row[order[ev_idx[e]]] = 1


@_jit
def event_layer(
    ev_off: Any,
    ev_idx: Any,
    lag0: int,
    kind: int,
    taps_y: Any,
    n_taps_y: Any,
    taps_x: Any,
    n_taps_x: Any,
    geom: Any,
    weights: Any,
    delays: Any,
    exp: int,
    wrap_bits: int,
    direct: bool,
    dense_row: Any,
    dense_raw: Any,
    fanout: Any,
    acc: Any,
    cur: Any,
    u: Any,
    v: Any,
    bias: Any,
    u_keep: int,
    v_keep: int,
    vth: int,
    out: Any,
    out_off: Any,
    out_idx: Any,
    counts: Any,
) -> None:
    """One layer over a window, event-driven. Input events of step s (``ev_idx[ev_off[s]:
    ev_off[s+1]]``, HWC indices) reach the neurons at step ``s + lag0 + delay`` (``lag0`` is 1
    for a synapse, 0 for an input layer). ``kind``: 0 input layer (each event adds 1), 1 conv
    (``weights`` (C_in * kh * kw, C_out/groups); ``taps_y[y, :n_taps_y[y]]`` the (output row,
    kernel row) pairs that input row y reaches, ``taps_x`` the same for columns; ``geom`` = C_in,
    W_in, C_out, W_out, C_in/groups, kh, kw), 2 dense
    (``weights`` (groups * n_in, n_out), one group per delay in ``delays``).

    A step s with ``dense_row[s] >= 0`` takes its sums from ``dense_raw[dense_row[s]]`` (G, n)
    instead (computed by a dense conv/matmul where the input is busy). Sums gather in
    ``acc`` (R, G, n), a ring of arrival steps; the neuron's current is each group's sum shifted
    by ``exp`` and wrapped to int32, summed with int32 wrap (dense), or the sum wrapped to
    ``wrap_bits`` (conv: 24); ``direct``: the sum is the current as it is. Writes spikes to
    ``out`` (T, n) uint8, output events (HWC indices) to ``out_idx`` with offsets ``out_off``,
    and per step (synaptic ops, neuron updates, spikes) to ``counts`` (T, 3)."""
    n_t = out.shape[0]
    ring, n_groups, n = acc.shape
    n_in = fanout.shape[0]
    pos = 0
    out_off[0] = 0
    for s in range(n_t):  # synaptic ops belong to the step of the input spike, delivered or not
        ops = 0
        for e in range(ev_off[s], ev_off[s + 1]):
            ops += fanout[ev_idx[e]]
        counts[s, 0] = ops
    for t in range(n_t):
        s = t - lag0
        if s >= 0:
            row = dense_row[s]
            for g in range(n_groups):
                arrive = t + delays[g]
                if arrive >= n_t:
                    continue
                slot = acc[arrive % ring, g]
                if row >= 0:
                    src = dense_raw[row, g]
                    for i in range(n):
                        slot[i] += src[i]
                elif kind == 0:
                    for e in range(ev_off[s], ev_off[s + 1]):
                        slot[ev_idx[e]] += 1
                elif kind == 1:
                    _scatter_conv(
                        ev_idx,
                        ev_off[s],
                        ev_off[s + 1],
                        taps_y,
                        n_taps_y,
                        taps_x,
                        n_taps_x,
                        geom,
                        weights,
                        slot,
                    )
                else:
                    first = g * n_in
                    for e in range(ev_off[s], ev_off[s + 1]):
                        w = weights[first + ev_idx[e]]
                        for i in range(n):
                            slot[i] += w[i]
        here = acc[t % ring]
        o = out[t]
        if direct:
            spikes = _update(here[0], u, v, bias, u_keep, v_keep, vth, o)
        else:
            cur[:] = 0
            for g in range(n_groups):
                _current(here[g], exp, wrap_bits, cur)
            spikes = _update(cur, u, v, bias, u_keep, v_keep, vth, o)
        here[:] = 0
        counts[t, 1] = n
        counts[t, 2] = spikes
        pos, _ = _emit(o, out_idx[:0], out_idx, pos)
        out_off[t + 1] = pos


@_inline
def _update(
    a_row: Any, u: Any, v: Any, bias: Any, u_keep: int, v_keep: int, vth: int, out: Any
) -> int:
    """Every neuron of a layer, one step, fed by ``a_row``; returns the number of spikes."""
    spikes = 0
    for i in range(a_row.shape[0]):
        cur, vol, spiked = _lif(np.int64(a_row[i]), u[i], v[i], bias[i], u_keep, v_keep, vth)
        u[i] = cur
        v[i] = vol
        out[i] = spiked
        spikes += spiked
    return spikes


@_inline
def _current(raw: Any, exp: int, wrap_bits: int, cur: Any) -> None:
    """``cur += wrap(shift(raw, exp))`` with int32 wrap of the sum (Lava's dense: each delay
    group's sum shifted by the weight exponent and cast to int32; conv: a 24-bit wrap)."""
    half = np.int64(1) << (wrap_bits - 1)
    mask = (np.int64(1) << wrap_bits) - 1
    for i in range(raw.shape[0]):
        x = np.int64(raw[i])
        if exp > 0:
            x = x << exp
        elif exp < 0:
            x = x >> -exp
        x = ((x + half) & mask) - half
        cur[i] = _wrap32(np.int64(cur[i]) + x)


@_inline
def _scatter_conv(
    ev_idx: Any,
    start: int,
    stop: int,
    taps_y: Any,
    n_taps_y: Any,
    taps_x: Any,
    n_taps_x: Any,
    geom: Any,
    w: Any,
    slot: Any,
) -> None:
    """Each input spike adds its kernel's weights (all output channels of its group, one
    contiguous run per tap) to the outputs it reaches; only the taps that reach an output are
    visited (listed per input row and column, no test per tap)."""
    c_in, w_in, c_out, w_out, c_per_group, kh, kw = (
        geom[0],
        geom[1],
        geom[2],
        geom[3],
        geom[4],
        geom[5],
        geom[6],
    )
    k_per_group = w.shape[1]
    for e in range(start, stop):
        q = ev_idx[e]
        p = q // c_in
        c = q - p * c_in
        y = p // w_in
        x = p - y * w_in
        first = (c // c_per_group) * k_per_group
        for j in range(n_taps_y[y]):
            row = taps_y[y, j, 0] * w_out
            w_row = (c * kh + taps_y[y, j, 1]) * kw
            for i in range(n_taps_x[x]):
                base = (row + taps_x[x, i, 0]) * c_out + first
                wk = w[w_row + taps_x[x, i, 1]]
                acc = slot[base : base + k_per_group]
                for k in range(k_per_group):
                    acc[k] += wk[k]
