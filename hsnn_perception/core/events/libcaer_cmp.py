"""The ``libcaer_cmp`` encoding of event_camera_msgs/EventPacket: libcaer_driver's default (its
compressed form, as event_camera_codecs decodes it).

Little-endian 16-bit words, code in the top 4 bits. ``TIME_HIGH`` (0) / ``TIME_LOW`` (1) hold bits
12-23 / 0-11 of the microsecond offset from ``time_base`` (both start at 0 in every packet; no
rollover); ``ADDR_X`` (2) sets x (11 bits); ``ADDR_Y`` (3) is one event at y (11 bits) with
polarity in bit 11; ``VECT_BASE_Y`` (4) sets a base row and polarity and each ``VECT_8`` (5) that
follows is up to 8 events, rows base..base+7 where its mask bits are set (rising), after which
the base moves on by 8. Event time = ``time_base // 1000 + offset`` us (event_camera_codecs'
decoder with time multiplier 1). Other codes are unknown (``unknown_code``); event words before
the packet's first ``ADDR_X`` / vectors before its first ``VECT_BASE_Y`` are dropped
(``no_x_address`` / ``vector_without_base``).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from hsnn_perception.core.events.codecs import (
    Array,
    Drops,
    EventDecodeError,
    EventEncodeError,
    Payload,
    count_drop,
    finish_events,
    whole_words,
)

# libcaer_cmp word codes (16-bit little-endian words, code in the top 4 bits).
CMP_TIME_HIGH = 0x0
CMP_TIME_LOW = 0x1
CMP_ADDR_X = 0x2
CMP_ADDR_Y = 0x3
CMP_VECT_BASE_Y = 0x4
CMP_VECT_8 = 0x5
_CMP_EPOCH_US = 1 << 24  # TIME_HIGH|TIME_LOW: a 24-bit offset from time_base, no rollover


def _cmp_words(codes: Array, values: Array) -> Array:
    return (codes.astype(np.uint16) << np.uint16(12)) | values.astype(np.uint16)


def encode_libcaer_cmp(events: Array, use_vectors: bool) -> tuple[int, bytes]:
    """Sorted, checked ``events`` -> ``(time_base_ns, payload)``: the words libcaer_driver
    writes, a run at one time, column and polarity with rows rising in one 8-row block as
    ``VECT_BASE_Y`` + ``VECT_8`` (``use_vectors``)."""
    if events.size == 0:
        return 0, b""
    if int(events["x"].max()) > 0x7FF or int(events["y"].max()) > 0x7FF:
        raise EventEncodeError("libcaer_cmp: x and y must fit in 11 bits")
    t, x, y, p = (events[k].astype(np.int64) for k in ("t", "x", "y", "p"))
    dt = t - t[0]
    if int(dt[-1]) >= _CMP_EPOCH_US:
        raise EventEncodeError(
            f"libcaer_cmp: packet spans {int(dt[-1])} us, the 24-bit time offset holds less than "
            f"{_CMP_EPOCH_US} us; split it into smaller packets"
        )
    n = t.size
    # Groups: runs of events at one time, column, polarity and 8-row block with rows rising
    # (a VECT_8 decodes in rising row order, so anything else starts a new group and the
    # round trip keeps every event, duplicates included, in its order).
    new = np.ones(n, dtype=bool)
    if use_vectors and n > 1:
        new[1:] = (
            (t[1:] != t[:-1])
            | (x[1:] != x[:-1])
            | (p[1:] != p[:-1])
            | ((y[1:] >> 3) != (y[:-1] >> 3))
            | (y[1:] <= y[:-1])
        )
    start = np.flatnonzero(new)
    size = np.diff(np.append(start, n))
    mask = np.bitwise_or.reduceat(np.left_shift(1, y & 7), start)
    g_hi, g_lo, g_x = dt[start] >> 12, dt[start] & 0xFFF, x[start]
    # The decoder starts each packet at time offset 0 and with no column.
    prev_hi = np.concatenate(([0], g_hi[:-1]))
    prev_lo = np.concatenate(([0], g_lo[:-1]))
    need_hi = g_hi != prev_hi
    need_lo = g_lo != prev_lo
    need_x = np.ones(start.size, dtype=bool)
    need_x[1:] = g_x[1:] != g_x[:-1]
    vector = size > 1
    n_words = need_hi.astype(np.int64) + need_lo + need_x + 1 + vector
    pos = np.concatenate(([0], np.cumsum(n_words)[:-1]))
    out = np.empty(int(n_words.sum()), dtype="<u2")
    out[pos[need_hi]] = _cmp_words(np.full(int(need_hi.sum()), CMP_TIME_HIGH), g_hi[need_hi])
    pos = pos + need_hi
    out[pos[need_lo]] = _cmp_words(np.full(int(need_lo.sum()), CMP_TIME_LOW), g_lo[need_lo])
    pos = pos + need_lo
    out[pos[need_x]] = _cmp_words(np.full(int(need_x.sum()), CMP_ADDR_X), g_x[need_x])
    pos = pos + need_x
    g_y, g_p = y[start], p[start] << 11
    single = ~vector
    out[pos[single]] = _cmp_words(np.full(int(single.sum()), CMP_ADDR_Y), g_y[single] | g_p[single])
    base = (g_y[vector] & ~7) | g_p[vector]
    out[pos[vector]] = _cmp_words(np.full(base.size, CMP_VECT_BASE_Y), base)
    out[pos[vector] + 1] = _cmp_words(np.full(base.size, CMP_VECT_8), mask[vector])
    return int(t[0]) * 1000, out.tobytes()


def decode_libcaer_cmp(
    raw: NDArray[np.uint8],
    time_base_ns: int,
    width: int,
    height: int,
    strict: bool,
    drops: Drops | None,
) -> Array:
    """The events of a libcaer_cmp payload (t in us), in word order and rising rows."""
    raw = whole_words(raw, 2, "libcaer_cmp", strict, drops)
    words = raw.view("<u2")
    code = words >> 12
    value = (words & np.uint16(0xFFF)).astype(np.int64)
    unknown = code > CMP_VECT_8
    if unknown.any():
        if strict:
            i = int(np.flatnonzero(unknown)[0])
            raise EventDecodeError(f"libcaer_cmp: unknown word code {int(code[i])} at word {i}")
        count_drop(drops, "unknown_code", int(np.count_nonzero(unknown)))
    idx = np.arange(words.size)

    def last(kind: int) -> Array:
        """Index of the last word of ``kind`` at or before each word (-1: none yet)."""
        return np.maximum.accumulate(np.where(code == kind, idx, -1)) if words.size else idx

    # Time state starts at 0 in every packet (as event_camera_codecs' decoder does);
    # column, vector row and polarity are set by the packet's own words.
    i_hi, i_lo, i_x, i_base = (
        last(k) for k in (CMP_TIME_HIGH, CMP_TIME_LOW, CMP_ADDR_X, CMP_VECT_BASE_Y)
    )
    hi = np.where(i_hi >= 0, value[i_hi] << 12, 0)
    lo = np.where(i_lo >= 0, value[i_lo], 0)
    is_y, is_vec = code == CMP_ADDR_Y, code == CMP_VECT_8
    # A VECT_8 covers 8 rows from its base, which moves on by 8 after each one.
    n_vec = np.cumsum(is_vec)
    after_base = n_vec - np.where(i_base >= 0, n_vec[i_base], 0) - 1
    base_y = np.where(i_base >= 0, value[i_base] & 0x7FF, 0) + 8 * after_base
    bits = np.zeros((words.size, 8), dtype=bool)
    bits[is_y, 0] = True
    bits[is_vec] = np.unpackbits(
        (value[is_vec] & 0xFF).astype(np.uint8)[:, None], axis=1, bitorder="little"
    ).astype(bool)
    for bad, reason, what in (
        ((is_y | is_vec) & (i_x < 0), "no_x_address", "event words before any ADDR_X"),
        (is_vec & (i_base < 0), "vector_without_base", "VECT_8 words before any VECT_BASE_Y"),
    ):
        nbad = int(bits[bad].sum())
        if nbad:
            if strict:
                raise EventDecodeError(
                    f"libcaer_cmp: {nbad} events from {what} (first at word "
                    f"{int(np.flatnonzero(bad)[0])})"
                )
            count_drop(drops, reason, nbad)
            bits[bad] = False
    row, col = np.nonzero(bits)  # word order, then rising row within a VECT_8
    t = (int(time_base_ns) // 1000) + hi[row] + lo[row]
    x = (value[i_x[row]] & 0x7FF).astype(np.uint16)
    y_word = np.where(is_y[row], value[row] & 0x7FF, base_y[row] + col)
    p_word = np.where(is_y[row], value[row] >> 11, value[i_base[row]] >> 11) & 1
    return finish_events(
        t,
        x,
        (y_word & 0xFFFF).astype(np.uint16),
        p_word.astype(np.uint8),
        width,
        height,
        "libcaer_cmp",
        strict,
        drops,
    )


class LibcaerCmpCodec:
    """:class:`~hsnn_perception.core.events.codecs.EventCodec` of ``libcaer_cmp``."""

    encoding = "libcaer_cmp"
    stateful = False  # every packet restarts its time offset and sets its own column

    def encode(self, events: Array, *, use_vectors: bool) -> tuple[int, bytes]:
        return encode_libcaer_cmp(events, use_vectors)

    def decode(self, p: Payload) -> Array:
        return decode_libcaer_cmp(p.raw, p.time_base_ns, p.width, p.height, p.strict, p.drops)

    def events_at_most(self, nbytes: int) -> int:
        return nbytes // 2 * 8  # every word a full VECT_8

    def event_bound(self, raw: NDArray[np.uint8]) -> int:
        code = raw[1 : 2 * (raw.size // 2) : 2] >> 4  # high byte of each little-endian word
        return int(np.count_nonzero(code == CMP_ADDR_Y) + 8 * np.count_nonzero(code == CMP_VECT_8))


LIBCAER_CMP = LibcaerCmpCodec()  # the registry's entry (registry.EVENT_CODECS)
