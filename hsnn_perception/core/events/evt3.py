"""The ``evt3`` codec (Prophesee EVT 3.0; the format is described in :mod:`.evt3_format`): the
encoder, and the decoder that runs, the sequential one compiled by numba where numba is installed
(:mod:`.evt3_sequential`), else the vectorised one (:mod:`.evt3_vectorised`).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from hsnn_perception.core.events.codecs import (
    Array,
    Drops,
    EventEncodeError,
    Evt3State,
    Payload,
    count_drop,
)
from hsnn_perception.core.events.evt3_format import (
    EVT3_ADDR_X,
    EVT3_ADDR_Y,
    EVT3_EPOCH_US,
    EVT3_EXT_TRIGGER,
    EVT3_MAX_GAP_US,
    EVT3_TIME_HIGH,
    EVT3_TIME_LOW,
    EVT3_VECT_8,
    EVT3_VECT_12,
    EVT3_VECT_BASE_X,
)
from hsnn_perception.core.events.evt3_sequential import decode_evt3_sequential, evt3_engine
from hsnn_perception.core.events.evt3_vectorised import decode_evt3_vectorised


def encode_evt3(events: Array, use_vectors: bool) -> tuple[int, bytes]:
    """Sorted, checked ``events`` -> ``(time_base_ns, payload)``: TIME_HIGH, TIME_LOW and ADDR_Y
    where they change, then ADDR_X per event or (``use_vectors``) VECT_BASE_X + VECT_12 per run
    of same-time, same-row events with rising x in one 12-pixel block."""
    if events.size == 0:
        return 0, b""
    if int(events["x"].max()) > 0x7FF or int(events["y"].max()) > 0x7FF:
        raise EventEncodeError("evt3: x and y must fit in 11 bits")
    t, x, y, p = (events[k].astype(np.int64) for k in ("t", "x", "y", "p"))
    n = t.size
    if n > 1 and int(np.max(np.diff(t))) >= EVT3_MAX_GAP_US:
        raise EventEncodeError(
            f"evt3: a gap of {EVT3_MAX_GAP_US} us or more between two events of one packet "
            "makes the 24-bit time ambiguous; split the packet"
        )
    t24 = t & (EVT3_EPOCH_US - 1)
    th, tl = t24 >> 12, t24 & 0xFFF
    first = np.ones(n, dtype=bool)
    new_th = first.copy()
    new_th[1:] = t[1:] >> 12 != t[:-1] >> 12
    new_tl = new_th.copy()
    new_tl[1:] |= tl[1:] != tl[:-1]
    new_y = new_th.copy()  # re-send y after a time change, as a sensor would
    new_y[1:] |= y[1:] != y[:-1]

    # Group runs of events with equal t, y, p, strictly rising x inside one 12-pixel block.
    block = x // 12
    if use_vectors:
        start = first.copy()
        start[1:] = (
            new_tl[1:]
            | new_y[1:]
            | (p[1:] != p[:-1])
            | (block[1:] != block[:-1])
            | (x[1:] <= x[:-1])
        )
    else:
        start = first
    gid = np.cumsum(start) - 1
    gsize = np.bincount(gid)
    starts = np.flatnonzero(start)
    is_vec = gsize[gid[starts]] > 1 if use_vectors else np.zeros(starts.size, dtype=bool)

    # Words per group: TIME_HIGH?, TIME_LOW?, ADDR_Y?, then ADDR_X or (VECT_BASE_X, VECT_12).
    nh, nl, ny = new_th[starts], new_tl[starts], new_y[starts]
    nwords = nh.astype(np.int64) + nl + ny + 1 + is_vec
    off = np.cumsum(nwords) - nwords
    out = np.zeros(int(nwords.sum()), dtype=np.uint16)
    s = starts
    pos = off.copy()
    out[pos[nh]] = (EVT3_TIME_HIGH << 12) | th[s][nh]
    pos += nh
    out[pos[nl]] = (EVT3_TIME_LOW << 12) | tl[s][nl]
    pos += nl
    out[pos[ny]] = (EVT3_ADDR_Y << 12) | y[s][ny]
    pos += ny
    single = ~is_vec
    out[pos[single]] = (EVT3_ADDR_X << 12) | (p[s][single] << 11) | x[s][single]
    if is_vec.any():
        vs = s[is_vec]
        base = block[vs] * 12
        out[pos[is_vec]] = (EVT3_VECT_BASE_X << 12) | (p[vs] << 11) | base
        # Distinct bits within a group (x strictly rising), so a sum is a bitwise or.
        mask = np.add.reduceat(np.left_shift(1, x - block * 12), starts)
        out[pos[is_vec] + 1] = (EVT3_VECT_12 << 12) | mask[is_vec]
    return int(t[0]) * 1000, out.astype("<u2").tobytes()


def decode_evt3(
    raw: NDArray[np.uint8],
    time_base_ns: int,
    width: int,
    height: int,
    strict: bool,
    drops: Drops | None,
    state: Evt3State | None,
    triggers: list[Array] | None,
) -> Array:
    """The events of an EVT3 payload; its trigger events go to ``triggers`` when it is a list,
    else they are counted (``ext_trigger``)."""
    decode = decode_evt3_sequential if evt3_engine() == "numba" else decode_evt3_vectorised
    keep = triggers is not None
    events, found = decode(raw, time_base_ns, width, height, strict, drops, state, keep)
    if triggers is not None and found is not None:
        triggers.append(found)
    else:
        # Trigger events are not CD events: without a list for them they are counted, so a
        # stream with triggers shows them (drops["ext_trigger"]) instead of losing them silently.
        n_words = raw.size // 2
        count_drop(
            drops,
            "ext_trigger",
            int(np.count_nonzero((raw[1 : 2 * n_words : 2] >> 4) == EVT3_EXT_TRIGGER)),
        )
    return events


class Evt3Codec:
    """:class:`~hsnn_perception.core.events.codecs.EventCodec` of ``evt3``."""

    encoding = "evt3"
    stateful = True

    def encode(self, events: Array, *, use_vectors: bool) -> tuple[int, bytes]:
        return encode_evt3(events, use_vectors)

    def decode(self, p: Payload) -> Array:
        return decode_evt3(
            p.raw, p.time_base_ns, p.width, p.height, p.strict, p.drops, p.state, p.triggers
        )

    def events_at_most(self, nbytes: int) -> int:
        return nbytes // 2 * 12  # every word a VECT_12

    def event_bound(self, raw: NDArray[np.uint8]) -> int:
        n_words = raw.size // 2
        code = raw[1 : 2 * n_words : 2] >> 4  # high byte of each little-endian word: its code
        return int(
            np.count_nonzero(code == EVT3_ADDR_X)
            + 12 * np.count_nonzero(code == EVT3_VECT_12)
            + 8 * np.count_nonzero(code == EVT3_VECT_8)
        )


EVT3 = Evt3Codec()  # the registry's entry (registry.EVENT_CODECS)
