"""Compiled (numba) kernels of the event front end: the windower's per-packet pass and its
binning, and a one-pass decoder of ``mono`` payloads. Each replaces several numpy passes and
temporaries per packet by one loop over the events (docs/events.md, "Compiled front end").

This module imports numba at its top: ``binning.EventWindower`` imports it only when it runs
compiled (numba installed), and ``decode_mono`` is for callers that choose it. Results are
identical to the numpy code they replace (tests drive both on the same streams).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba
import numpy as np
from numpy.typing import NDArray

from hsnn_perception.core.events.codecs import (
    EVENT_DTYPE,
    Drops,
    EventDecodeError,
    count_drop,
    whole_words,
)


def _jit(fn: Callable[..., Any]) -> Any:
    try:
        return numba.njit(cache=True, nogil=True)(fn)
    except RuntimeError:  # no writable cache location (read-only install): compile per process
        return numba.njit(cache=False, nogil=True)(fn)


@_jit
def packet_scan(
    t: Any, x: Any, y: Any, p: Any, lo_t: int, hi_t: int
) -> tuple[int, int, int, int, int, int, int, bool]:
    """One pass over a packet: (max x, max y, max p, min t, max t, events before ``lo_t``,
    events at or after ``hi_t``, times non-decreasing)."""
    xmax = ymax = pmax = 0
    tmin = tmax = t[0]
    late = after = 0
    ordered = True
    prev = t[0]
    for i in range(t.shape[0]):
        ti = t[i]
        xmax = max(xmax, x[i])
        ymax = max(ymax, y[i])
        pmax = max(pmax, p[i])
        tmin = min(tmin, ti)
        tmax = max(tmax, ti)
        late += ti < lo_t
        after += ti >= hi_t
        ordered &= ti >= prev
        prev = ti
    return xmax, ymax, pmax, tmin, tmax, late, after, ordered


@_jit
def bin_window(
    t: Any,
    x: Any,
    y: Any,
    p: Any,
    start: int,
    t0: int,
    bin_us: int,
    n_bins: int,
    ymap: Any,
    xmap: Any,
    counts: Any,
) -> tuple[int, int]:
    """Count time-sorted events from ``start`` that fall in the window ``[t0, t0 + n_bins *
    bin_us)`` (none may be before ``t0``) into ``counts`` (n_bins, 2, h, w) uint16, saturating
    at 65535, each at ``(bin, p, ymap[y], xmap[x])`` (-1 in a map: cropped away, not counted).
    Returns (index of the first event after the window, events counted)."""
    end = t0 + n_bins * bin_us
    b = 0
    bin_end = t0 + bin_us
    binned = 0
    i = start
    n = t.shape[0]
    while i < n:
        ti = t[i]
        if ti >= end:
            break
        while ti >= bin_end:  # sorted times: walk the bins instead of dividing
            b += 1
            bin_end += bin_us
        yy = ymap[y[i]]
        xx = xmap[x[i]]
        if yy >= 0 and xx >= 0:
            c = counts[b, p[i], yy, xx]
            if c < 65535:
                counts[b, p[i], yy, xx] = c + 1
            binned += 1
        i += 1
    return i, binned


def pixel_map(size: int, factor: int, out: int) -> NDArray[np.int64]:
    """``map[v] = v // factor``, or -1 where that is beyond ``out`` (a partial block)."""
    m = np.arange(size, dtype=np.int64) // factor
    m[m >= out] = -1
    return m


@_jit
def _mono_kernel(
    words: Any,
    base_us: int,
    base_ns: int,
    width: int,
    height: int,
    t_out: Any,
    x_out: Any,
    y_out: Any,
    p_out: Any,
) -> tuple[int, int, int, int, int]:
    """Decode mono words, dropping events beyond the sensor (``width``/``height`` 0: no check)
    and events older than one before them. Returns (events kept, beyond the sensor, index of
    the first beyond, backwards, index (among in-sensor events) of the first backwards)."""
    check = width > 0 and height > 0
    n_out = 0
    n_bad = 0
    first_bad = -1
    n_back = 0
    first_back = -1
    running = np.int64(0)
    seen = 0  # in-sensor events so far (finish_events' index for its message)
    for i in range(words.shape[0]):
        w = words[i]
        xv = np.int64((w >> np.uint64(32)) & np.uint64(0xFFFF))
        yv = np.int64((w >> np.uint64(48)) & np.uint64(0x7FFF))
        if check and (xv >= width or yv >= height):
            if first_bad < 0:
                first_bad = i
            n_bad += 1
            continue
        tv = (np.int64(w & np.uint64(0xFFFFFFFF)) + base_ns) // 1000 + base_us
        if seen and tv < running:
            if first_back < 0:
                first_back = seen
            n_back += 1
            seen += 1
            continue
        running = max(running, tv)
        seen += 1
        t_out[n_out] = tv
        x_out[n_out] = xv
        y_out[n_out] = yv
        p_out[n_out] = np.uint8(w >> np.uint64(63))
        n_out += 1
    return n_out, n_bad, first_bad, n_back, first_back


def mono_words(
    raw: NDArray[np.uint8], is_bigendian: bool, strict: bool, drops: Drops | None
) -> NDArray[np.uint64]:
    """The payload's whole 64-bit words, little-endian (``whole_words`` says what is dropped)."""
    raw = whole_words(raw, 8, "mono", strict, drops)
    return raw.view(">u8").astype("<u8") if is_bigendian else raw.view("<u8")


def mono_report(
    words: NDArray[np.uint64],
    time_base_ns: int,
    width: int,
    height: int,
    problems: tuple[int, int, int, int],
    strict: bool,
    drops: Drops | None,
) -> None:
    """``problems`` = (beyond the sensor, first beyond, backwards, first backwards) of a
    decode: raise as ``mono.decode_mono`` does when ``strict``, else count the drops."""
    n_bad, first_bad, n_back, first_back = problems
    if n_bad:
        if strict:
            w = int(words[first_bad])
            raise EventDecodeError(
                f"mono: {n_bad} events beyond the {width}x{height} sensor, first "
                f"x={(w >> 32) & 0xFFFF} y={(w >> 48) & 0x7FFF}"
            )
        count_drop(drops, "out_of_bounds", n_bad)
    if n_back:
        if strict:  # only in-sensor events here (strict refused the others above)
            base_us, base_ns = divmod(int(time_base_ns), 1000)
            t = ((words.astype(np.int64) & 0xFFFFFFFF) + base_ns) // 1000 + base_us
            i = first_back
            raise EventDecodeError(
                f"mono: time goes backwards inside the packet at event {i} "
                f"({int(t[i - 1])} us -> {int(t[i])} us)"
            )
        count_drop(drops, "time_backwards", n_back)


def decode_mono(
    raw: NDArray[np.uint8],
    time_base_ns: int,
    width: int,
    height: int,
    is_bigendian: bool = False,
    strict: bool = True,
    drops: Drops | None = None,
) -> NDArray[Any]:
    """What ``mono.decode_mono`` returns (same checks, messages and drop counts), in one
    compiled pass over the words instead of a dozen numpy passes."""
    words = mono_words(raw, is_bigendian, strict, drops)
    base_us, base_ns = divmod(int(time_base_ns), 1000)
    out = np.empty(words.size, EVENT_DTYPE)
    if not words.size:
        return out
    n, *problems = _mono_kernel(
        words, base_us, base_ns, width, height, out["t"], out["x"], out["y"], out["p"]
    )
    mono_report(words, time_base_ns, width, height, tuple(problems), strict, drops)
    return out[:n]
