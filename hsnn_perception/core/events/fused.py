"""Payload -> window in compiled passes: the SNN node's decode -> map -> window of ``mono`` and
``evt3`` packets without an event array in between (docs/events.md, "Fused front end").

One kernel per encoding decodes the words and counts each event straight into the pending
window's ``(T, 2, h, w)`` uint16 counts, through per-axis lookup tables that hold the sensor
check, the ROI / spatial mapping to the model input and the windower's pooling
(:func:`payload_maps`). A kernel stops where an event belongs to a later window; the windower
then emits what is complete (its own ``_advance``) and the kernel goes on from that word. It
keeps the decoder's bookkeeping (drops per reason, EVT3 state, the running time of the
time-backwards rule) in a small int64 array that is written back only when the packet is done.

Same windows, counters, drops, errors and decoder state as ``decode_packet`` ->
``EventFilterChain`` -> ``EventWindower.push`` (property tests in test/core/events/
test_fused.py). What the kernels leave to that reference path, by returning None before any
state has changed: the first packet of a windower (it sets the origin), packets with no event
in the windower's range (held, or re-origin), EVT3 packets before the stream's time is known
(the epoch is chosen from ``time_base``), strict decoding of a packet with a problem (its
error is the reference's), and packets whose times could pass the time range.

This module is the windower's friend: it runs ``EventWindower``'s own steps (``_advance``,
``_discard_held``) around the kernels, as ``EventWindower.push`` does around ``bin_window``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numba
import numpy as np
from numpy.typing import NDArray

from hsnn_perception.core.events.binning import MAX_ABS_TIME_US, EventWindower
from hsnn_perception.core.events.codecs import Drops, Evt3State, count_drop
from hsnn_perception.core.events.evt3_format import EVT3_EPOCH_US

if TYPE_CHECKING:
    from hsnn_perception.core.events.binning import Window
    from hsnn_perception.core.events.filters import EventFilterChain

# Table values that are not a place in the window (places are >= 0).
LEFT_OUT = -1  # the ROI / crop leaves the event out: the windower never sees it
POOLED_OUT = -2  # the windower's own pooling drops it (a partial block): it still places time
OFF_SENSOR = -3  # beyond the message's geometry: the decoder drops it (out_of_bounds)
TABLE_SIZE = 1 << 16  # mono x is 16 bits, y 15; EVT3 x and y fit too

# Slots of the kernels' state array.
RUNNING, KEPT, OOB, BACK, LATE, AFTER, MAPPED_OUT, ACCEPTED = range(8)
TOUCHED, BINNED, NEXT_I, NEXT_T = range(8, 12)
TH, TL, Y, BASE, POL, ROLL, UNKNOWN, NO_TIME, NO_Y, NO_BASE, TRIGGERS = range(12, 23)
STATE_SIZE = 23
# Kernel results.
DONE, NEXT_WINDOW, NONE_IN_RANGE = 0, 1, 2
_NO_TIME_YET = -(1 << 62)  # the running time before the packet's first event


def _jit(fn: Callable[..., Any]) -> Any:
    try:
        return numba.njit(cache=True, nogil=True)(fn)
    except RuntimeError:  # no writable cache location (read-only install): compile per process
        return numba.njit(cache=False, nogil=True)(fn)


@numba.njit(inline="always")
def _offset_at(t_us: int, base_us: int, base_ns: int) -> Any:
    """The least mono offset (ns) whose time is at or after ``t_us``, clamped where no 32-bit
    offset can tell the difference (no overflow however far ``t_us`` is)."""
    return min(max(t_us - base_us, -(1 << 33)), 1 << 33) * 1000 - base_ns


@_jit
def mono_clean(words: Any, base_ns: int, width: int, height: int) -> bool:
    """Every word inside the sensor and in time order: strict decoding raises nothing."""
    w_max = np.uint64(min(width, 1 << 16))
    h_max = np.uint64(min(height, 1 << 15))
    bad = np.uint64(0)
    prev = np.uint64(0)
    for i in range(words.shape[0]):  # branch-free, so that it vectorises
        w = words[i]
        dt = w & np.uint64(0xFFFFFFFF)
        bad |= np.uint64(((w >> np.uint64(32)) & np.uint64(0xFFFF)) >= w_max)
        bad |= np.uint64(((w >> np.uint64(48)) & np.uint64(0x7FFF)) >= h_max)
        bad |= np.uint64(dt < prev)
        prev = dt
    if not bad:
        return True
    ok: Any = True  # rare: offsets that go back may still fall in the same microsecond
    prev_t = np.int64(0)
    for i in range(words.shape[0]):
        w = words[i]
        t = (np.int64(w & np.uint64(0xFFFFFFFF)) + base_ns) // 1000
        ok &= (((w >> np.uint64(32)) & np.uint64(0xFFFF)) < w_max) & (
            ((w >> np.uint64(48)) & np.uint64(0x7FFF)) < h_max
        )
        ok &= t >= prev_t
        prev_t = t
    return bool(ok)


@_jit
def mono_window(
    words: Any,
    start: int,
    base_us: int,
    base_ns: int,
    xm: Any,
    ym: Any,
    counts: Any,
    plane: int,
    t0: int,
    bin_us: int,
    n_bins: int,
    lo: int,
    hi: int,
    st: Any,
) -> int:
    """Decode mono words from ``start`` and count them into the window starting at ``t0``
    (``counts`` flat, ``plane`` = h * w; ``ym`` holds row * w). ``[lo, hi)``: the windower's
    range for this packet. Returns DONE, NEXT_WINDOW (``st[NEXT_I]``: the word of an event of a
    later window, not consumed; ``st[NEXT_T]`` its time) or NONE_IN_RANGE (no event of the
    packet is in range: the caller decodes it the reference way).

    Times are compared as the words' nanosecond offsets: an event is at or after ``T`` us iff
    its offset is at or after ``(T - base_us) * 1000 - base_ns`` (the floor division of the
    decoder is monotonic), so only the rare event off the common case is divided."""
    kept = st[KEPT]
    oob = st[OOB]
    back = st[BACK]
    late = st[LATE]
    after = st[AFTER]
    out = st[MAPPED_OUT]
    accepted = st[ACCEPTED]
    run_dt = st[RUNNING]  # offset of the latest kept event (its time is the running time)
    touched = binned = 0
    status = DONE
    wend = t0 + n_bins * bin_us
    b_lo = t0
    b_hi = t0 + bin_us
    off = 0
    stride = 2 * plane
    lo_dt = _offset_at(b_lo, base_us, base_ns)
    hi_dt = _offset_at(b_hi, base_us, base_ns)
    floor_dt = max(run_dt, lo_dt)  # the common case: kept, not backwards, in the bin
    fast = 0  # events counted on the common path (kept, accepted, in this window, binned)
    n = words.shape[0]
    i = start
    while i < n:
        # The common case in a loop of its own (few live values, no negative indices); it
        # stops at the first word that needs more.
        stop, before = n, fast
        for j in range(i, n):
            w = words[j]
            xv = xm[(w >> np.uint64(32)) & np.uint64(0xFFFF)]
            yv = ym[(w >> np.uint64(48)) & np.uint64(0x7FFF)]
            dt = np.int64(w & np.uint64(0xFFFFFFFF))
            if (xv | yv) >= 0 and floor_dt <= dt < hi_dt:
                floor_dt = dt
                idx = np.uint64(off + np.int64(w >> np.uint64(63)) * plane + yv + xv)
                c = counts[idx]
                if c != 65535:
                    counts[idx] = c + 1
                fast += 1
                continue
            stop = j
            break
        if fast > before:  # the running time: the latest event the common path kept
            run_dt = max(run_dt, floor_dt)
        if stop == n:
            break
        i = stop + 1
        w = words[stop]
        xv = xm[(w >> np.uint64(32)) & np.uint64(0xFFFF)]
        yv = ym[(w >> np.uint64(48)) & np.uint64(0x7FFF)]
        dt = np.int64(w & np.uint64(0xFFFFFFFF))
        if xv == OFF_SENSOR or yv == OFF_SENSOR:
            oob += 1
            continue
        t = (dt + base_ns) // 1000 + base_us
        if dt < run_dt and t < (run_dt + base_ns) // 1000 + base_us:
            back += 1
            continue
        if xv == LEFT_OUT or yv == LEFT_OUT:
            out += 1
        elif t < b_lo:  # before the window's start: only before the first event in range
            late += 1
        elif t >= hi:
            if accepted + fast == 0:  # sorted: no event of this packet is in range
                status = NONE_IN_RANGE
                break
            after += 1
        else:
            if t >= b_hi:
                if t >= wend:
                    st[NEXT_I] = i - 1
                    st[NEXT_T] = t
                    status = NEXT_WINDOW
                    break
                while t >= b_hi:  # sorted times: walk the bins instead of dividing
                    b_lo = b_hi
                    b_hi += bin_us
                    off += stride
                lo_dt = _offset_at(b_lo, base_us, base_ns)
                hi_dt = _offset_at(b_hi, base_us, base_ns)
            accepted += 1
            touched += 1
            if (xv | yv) >= 0:
                idx = off + np.int64(w >> np.uint64(63)) * plane + yv + xv
                c = counts[idx]
                if c != 65535:
                    counts[idx] = c + 1
                binned += 1
        kept += 1
        run_dt = max(run_dt, dt)
        floor_dt = max(run_dt, lo_dt)
    st[RUNNING] = run_dt
    st[KEPT] = kept + fast
    st[OOB] = oob
    st[BACK] = back
    st[LATE] = late
    st[AFTER] = after
    st[MAPPED_OUT] = out
    st[ACCEPTED] = accepted + fast
    st[TOUCHED] = touched + fast
    st[BINNED] = binned + fast
    return status


@_jit
def evt3_window(
    words: Any,
    start: int,
    epoch_us: int,
    xm: Any,
    ym: Any,
    counts: Any,
    plane: int,
    t0: int,
    bin_us: int,
    n_bins: int,
    lo: int,
    hi: int,
    st: Any,
) -> int:
    """``mono_window`` for EVT3 words, the decoder state (time high/low, row, vector base,
    polarity, rollovers: -1 unknown) carried in ``st`` as ``evt3_sequential.scan_words`` carries
    it; ``epoch_us``: the epoch of the stream's time (known: the caller checks)."""
    running = st[RUNNING]
    kept = st[KEPT]
    oob = st[OOB]
    back = st[BACK]
    late = st[LATE]
    after = st[AFTER]
    out = st[MAPPED_OUT]
    accepted = st[ACCEPTED]
    th = st[TH]
    tl = st[TL]
    y = st[Y]
    base = st[BASE]
    pol = st[POL]
    roll = st[ROLL]
    unknown = st[UNKNOWN]
    no_time = st[NO_TIME]
    no_y = st[NO_Y]
    no_base = st[NO_BASE]
    triggers = st[TRIGGERS]
    touched = binned = 0
    fast = 0  # events counted on the common path (kept, accepted, in this window, binned)
    status = DONE
    wend = t0 + n_bins * bin_us
    b_lo = t0
    b_hi = t0 + bin_us
    off = 0
    stride = 2 * plane
    t = epoch_us + (roll << 24) + (th << 12) + tl
    yv = ym[y] if y >= 0 else LEFT_OUT
    # now: the time is known, not behind the running time and in the bin; hot: the row is
    # known and mapped too, so an EVT_ADDR_X goes to this bin unless its column says otherwise.
    # Recomputed where one of these changes (a kept event only sets the running time to the
    # time it is at, which keeps them).
    now = th >= 0 and tl >= 0 and t >= running and b_lo <= t < b_hi
    hot = now and yv >= 0
    bits: Any
    mask: Any
    xb: Any
    p: Any
    n = words.shape[0]
    i = start
    while i < n:
        # The common words in a loop of their own (few live values, no negative indices);
        # it stops at the first word that needs more.
        stop = n
        j = np.uint64(i)  # unsigned: no negative-index handling on every word
        end = np.uint64(n)
        while j < end:
            wd = np.int64(words[j])
            code = wd >> 12
            v = wd & 0xFFF
            if code == 0:  # EVT_ADDR_Y, most often followed by one EVT_ADDR_X: taken together
                y = v
                yv = ym[v]
                hot = now and yv >= 0
                j += np.uint64(1)
                if hot and j < end:
                    wd = np.int64(words[j])
                    if wd >> 12 == 2:
                        xv = xm[wd & 0x7FF]
                        if xv >= 0:
                            idx = np.uint64(off + ((wd >> 11) & 1) * plane + yv + xv)
                            c = counts[idx]
                            if c != 65535:
                                counts[idx] = c + 1
                            running = t
                            fast += 1
                            j += np.uint64(1)
                continue
            if code == 2:  # EVT_ADDR_X in the bin
                xv = xm[v & 0x7FF]
                if hot and xv >= 0:
                    idx = np.uint64(off + (v >> 11) * plane + yv + xv)
                    c = counts[idx]
                    if c != 65535:
                        counts[idx] = c + 1
                    running = t
                    fast += 1
                    j += np.uint64(1)
                    continue
            elif code == 6:  # TIME_LOW
                tl = v
                t = epoch_us + (roll << 24) + (th << 12) + tl
                now = th >= 0 and t >= running and b_lo <= t < b_hi
                hot = now and yv >= 0
                j += np.uint64(1)
                continue
            stop = np.int64(j)
            break
        if stop == n:
            break
        i = stop
        wd = np.int64(words[i])
        code = wd >> 12
        v = wd & 0xFFF
        i += 1
        if code == 2 or code == 4 or code == 5:  # EVT_ADDR_X, VECT_12, VECT_8
            if code == 2:
                bits, mask, xb, p = 1, 1, v & 0x7FF, v >> 11
            else:
                bits, mask, xb, p = (12 if code == 4 else 8), v, base, pol
            ok = th >= 0 and tl >= 0
            no_time += not ok
            no_y += y < 0
            no_base += code != 2 and base < 0
            if not ok or y < 0 or (code != 2 and base < 0):
                if code != 2 and base >= 0:
                    base += bits
                continue
            if t >= b_hi and t >= running and yv != OFF_SENSOR and yv != LEFT_OUT:
                # An event of a later window, or beyond the range, decides before any of the
                # word's events is counted (they share one time).
                usable = False
                for b in range(bits):
                    if (mask >> b) & 1:
                        xv = xm[min(xb + b, 0xFFFF)]
                        usable |= xv != OFF_SENSOR and xv != LEFT_OUT
                if usable and t >= hi and accepted + fast == 0:
                    status = NONE_IN_RANGE
                    break
                if usable and wend <= t < hi:
                    st[NEXT_I] = i - 1
                    st[NEXT_T] = t
                    status = NEXT_WINDOW
                    break
                if usable:  # only an event that is counted moves the bin (sorted times)
                    while b_hi <= t < wend:  # walk the bins instead of dividing
                        b_lo = b_hi
                        b_hi += bin_us
                        off += stride
                    now = t >= running and b_lo <= t < b_hi
                    hot = now and yv >= 0
            for b in range(bits):
                if not (mask >> b) & 1:
                    continue
                xv = xm[min(xb + b, 0xFFFF)]
                if (xv | yv) >= 0 and t >= running and b_lo <= t < b_hi:
                    running = t
                    fast += 1
                    idx = off + p * plane + yv + xv
                    c = counts[idx]
                    if c != 65535:
                        counts[idx] = c + 1
                    continue
                if xv == OFF_SENSOR or yv == OFF_SENSOR:
                    oob += 1
                    continue
                if t < running:
                    back += 1
                    continue
                running = t
                kept += 1
                if xv == LEFT_OUT or yv == LEFT_OUT:
                    out += 1
                elif t < b_lo:
                    late += 1
                elif t >= hi:
                    after += 1
                else:  # a pooled-out pixel of this bin: placed in time, not counted
                    accepted += 1
                    touched += 1
            if code != 2:
                base += bits
        elif code == 8:  # TIME_HIGH; a drop of more than 10 units is a 24-bit rollover
            if th >= 0 and th - v > 10:
                roll += 1
            th = v
            t = epoch_us + (roll << 24) + (th << 12) + tl
            now = tl >= 0 and t >= running and b_lo <= t < b_hi
            hot = now and yv >= 0
        elif code == 3:  # VECT_BASE_X
            base = v & 0x7FF
            pol = v >> 11
        elif code == 10:  # EXT_TRIGGER: counted, not a CD event
            triggers += 1
        elif not (code == 7 or code == 9 or code == 14 or code == 15):
            unknown += 1
    st[RUNNING] = running
    st[KEPT] = kept + fast
    st[OOB] = oob
    st[BACK] = back
    st[LATE] = late
    st[AFTER] = after
    st[MAPPED_OUT] = out
    st[ACCEPTED] = accepted + fast
    st[TOUCHED] = touched + fast
    st[BINNED] = binned + fast
    st[TH] = th
    st[TL] = tl
    st[Y] = y
    st[BASE] = base
    st[POL] = pol
    st[ROLL] = roll
    st[UNKNOWN] = unknown
    st[NO_TIME] = no_time
    st[NO_Y] = no_y
    st[NO_BASE] = no_base
    st[TRIGGERS] = triggers
    return status


