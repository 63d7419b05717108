"""The vectorised EVT3 decoder (numpy): the stateful parts of the format (current time, y, vector
base) are looked up for each event word as "the last word of that kind before it", with
``searchsorted`` on their positions. It gives the same events, trigger events, drop counts,
errors and carried state as the sequential one (:mod:`.evt3_sequential`), which runs instead
when numba is installed (``test/core/events/test_evt3.py`` checks that they agree).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from hsnn_perception.core.events.codecs import (
    TRIGGER_DTYPE,
    Array,
    Drops,
    Evt3State,
    count_drop,
    finish_events,
    whole_words,
)
from hsnn_perception.core.events.evt3_format import (
    EVT3_ADDR_X,
    EVT3_ADDR_Y,
    EVT3_EPOCH_US,
    EVT3_EXT_TRIGGER,
    EVT3_KNOWN,
    EVT3_ROLLOVER_MIN_DISTANCE,
    EVT3_TIME_HIGH,
    EVT3_TIME_LOW,
    EVT3_VECT_8,
    EVT3_VECT_12,
    EVT3_VECT_BASE_X,
    NO_BASE,
    NO_TIME,
    NO_Y,
    TRIGGER_NO_TIME,
    choose_epoch,
    unknown_code,
    unplaced,
)

_KNOWN_LUT = np.isin(np.arange(16), EVT3_KNOWN)
_CD_LUT = np.isin(np.arange(16), (EVT3_ADDR_X, EVT3_VECT_12, EVT3_VECT_8))
_WIDTH_LUT = np.zeros(16, dtype=np.int64)
_WIDTH_LUT[EVT3_VECT_12] = 12
_WIDTH_LUT[EVT3_VECT_8] = 8
_POPCOUNT12 = np.array([bin(i).count("1") for i in range(4096)], dtype=np.int64)


def _last_before(marks: Array, where: Array) -> Array:
    """Index into ``marks`` (sorted word positions) of the last mark before each of ``where``."""
    return np.searchsorted(marks, where) - 1


def _state_words(st: Evt3State) -> list[int]:
    """The carried state as the words that would set it (prepended to the packet)."""
    pre = []
    if st.time_high is not None:
        pre.append((EVT3_TIME_HIGH << 12) | st.time_high)
    if st.time_low is not None:
        pre.append((EVT3_TIME_LOW << 12) | st.time_low)
    if st.y is not None:
        pre.append((EVT3_ADDR_Y << 12) | st.y)
    if st.base_x is not None:
        pre.append((EVT3_VECT_BASE_X << 12) | (st.polarity << 11) | st.base_x)
    return pre


def decode_evt3_vectorised(
    raw: NDArray[np.uint8],
    time_base_ns: int,
    width: int,
    height: int,
    strict: bool,
    drops: Drops | None,
    state: Evt3State | None,
    keep_triggers: bool,
) -> tuple[Array, Array | None]:
    """The packet's events and (``keep_triggers``) its trigger events; ``state`` (updated in
    place) carries the decoder state of a stream from packet to packet."""
    raw = whole_words(raw, 2, "evt3", strict, drops)
    st = Evt3State() if state is None else state
    words: Array = raw.view("<u2")
    # Prepend the carried state as words so the look-ups below see it.
    pre = _state_words(st)
    npre = len(pre)
    if npre:
        words = np.concatenate([np.asarray(pre, dtype=np.uint16), words])
    code = (words >> 12).astype(np.intp)
    val = words & np.uint16(0xFFF)

    known = _KNOWN_LUT[code]
    if not known.all():
        unknown = np.flatnonzero(~known)
        if strict:
            i = int(unknown[0])
            raise unknown_code(int(code[i]), i - npre)
        count_drop(drops, "unknown_code", unknown.size)

    pos_th = np.flatnonzero(code == EVT3_TIME_HIGH)
    pos_tl = np.flatnonzero(code == EVT3_TIME_LOW)
    pos_y = np.flatnonzero(code == EVT3_ADDR_Y)
    pos_base = np.flatnonzero(code == EVT3_VECT_BASE_X)
    sel = np.flatnonzero(_CD_LUT[code])  # event-producing words
    scode = code[sel]
    sval = val[sel].astype(np.int64)

    # TIME_HIGH values with rollovers (a drop of more than 10 units), counted from the first one.
    th_val = val[pos_th].astype(np.int64)
    roll = np.cumsum(np.r_[th_val[:1], th_val[:-1]] - th_val > EVT3_ROLLOVER_MIN_DISTANCE)
    high_full = (roll << 24) | (th_val << 12)
    i_th = _last_before(pos_th, sel)
    i_tl = _last_before(pos_tl, sel)
    i_y = _last_before(pos_y, sel)
    i_b = _last_before(pos_base, sel)
    is_vec = scode != EVT3_ADDR_X

    no_time = (i_th < 0) | (i_tl < 0)
    no_y = i_y < 0
    no_base = is_vec & (i_b < 0)
    for bad, kind in ((no_time, NO_TIME), (no_y, NO_Y), (no_base, NO_BASE)):
        nbad = int(np.count_nonzero(bad))
        if nbad:
            unplaced(drops, strict, kind, nbad, int(sel[np.flatnonzero(bad)[0]]) - npre)
    trig: dict[str, Array] = {}
    if keep_triggers:
        pos_trig = np.flatnonzero(code == EVT3_EXT_TRIGGER)
        trig_th, trig_tl = _last_before(pos_th, pos_trig), _last_before(pos_tl, pos_trig)
        timed = (trig_th >= 0) & (trig_tl >= 0)
        if not timed.all():
            first = int(pos_trig[np.flatnonzero(~timed)[0]]) - npre
            unplaced(drops, strict, TRIGGER_NO_TIME, int(np.count_nonzero(~timed)), first)
        trig = {
            "t24": high_full[trig_th[timed]] | val[pos_tl[trig_tl[timed]]],
            "value": val[pos_trig[timed]].astype(np.int64),
        }

    # Base x of each vector word = its VECT_BASE_X + widths of the vectors since that base.
    widths = _WIDTH_LUT[scode]
    cumw = np.cumsum(widths) - widths  # exclusive, over event words
    bpos = pos_base[np.maximum(i_b, 0)] if pos_base.size else np.zeros(sel.size, np.intp)
    first_after_base = np.searchsorted(sel, bpos)
    cumw_ext = np.r_[cumw, cumw[-1:] + widths[-1:]]
    bval = val[bpos].astype(np.int64) if pos_base.size else np.zeros(sel.size, np.int64)
    vbase = (bval & 0x7FF) + cumw - cumw_ext[first_after_base]
    vpol = bval >> 11

    # Carry the state forward for the next packet (before dropping anything).
    epoch_known = st.time_high is not None
    if state is not None:
        if pos_tl.size:
            state.time_low = int(val[pos_tl[-1]])
        if pos_y.size:
            state.y = int(val[pos_y[-1]])
        if pos_base.size:
            advanced = int(_WIDTH_LUT[code[pos_base[-1] :]].sum())
            nxt = (int(val[pos_base[-1]]) & 0x7FF) + advanced
            # A base past 11 bits cannot be carried; later vectors then count as base-less.
            state.base_x = nxt if nxt <= 0x7FF else None
            state.polarity = int(val[pos_base[-1]]) >> 11

    ok = ~(no_time | no_y | no_base)
    if not ok.all():
        keep = np.flatnonzero(ok)
        sel, scode, sval, is_vec = sel[keep], scode[keep], sval[keep], is_vec[keep]
        i_th, i_tl, i_y, vbase, vpol = i_th[keep], i_tl[keep], i_y[keep], vbase[keep], vpol[keep]
    t24 = high_full[i_th] | val[pos_tl[i_tl]]
    yv = val[pos_y[i_y]]

    # Epoch: carried, or the one that puts the first time nearest to time_base.
    if epoch_known:
        epoch = st.epoch
    else:
        epoch = choose_epoch(
            time_base_ns,
            int(t24[0]) if t24.size else None,
            int(high_full[0]) if pos_th.size else None,
        )
    if state is not None and pos_th.size:
        state.time_high = int(th_val[-1])
        state.epoch = epoch + int(roll[-1])
    t24 = t24 + epoch * EVT3_EPOCH_US
    triggers = _triggers(trig, epoch) if keep_triggers else None

    if not is_vec.any():  # fast path: single events only
        x = sval & 0x7FF
        events = finish_events(
            t24,
            x.astype(np.uint16),
            yv,
            (sval >> 11).astype(np.uint8),
            width,
            height,
            "evt3",
            strict,
            drops,
        )
        return events, triggers
    # Expand vector masks; each word's events go at its offset in the output, in bit order.
    mask = np.where(is_vec, np.where(scode == EVT3_VECT_12, sval, sval & 0xFF), 1)
    cnt = np.where(is_vec, _POPCOUNT12[mask], 1)
    off = np.cumsum(cnt) - cnt
    total = int(cnt.sum())
    t = np.empty(total, dtype=np.int64)
    x = np.empty(total, dtype=np.int64)
    y = np.empty(total, dtype=np.uint16)
    p = np.empty(total, dtype=np.uint8)
    single = np.flatnonzero(~is_vec)
    o = off[single]
    t[o] = t24[single]
    x[o] = sval[single] & 0x7FF
    y[o] = yv[single]
    p[o] = sval[single] >> 11
    vec = np.flatnonzero(is_vec)
    row, col = np.nonzero((mask[vec, None] >> np.arange(12)) & 1)
    vw = vec[row]
    rank = np.arange(row.size) - (np.cumsum(cnt[vec]) - cnt[vec])[row]
    o = off[vw] + rank
    t[o] = t24[vw]
    x[o] = vbase[vw] + col
    y[o] = yv[vw]
    p[o] = vpol[vw]
    # Vectors running past 65535 are beyond any sensor; clamp for the uint16 cast.
    x = np.minimum(x, 0xFFFF).astype(np.uint16)
    return finish_events(t, x, y, p, width, height, "evt3", strict, drops), triggers


def _triggers(trig: dict[str, Any], epoch: int) -> Array:
    """Trigger events from their 24-bit times and word values (edge bit 0, id bits 8-11)."""
    out = np.empty(trig["t24"].size, dtype=TRIGGER_DTYPE)
    out["t"] = trig["t24"] + epoch * EVT3_EPOCH_US
    out["edge"] = trig["value"] & 1
    out["id"] = (trig["value"] >> 8) & 0xF
    return out