def payload_maps(
    windower: EventWindower, chain: EventFilterChain | None, width: int, height: int
) -> tuple[NDArray[np.int32], NDArray[np.int32]] | None:
    """Lookup tables (x, y) of a ``width`` x ``height`` sensor's columns and rows: their place
    in the window (y premultiplied by the window's width), or LEFT_OUT / POOLED_OUT /
    OFF_SENSOR. None where the kernels cannot run the chain (a stage that is not a pixel
    mapping), or where the reference would raise (mapped events beyond the windower)."""
    if windower.engine != "numba":
        return None
    nx, ny = min(width, TABLE_SIZE), min(height, TABLE_SIZE)
    if chain is None:
        if (height, width) != (windower.sensor_height, windower.sensor_width):
            return None
        cx, cy = np.arange(nx, dtype=np.int64), np.arange(ny, dtype=np.int64)
    else:
        if tuple(chain.out_shape) != (windower.sensor_height, windower.sensor_width):
            return None
        maps = chain.axis_maps(nx, ny)
        if maps is None:
            return None
        cx, cy = maps
    tables = []
    for c, pooled, scale in ((cx, windower._xmap, 1), (cy, windower._ymap, windower.out_width)):
        place = pooled[np.maximum(c, 0)]
        table = np.full(TABLE_SIZE, OFF_SENSOR, np.int32)  # int32: fewer cache lines
        table[: c.size] = np.where(c < 0, LEFT_OUT, np.where(place < 0, POOLED_OUT, place * scale))
        tables.append(table)
    return tables[0], tables[1]


# Drop reasons and their slots, in the order the reference decoders count them (a Counter keeps
# the order its keys came in, which /diagnostics shows).
_MONO_DROPS = (("out_of_bounds", OOB), ("time_backwards", BACK))
_EVT3_DROPS = (
    ("unknown_code", UNKNOWN),
    ("no_time_reference", NO_TIME),
    ("no_y_address", NO_Y),
    ("vector_without_base", NO_BASE),
    ("out_of_bounds", OOB),
    ("time_backwards", BACK),
    ("ext_trigger", TRIGGERS),
)


def push_payload(
    windower: EventWindower,
    maps: tuple[NDArray[np.int32], NDArray[np.int32]],
    raw: NDArray[np.uint8],
    encoding: str,
    time_base_ns: int,
    width: int,
    height: int,
    *,
    is_bigendian: bool = False,
    strict: bool = True,
    drops: Drops | None = None,
    state: Evt3State | None = None,
    time_max_us: int,
) -> tuple[int, int, list[Window]] | None:
    """Decode ``raw`` (checked by ``codecs.checked_payload``) and window its events through
    ``maps`` (:func:`payload_maps`): (events decoded, events the mapping left out, windows), or
    None, with nothing changed, where the reference path must run (module docstring). Events
    later than ``time_max_us`` would be refused by the caller: such packets go back too."""
    w = windower
    if w.engine != "numba" or w.origin_us is None or not w._started:
        return None
    time_max_us = min(int(time_max_us), MAX_ABS_TIME_US)
    mono = encoding == "mono"
    if not mono and (encoding != "evt3" or strict or state is None or state.time_high is None):
        return None  # EVT3 before the stream's time is known: the epoch is the decoder's choice
    size = 8 if mono else 2
    trailing = raw.size % size
    if trailing:
        if strict:
            return None  # the reference raises its error
        raw = raw[: raw.size - trailing]
    st = np.zeros(STATE_SIZE, np.int64)
    st[RUNNING] = _NO_TIME_YET
    xm, ym = maps
    plane = w.out_height * w.out_width
    if mono:
        words = raw.view(">u8").astype("<u8") if is_bigendian else raw.view("<u8")
        base_us, base_ns = divmod(int(time_base_ns), 1000)
        if base_us + (0xFFFFFFFF + base_ns) // 1000 > time_max_us:
            return None
        if strict and words.size and not mono_clean(words, base_ns, width, height):
            return None  # the reference raises its error
        reasons: tuple[tuple[str, int], ...] = _MONO_DROPS
    else:
        assert state is not None and state.time_high is not None
        words = raw.view("<u2")
        epoch_us = int(state.epoch) * EVT3_EPOCH_US
        if epoch_us + (words.size + 1) * EVT3_EPOCH_US > time_max_us:
            return None  # each TIME_HIGH word may roll the time over once
        st[TH], st[TL], st[Y], st[BASE], st[POL] = state.words_state()
        reasons = _EVT3_DROPS
    assert w.origin_us is not None
    origin = w.origin_us
    lo, hi = w._range_times()
    out: list[Window] = []
    i, discarded = 0, False
    while True:
        if w._counts is None:  # uint16, saturated as it counts: handed out as the frames
            w._counts = np.zeros(w._size, np.uint16)
        t0 = origin + w._k * w.window_us
        if mono:
            status = mono_window(
                words, i, base_us, base_ns, xm, ym, w._counts, plane, t0, w.bin_us, w.n_bins,
                lo, hi, st,
            )  # fmt: skip
        else:
            status = evt3_window(
                words, i, epoch_us, xm, ym, w._counts, plane, t0, w.bin_us, w.n_bins, lo, hi, st
            )
        if status == NONE_IN_RANGE:  # first call only: nothing counted, nothing to undo
            return None
        if st[TOUCHED]:
            w._pending_n += int(st[BINNED])
            w._touched = True
        if status == DONE:
            break
        if not discarded:  # an event is in range: what was held is not the stream
            w._discard_held()
            discarded = True
        w._advance(int(st[NEXT_T] - origin) // w.window_us, out)
        i = int(st[NEXT_I])
    v = st.tolist()
    if not v[ACCEPTED]:
        if v[LATE]:
            return None  # only late events: the windower holds the packet
    elif not discarded:
        w._discard_held()
    w.late_events += v[LATE]
    w.out_of_range_events += v[AFTER]
    if drops is not None:
        count_drop(drops, "trailing_bytes", trailing)
        for reason, slot in reasons:
            count_drop(drops, reason, v[slot])
    if not mono:
        assert state is not None
        state.carry(v[TH], v[TL], v[Y], v[BASE], v[POL], state.epoch, v[ROLL])
    return v[KEPT], v[MAPPED_OUT], out


def warm_up() -> None:
    """Compile (or load from numba's cache) every kernel a stream meets: the fused kernels and
    the reference path's, for read-only (``bytes``) and writable (``array.array``, how rclpy
    hands over ``uint8[]``) payloads, numba typing them apart. A node calls it at configure:
    compiling on the first packets would stall its subscription for seconds."""
    import array

    from hsnn_perception.core.events.codecs import encode_packet, make_events
    from hsnn_perception.core.events.filters import MappedWindower, model_input_chain
    from hsnn_perception.core.events.stream import PacketStreamDecoder

    for encoding in ("mono", "evt3"):
        for writable in (False, True):
            chain = model_input_chain((4, 4), (2, 2), "scale")
            windower = MappedWindower(chain, EventWindower(10, 2, 2, 2, 2, 2))
            decoder = PacketStreamDecoder()
            for seq, t in enumerate((100, 110, 150)):
                events = make_events([t, t + 5, t + 9], [0, 1, 3], [0, 2, 3], [0, 1, 1])
                time_base, payload = encode_packet(events, encoding, 4, 4)
                data = array.array("B", payload) if writable else payload
                decoder.decode_into(windower, data, encoding, time_base, 4, 4, seq=seq)
            windower.flush()
