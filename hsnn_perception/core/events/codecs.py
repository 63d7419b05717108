"""Events as numpy structured arrays, and the codecs of ``event_camera_msgs/EventPacket`` payloads.

Inside Python an event stream is a structured array of :data:`EVENT_DTYPE`: ``t`` in microseconds of
*sensor* time, ``x``/``y`` pixel coordinates, ``p`` polarity (0 = off, 1 = on).

Message conventions (as event_camera_msgs / event_camera_codecs define them): ``header.stamp`` is
the host time at which the packet was sent (arrival time, for latency figures only); the events
carry sensor time, reconstructed from the packet's ``time_base`` (nanoseconds) and the payload.
Four encodings are implemented, numpy-vectorised (no Python loop per event); EVT3 also has a
sequential decoder compiled by numba (used when numba is installed, see ``evt3_engine``):

``mono``
    One little-endian 64-bit word per event: bit 63 polarity, bits 48-62 y (15 bits), bits 32-47 x
    (16 bits), bits 0-31 ``dt`` in nanoseconds; event time = ``time_base + dt``. The encoder sets
    ``time_base`` to the first event's time, so a packet may span at most 2**32 ns (4.29 s).
``evt3``
    Prophesee EVT 3.0: little-endian 16-bit words, code in the top 4 bits. ``EVT_ADDR_Y`` (0)
    sets y; ``EVT_ADDR_X`` (2) is one event at x with polarity in bit 11; ``VECT_BASE_X`` (3)
    sets the base x and polarity of vector events; ``VECT_12`` (4) / ``VECT_8`` (5) carry a
    validity mask of 12 / 8 pixels from the base x (the base then advances by 12 / 8);
    ``TIME_LOW`` (6) and ``TIME_HIGH`` (8) hold bits 0-11 and 12-23 of the microsecond time.
    A ``TIME_HIGH`` that goes back by more than 10 units is a 24-bit rollover (as
    event_camera_codecs does). ``time_base`` only tells which 2**24 us epoch the packet lies
    in: the first timestamp is placed in the epoch nearest to it (our encoder writes the first
    event's time there, like event_camera_codecs' encoder does). ``EXT_TRIGGER`` (10) words are
    not returned but counted (``drops["ext_trigger"]``); ``OTHERS`` (14), ``CONTINUED_*`` (7,
    15) and padding (9) are skipped. A packet must carry
    its own time and y before its first event, unless an :class:`Evt3State` from the previous
    packet is passed in (for raw sensor streams that are cut anywhere).
``libcaer``
    libcaer polarity events, 8 bytes each, little-endian: ``uint32 data`` (bit 0 valid mark,
    bit 1 polarity, bits 2-16 y, bits 17-31 x) then ``int32`` timestamp, the low 31 bits of the
    microsecond time; event time = ``time_base + ts * 1000`` ns, plus ``2**31`` us for every
    rollover of ``ts`` inside the packet. Events whose valid mark is 0 are skipped (libcaer's own
    iterators skip them) and counted as ``invalid_mark``.
``libcaer_cmp``
    libcaer_driver's default (its compressed form, as event_camera_codecs decodes it):
    little-endian 16-bit words, code in the top 4 bits. ``TIME_HIGH`` (0) / ``TIME_LOW`` (1)
    hold bits 12-23 / 0-11 of the microsecond offset from ``time_base`` (both start at 0 in
    every packet; no rollover); ``ADDR_X`` (2) sets x (11 bits); ``ADDR_Y`` (3) is one event at
    y (11 bits) with polarity in bit 11; ``VECT_BASE_Y`` (4) sets a base row and polarity and
    each ``VECT_8`` (5) that follows is up to 8 events, rows base..base+7 where its mask bits
    are set (rising), after which the base moves on by 8. Event time = ``time_base // 1000 +
    offset`` us (event_camera_codecs' decoder with time multiplier 1). Other codes are unknown
    (``unknown_code``); event words before the packet's first ``ADDR_X`` / vectors before its
    first ``VECT_BASE_Y`` are dropped (``no_x_address`` / ``vector_without_base``).

Errors: every problem raises :class:`EventDecodeError` / :class:`EventEncodeError` (both
``ValueError``) naming what is wrong. With ``strict=False`` the decoder drops the bad events
instead and adds how many it dropped, per reason, to the ``drops`` counter the caller passes in.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from hsnn_perception.core.errors import EventError
from hsnn_perception.core.registry import EVENT_CODECS, UnknownNameError

EVENT_DTYPE = np.dtype([("t", "<i8"), ("x", "<u2"), ("y", "<u2"), ("p", "u1")])
ENCODINGS = EVENT_CODECS.names()

_MONO_MAX_DT_NS = (1 << 32) - 1
_EVT3_EPOCH_US = 1 << 24
_EVT3_ROLLOVER_MIN_DISTANCE = 10  # TIME_HIGH jitter tolerated without a rollover
_EVT3_MAX_GAP_US = 1 << 23  # a larger gap between two events would make rollovers ambiguous
_LIBCAER_EPOCH_US = 1 << 31
# Events one packet may decode to, checked from the payload length (before anything is decoded):
# 2 ms of a Prophesee sensor at its peak rate; decoding costs up to ~60 bytes per event on the way.
MAX_PACKET_EVENTS = 1 << 21
_TIME_BASE_MAX = (1 << 64) - 1  # uint64 in the message

# EVT 3.0 word codes.
EVT3_ADDR_Y = 0x0
EVT3_ADDR_X = 0x2
EVT3_VECT_BASE_X = 0x3
EVT3_VECT_12 = 0x4
EVT3_VECT_8 = 0x5
EVT3_TIME_LOW = 0x6
EVT3_CONTINUED_4 = 0x7
EVT3_TIME_HIGH = 0x8
EVT3_PADDING = 0x9
EVT3_EXT_TRIGGER = 0xA
EVT3_OTHERS = 0xE
EVT3_CONTINUED_12 = 0xF
_EVT3_SKIPPED = (EVT3_CONTINUED_4, EVT3_PADDING, EVT3_EXT_TRIGGER, EVT3_OTHERS, EVT3_CONTINUED_12)
_EVT3_KNOWN = (
    EVT3_ADDR_Y,
    EVT3_ADDR_X,
    EVT3_VECT_BASE_X,
    EVT3_VECT_12,
    EVT3_VECT_8,
    EVT3_TIME_LOW,
    EVT3_TIME_HIGH,
) + _EVT3_SKIPPED


class EventCodecError(EventError, ValueError):
    """Base class of the codec errors."""


class EventDecodeError(EventCodecError):
    """A packet payload cannot be decoded (names the encoding and what is wrong)."""


class EventEncodeError(EventCodecError):
    """Events cannot be represented in the requested encoding."""


class EventPacketSizeError(EventDecodeError):
    """A payload would decode to more events than the cap (checked before decoding)."""


class SequenceGaps:
    """Counts the numbers missing from a sequence that rises by one (packet seq, window ids).

    A number at or below the last one is a new sequence (a restarted sender): counting starts
    over, nothing is lost. A jump of more than ``max_gap`` is counted in ``jumps``, not as that
    many losses (a wild number must not read as 10^18 lost messages)."""

    def __init__(self, max_gap: int = 1 << 20) -> None:
        self.max_gap = max_gap
        self.last: int | None = None
        self.lost = 0
        self.restarts = 0
        self.jumps = 0

    def see(self, n: int) -> int:
        """Record ``n``; return how many numbers were missing right before it."""
        n = int(n)
        last, self.last = self.last, n
        if last is None or n == last + 1:
            return 0
        if n <= last:
            self.restarts += n < last
            return 0
        gap = n - last - 1
        if gap > self.max_gap:
            self.jumps += 1
            return 0
        self.lost += gap
        return gap

    def diagnostics(self, lost: str, number: str) -> dict[str, str]:
        """The counts as /diagnostics values: ``lost.<lost>``, ``<number>_restarts``,
        ``<number>_jumps`` (e.g. ``lost.windows``, ``window_id_restarts``)."""
        return {
            f"lost.{lost}": str(self.lost),
            f"{number}_restarts": str(self.restarts),
            f"{number}_jumps": str(self.jumps),
        }


def empty_events(n: int = 0) -> np.ndarray:
    """Return a zeroed event array of length ``n``."""
    return np.zeros(n, dtype=EVENT_DTYPE)


def make_events(t: Any, x: Any, y: Any, p: Any) -> np.ndarray:
    """Build an event array from four equally long sequences (values are cast, not checked)."""
    t = np.asarray(t)
    ev = empty_events(len(t))
    ev["t"] = t
    ev["x"] = x
    ev["y"] = y
    ev["p"] = p
    return ev


def check_events(events: Any, what: str = "events") -> np.ndarray:
    """Return ``events`` as a 1-D :data:`EVENT_DTYPE` array, or raise ``EventCodecError``."""
    if not isinstance(events, np.ndarray) or events.dtype != EVENT_DTYPE or events.ndim != 1:
        desc = (
            f"ndarray dtype={events.dtype} ndim={events.ndim}"
            if isinstance(events, np.ndarray)
            else type(events).__name__
        )
        raise EventCodecError(f"{what} must be a 1-D array of EVENT_DTYPE, got {desc}")
    return events


@dataclass
class Evt3State:
    """Decoder state carried from one EVT3 packet to the next (raw streams cut anywhere).

    ``epoch`` counts 2**24 us rollovers; ``None`` fields are not known yet.
    """

    time_high: int | None = None
    time_low: int | None = None
    epoch: int = 0
    y: int | None = None
    base_x: int | None = None
    polarity: int = 0


# --------------------------------------------------------------------------- helpers


def _as_bytes_view(payload: Any) -> np.ndarray:
    if isinstance(payload, np.ndarray):
        return np.ascontiguousarray(payload).view(np.uint8).reshape(-1)
    if isinstance(payload, (bytes, bytearray, memoryview)):
        return np.frombuffer(payload, dtype=np.uint8)
    try:  # array.array (rclpy uint8[] fields) and other buffer objects
        return np.frombuffer(memoryview(payload).cast("B"), dtype=np.uint8)
    except TypeError as exc:
        raise EventDecodeError(
            f"payload must be bytes-like or a numpy array, got {type(payload).__name__}"
        ) from exc


def _drop(drops: Counter | None, reason: str, n: int) -> None:
    if drops is not None and n:
        drops[reason] += int(n)


def _words(raw: np.ndarray, size: int, encoding: str, strict: bool, drops: Counter | None):
    rem = raw.size % size
    if rem:
        if strict:
            raise EventDecodeError(
                f"{encoding} payload of {raw.size} bytes is not a multiple of the {size}-byte word"
            )
        _drop(drops, "trailing_bytes", rem)
        raw = raw[: raw.size - rem]
    return raw


def _finish(
    t: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    p: np.ndarray,
    width: int,
    height: int,
    encoding: str,
    strict: bool,
    drops: Counter | None,
) -> np.ndarray:
    """Check geometry and time order, then pack into an event array."""
    keep = None
    if width > 0 and height > 0 and x.size:
        bad = (x >= width) | (y >= height)
        nbad = int(np.count_nonzero(bad))
        if nbad:
            if strict:
                i = int(np.flatnonzero(bad)[0])
                raise EventDecodeError(
                    f"{encoding}: {nbad} events beyond the {width}x{height} sensor, first "
                    f"x={int(x[i])} y={int(y[i])}"
                )
            _drop(drops, "out_of_bounds", nbad)
            keep = ~bad
    if keep is not None:
        t, x, y, p = t[keep], x[keep], y[keep], p[keep]
    if t.size > 1:
        back = t[1:] < t[:-1]
        if back.any():
            if strict:
                i = int(np.flatnonzero(back)[0]) + 1
                raise EventDecodeError(
                    f"{encoding}: time goes backwards inside the packet at event {i} "
                    f"({int(t[i - 1])} us -> {int(t[i])} us)"
                )
            # Keep events not older than everything before them (a glitch costs only itself).
            ok = t >= np.maximum.accumulate(t)
            _drop(drops, "time_backwards", t.size - int(np.count_nonzero(ok)))
            t, x, y, p = t[ok], x[ok], y[ok], p[ok]
    ev = np.empty(t.size, dtype=EVENT_DTYPE)
    ev["t"] = t
    ev["x"] = x
    ev["y"] = y
    ev["p"] = p
    return ev


def _check_encodable(events: np.ndarray, encoding: str, width: int, height: int) -> None:
    check_events(events)
    if events.size == 0:
        return
    t = events["t"]
    if t[0] < 0:
        raise EventEncodeError(f"{encoding}: negative timestamps cannot be encoded ({int(t[0])})")
    if events.size > 1 and np.any(t[1:] < t[:-1]):
        raise EventEncodeError(f"{encoding}: events must be sorted by time")
    if width > 0 and height > 0:
        if int(events["x"].max()) >= width or int(events["y"].max()) >= height:
            raise EventEncodeError(
                f"{encoding}: events beyond the {width}x{height} sensor "
                f"(max x={int(events['x'].max())}, max y={int(events['y'].max())})"
            )
    if np.any(events["p"] > 1):
        raise EventEncodeError(f"{encoding}: polarity must be 0 or 1")


# --------------------------------------------------------------------------- mono


def _encode_mono(events: np.ndarray) -> tuple[int, bytes]:
    if events.size == 0:
        return 0, b""
    if int(events["y"].max()) > 0x7FFF:
        raise EventEncodeError("mono: y does not fit in 15 bits")
    t = events["t"]
    t0 = int(t[0])
    dt = (t - t0).astype(np.uint64) * np.uint64(1000)
    if int(dt[-1]) > _MONO_MAX_DT_NS:
        raise EventEncodeError(
            f"mono: packet spans {int(t[-1]) - t0} us, more than the 32-bit ns offset allows "
            f"({_MONO_MAX_DT_NS // 1000} us); split it into smaller packets"
        )
    w = (
        (events["p"].astype(np.uint64) << np.uint64(63))
        | (events["y"].astype(np.uint64) << np.uint64(48))
        | (events["x"].astype(np.uint64) << np.uint64(32))
        | dt
    )
    return t0 * 1000, w.astype("<u8").tobytes()


def _decode_mono(raw, time_base_ns, width, height, is_bigendian, strict, drops) -> np.ndarray:
    raw = _words(raw, 8, "mono", strict, drops)
    w = raw.view(">u8" if is_bigendian else "<u8")
    dt = (w & np.uint64(0xFFFFFFFF)).astype(np.int64)
    # Whole microseconds of time_base apart: time_base + dt may pass int64 in nanoseconds.
    base_us, base_ns = divmod(int(time_base_ns), 1000)
    t = (dt + base_ns) // 1000 + base_us
    x = ((w >> np.uint64(32)) & np.uint64(0xFFFF)).astype(np.uint16)
    y = ((w >> np.uint64(48)) & np.uint64(0x7FFF)).astype(np.uint16)
    p = (w >> np.uint64(63)).astype(np.uint8)
    return _finish(t, x, y, p, width, height, "mono", strict, drops)


# --------------------------------------------------------------------------- libcaer


def _encode_libcaer(events: np.ndarray) -> tuple[int, bytes]:
    if events.size == 0:
        return 0, b""
    if int(events["x"].max()) > 0x7FFF or int(events["y"].max()) > 0x7FFF:
        raise EventEncodeError("libcaer: x and y must fit in 15 bits")
    t = events["t"]
    if events.size > 1 and int(np.max(np.diff(t))) >= _LIBCAER_EPOCH_US // 2:
        raise EventEncodeError("libcaer: a gap of 2**30 us or more inside a packet is ambiguous")
    high = (int(t[0]) // _LIBCAER_EPOCH_US) * _LIBCAER_EPOCH_US
    out = np.empty((events.size, 2), dtype="<u4")
    out[:, 0] = (
        (events["x"].astype(np.uint32) << np.uint32(17))
        | (events["y"].astype(np.uint32) << np.uint32(2))
        | (events["p"].astype(np.uint32) << np.uint32(1))
        | np.uint32(1)  # valid mark
    )
    out[:, 1] = (t & (_LIBCAER_EPOCH_US - 1)).astype(np.uint32)
    return high * 1000, out.tobytes()


def _decode_libcaer(raw, time_base_ns, width, height, strict, drops) -> np.ndarray:
    raw = _words(raw, 8, "libcaer", strict, drops)
    pairs = raw.view("<u4").reshape(-1, 2)
    data = pairs[:, 0]
    ts = pairs[:, 1].view("<i4")
    valid = (data & np.uint32(1)).astype(bool)
    if ts.size and (ts < 0).any():
        if strict:
            raise EventDecodeError(
                f"libcaer: {int(np.count_nonzero(ts < 0))} events with a negative timestamp"
            )
        _drop(drops, "bad_timestamp", np.count_nonzero(valid & (ts < 0)))
        valid &= ts >= 0
    if not valid.all():
        _drop(drops, "invalid_mark", np.count_nonzero(~valid & (ts >= 0)))
        data, ts = data[valid], ts[valid]
    ts = ts.astype(np.int64)
    # A drop of the low 31 bits by more than 2**30 us is a rollover; a smaller one is time
    # going backwards (event_camera_codecs treats every drop as a rollover).
    rollover = np.zeros(ts.size, dtype=np.int64)
    if ts.size > 1:
        np.cumsum(ts[:-1] - ts[1:] > _LIBCAER_EPOCH_US // 2, out=rollover[1:])
    t = (int(time_base_ns) // 1000) + ts + rollover * _LIBCAER_EPOCH_US
    x = (data >> np.uint32(17)).astype(np.uint16)
    y = ((data >> np.uint32(2)) & np.uint32(0x7FFF)).astype(np.uint16)
    p = ((data >> np.uint32(1)) & np.uint32(1)).astype(np.uint8)
    return _finish(t, x, y, p, width, height, "libcaer", strict, drops)


# --------------------------------------------------------------------------- libcaer_cmp

# libcaer_cmp word codes (16-bit little-endian words, code in the top 4 bits).
CMP_TIME_HIGH = 0x0
CMP_TIME_LOW = 0x1
CMP_ADDR_X = 0x2
CMP_ADDR_Y = 0x3
CMP_VECT_BASE_Y = 0x4
CMP_VECT_8 = 0x5
_CMP_EPOCH_US = 1 << 24  # TIME_HIGH|TIME_LOW: a 24-bit offset from time_base, no rollover


def _cmp_words(codes: np.ndarray, values: np.ndarray) -> np.ndarray:
    return (codes.astype(np.uint16) << np.uint16(12)) | values.astype(np.uint16)


def _encode_libcaer_cmp(events: np.ndarray, use_vectors: bool) -> tuple[int, bytes]:
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


def _decode_libcaer_cmp(raw, time_base_ns, width, height, strict, drops) -> np.ndarray:
    raw = _words(raw, 2, "libcaer_cmp", strict, drops)
    words = raw.view("<u2")
    code = words >> 12
    value = (words & np.uint16(0xFFF)).astype(np.int64)
    unknown = code > CMP_VECT_8
    if unknown.any():
        if strict:
            i = int(np.flatnonzero(unknown)[0])
            raise EventDecodeError(f"libcaer_cmp: unknown word code {int(code[i])} at word {i}")
        _drop(drops, "unknown_code", int(np.count_nonzero(unknown)))
    idx = np.arange(words.size)

    def last(kind: int) -> np.ndarray:
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
            _drop(drops, reason, nbad)
            bits[bad] = False
    row, col = np.nonzero(bits)  # word order, then rising row within a VECT_8
    t = (int(time_base_ns) // 1000) + hi[row] + lo[row]
    x = (value[i_x[row]] & 0x7FF).astype(np.uint16)
    y_word = np.where(is_y[row], value[row] & 0x7FF, base_y[row] + col)
    p_word = np.where(is_y[row], value[row] >> 11, value[i_base[row]] >> 11) & 1
    return _finish(
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


# --------------------------------------------------------------------------- evt3


def _encode_evt3(events: np.ndarray, use_vectors: bool) -> tuple[int, bytes]:
    if events.size == 0:
        return 0, b""
    if int(events["x"].max()) > 0x7FF or int(events["y"].max()) > 0x7FF:
        raise EventEncodeError("evt3: x and y must fit in 11 bits")
    t, x, y, p = (events[k].astype(np.int64) for k in ("t", "x", "y", "p"))
    n = t.size
    if n > 1 and int(np.max(np.diff(t))) >= _EVT3_MAX_GAP_US:
        raise EventEncodeError(
            f"evt3: a gap of {_EVT3_MAX_GAP_US} us or more between two events of one packet "
            "makes the 24-bit time ambiguous; split the packet"
        )
    t24 = t & (_EVT3_EPOCH_US - 1)
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


_EVT3_KNOWN_LUT = np.isin(np.arange(16), _EVT3_KNOWN)
_EVT3_CD_LUT = np.isin(np.arange(16), (EVT3_ADDR_X, EVT3_VECT_12, EVT3_VECT_8))
_EVT3_WIDTH_LUT = np.zeros(16, dtype=np.int64)
_EVT3_WIDTH_LUT[EVT3_VECT_12] = 12
_EVT3_WIDTH_LUT[EVT3_VECT_8] = 8
_POPCOUNT12 = np.array([bin(i).count("1") for i in range(4096)], dtype=np.int64)


def _last_before(marks: np.ndarray, where: np.ndarray) -> np.ndarray:
    """Index into ``marks`` (sorted word positions) of the last mark before each of ``where``."""
    return np.searchsorted(marks, where) - 1


# EVT3 is a stateful format; besides the vectorised decoder below there is a sequential one,
# compiled with numba when it is installed (several times faster: one pass, no look-ups). Both
# give identical events, drop counts, errors and carried state (test/core/events/test_codecs.py).
# HSNN_EVT3_ENGINE=numpy forces the vectorised one.
EVT3_ENGINES = ("auto", "numba", "numpy")
_EVT3_KERNEL: list[Any] = []

# _evt3_scan_py info slots
_I_UNKNOWN, _I_FIRST_UNKNOWN = 0, 1
_I_NO_TIME, _I_FIRST_NO_TIME = 2, 3
_I_NO_Y, _I_FIRST_NO_Y = 4, 5
_I_NO_BASE, _I_FIRST_NO_BASE = 6, 7
_I_TH, _I_TL, _I_Y, _I_BASE, _I_POL, _I_ROLL = 8, 9, 10, 11, 12, 13
_I_FIRST_TH, _I_FIRST_T24, _I_N = 14, 15, 16
_INFO_SIZE = 17


def _evt3_scan_py(words, th, tl, y, base, pol, out_t, out_x, out_y, out_p, info):  # noqa: ANN001
    """One pass over EVT3 words (state -1 = unknown); events go to ``out_*``, the rest to
    ``info`` (slots ``_I_*``). Plain Python on purpose: numba compiles it."""
    for k in range(_INFO_SIZE):
        info[k] = 0
    info[_I_FIRST_UNKNOWN] = -1
    info[_I_FIRST_NO_TIME] = -1
    info[_I_FIRST_NO_Y] = -1
    info[_I_FIRST_NO_BASE] = -1
    info[_I_FIRST_TH] = -1
    info[_I_FIRST_T24] = -1
    roll = 0
    n = 0
    for i in range(words.size):
        w = np.int64(words[i])
        code = w >> 12
        v = w & 0xFFF
        if code == 8:  # TIME_HIGH; a drop of more than 10 units is a 24-bit rollover
            if th >= 0 and th - v > 10:
                roll += 1
            if info[_I_FIRST_TH] < 0:
                info[_I_FIRST_TH] = v
            th = v
        elif code == 6:  # TIME_LOW
            tl = v
        elif code == 0:  # EVT_ADDR_Y
            y = v
        elif code == 3:  # VECT_BASE_X
            base = v & 0x7FF
            pol = v >> 11
        elif code == 2 or code == 4 or code == 5:  # EVT_ADDR_X, VECT_12, VECT_8
            vector = code != 2
            ok = True
            if th < 0 or tl < 0:
                info[_I_NO_TIME] += 1
                if info[_I_FIRST_NO_TIME] < 0:
                    info[_I_FIRST_NO_TIME] = i
                ok = False
            if y < 0:
                info[_I_NO_Y] += 1
                if info[_I_FIRST_NO_Y] < 0:
                    info[_I_FIRST_NO_Y] = i
                ok = False
            if vector and base < 0:
                info[_I_NO_BASE] += 1
                if info[_I_FIRST_NO_BASE] < 0:
                    info[_I_FIRST_NO_BASE] = i
                ok = False
            t24 = (np.int64(roll) << 24) | (th << 12) | tl
            if ok and info[_I_FIRST_T24] < 0:
                info[_I_FIRST_T24] = t24
            if not vector:
                if ok:
                    out_t[n] = t24
                    out_x[n] = v & 0x7FF
                    out_y[n] = y
                    out_p[n] = v >> 11
                    n += 1
            else:
                bits = 12 if code == 4 else 8
                if ok:
                    for b in range(bits):
                        if (v >> b) & 1:
                            out_t[n] = t24
                            out_x[n] = min(base + b, 0xFFFF)
                            out_y[n] = y
                            out_p[n] = pol
                            n += 1
                if base >= 0:
                    base += bits
        elif not (code == 7 or code == 9 or code == 10 or code == 14 or code == 15):
            info[_I_UNKNOWN] += 1
            if info[_I_FIRST_UNKNOWN] < 0:
                info[_I_FIRST_UNKNOWN] = i
    info[_I_TH] = th
    info[_I_TL] = tl
    info[_I_Y] = y
    info[_I_BASE] = base
    info[_I_POL] = pol
    info[_I_ROLL] = roll
    info[_I_N] = n


def _evt3_kernel() -> Any:
    if not _EVT3_KERNEL:
        import numba

        try:
            _EVT3_KERNEL.append(numba.njit(cache=True, nogil=True)(_evt3_scan_py))
        except RuntimeError:  # no writable cache location: compile per process
            _EVT3_KERNEL.append(numba.njit(cache=False, nogil=True)(_evt3_scan_py))
    return _EVT3_KERNEL[0]


def evt3_engine(engine: str = "auto") -> str:
    """The EVT3 decoder that runs: ``numba`` when numba is installed (unless
    ``HSNN_EVT3_ENGINE=numpy``), else ``numpy``."""
    import os

    if engine not in EVT3_ENGINES:
        raise EventCodecError(f"evt3 engine must be one of {EVT3_ENGINES}, got {engine!r}")
    if engine == "auto":
        engine = os.environ.get("HSNN_EVT3_ENGINE", "auto")
        if engine not in EVT3_ENGINES:
            engine = "auto"
    if engine in ("auto", "numba"):
        try:
            import numba  # noqa: F401
        except ImportError:
            if engine == "numba":
                raise EventCodecError(
                    "evt3 engine 'numba' asked for, numba is not installed"
                ) from None
            return "numpy"
        return "numba"
    return "numpy"


def _decode_evt3(raw, time_base_ns, width, height, strict, drops, state):
    if evt3_engine() == "numba":
        events = _decode_evt3_compiled(raw, time_base_ns, width, height, strict, drops, state)
    else:
        events = _decode_evt3_numpy(raw, time_base_ns, width, height, strict, drops, state)
    # External trigger events are not CD events: not returned, but counted, so a stream with
    # triggers shows them (drops["ext_trigger"]) instead of losing them silently.
    n_words = raw.size // 2
    _drop(drops, "ext_trigger", int(np.count_nonzero((raw[1 : 2 * n_words : 2] >> 4) == 0xA)))
    return events


def _decode_evt3_compiled(raw, time_base_ns, width, height, strict, drops, state) -> np.ndarray:
    raw = _words(raw, 2, "evt3", strict, drops)
    st = Evt3State() if state is None else state
    words = raw.view("<u2")
    code = words >> 12
    bound = int(
        np.count_nonzero(code == EVT3_ADDR_X)
        + 12 * np.count_nonzero(code == EVT3_VECT_12)
        + 8 * np.count_nonzero(code == EVT3_VECT_8)
    )
    out_t = np.empty(bound, np.int64)
    out_x = np.empty(bound, np.uint16)
    out_y = np.empty(bound, np.uint16)
    out_p = np.empty(bound, np.uint8)
    info = np.empty(_INFO_SIZE, np.int64)

    def known(value: int | None) -> int:
        return -1 if value is None else int(value)

    base0 = known(st.base_x)
    _evt3_kernel()(
        words,
        known(st.time_high),
        known(st.time_low),
        known(st.y),
        base0,
        int(st.polarity) if base0 >= 0 else 0,
        out_t,
        out_x,
        out_y,
        out_p,
        info,
    )
    if info[_I_UNKNOWN]:
        if strict:
            i = int(info[_I_FIRST_UNKNOWN])
            raise EventDecodeError(f"evt3: unknown word code {int(code[i])} at word {i}")
        _drop(drops, "unknown_code", int(info[_I_UNKNOWN]))
    for count, first, reason, what in (
        (
            _I_NO_TIME,
            _I_FIRST_NO_TIME,
            "no_time_reference",
            "event words before any TIME_HIGH/TIME_LOW",
        ),
        (_I_NO_Y, _I_FIRST_NO_Y, "no_y_address", "event words before any EVT_ADDR_Y"),
        (
            _I_NO_BASE,
            _I_FIRST_NO_BASE,
            "vector_without_base",
            "vector words before any VECT_BASE_X",
        ),
    ):
        nbad = int(info[count])
        if nbad:
            if strict:
                raise EventDecodeError(
                    f"evt3: truncated packet, {nbad} {what} (first at word {int(info[first])}); "
                    "pass the previous packet's Evt3State"
                )
            _drop(drops, reason, nbad)
    epoch_known = st.time_high is not None
    if state is not None:
        if info[_I_TL] >= 0:
            state.time_low = int(info[_I_TL])
        if info[_I_Y] >= 0:
            state.y = int(info[_I_Y])
        if info[_I_BASE] >= 0:
            # A base past 11 bits cannot be carried; later vectors then count as base-less.
            state.base_x = int(info[_I_BASE]) if info[_I_BASE] <= 0x7FF else None
            state.polarity = int(info[_I_POL])
    if epoch_known:
        epoch = st.epoch
    else:
        epoch = 0
        if info[_I_FIRST_T24] >= 0 and time_base_ns > 0:
            epoch = max(
                0, round((int(time_base_ns) // 1000 - int(info[_I_FIRST_T24])) / _EVT3_EPOCH_US)
            )
        elif info[_I_FIRST_TH] >= 0 and time_base_ns > 0:
            first_high = int(info[_I_FIRST_TH]) << 12
            epoch = max(0, round((int(time_base_ns) // 1000 - first_high) / _EVT3_EPOCH_US))
    if state is not None and info[_I_TH] >= 0:
        state.time_high = int(info[_I_TH])
        state.epoch = epoch + int(info[_I_ROLL])
    n = int(info[_I_N])
    t = out_t[:n]
    t += epoch * _EVT3_EPOCH_US
    return _finish(t, out_x[:n], out_y[:n], out_p[:n], width, height, "evt3", strict, drops)


def _decode_evt3_numpy(raw, time_base_ns, width, height, strict, drops, state) -> np.ndarray:
    # Vectorised: the stateful parts (current time, y, vector base) are looked up for each
    # event word as "the last word of that kind before it", with searchsorted on their positions.
    raw = _words(raw, 2, "evt3", strict, drops)
    st = Evt3State() if state is None else state
    words = raw.view("<u2")
    # Prepend the carried state as words so the look-ups below see it.
    pre = []
    if st.time_high is not None:
        pre.append((EVT3_TIME_HIGH << 12) | st.time_high)
    if st.time_low is not None:
        pre.append((EVT3_TIME_LOW << 12) | st.time_low)
    if st.y is not None:
        pre.append((EVT3_ADDR_Y << 12) | st.y)
    if st.base_x is not None:
        pre.append((EVT3_VECT_BASE_X << 12) | (st.polarity << 11) | st.base_x)
    npre = len(pre)
    if npre:
        words = np.concatenate([np.asarray(pre, dtype=np.uint16), words])
    code = (words >> 12).astype(np.intp)
    val = words & np.uint16(0xFFF)

    known = _EVT3_KNOWN_LUT[code]
    if not known.all():
        unknown = np.flatnonzero(~known)
        if strict:
            i = int(unknown[0])
            raise EventDecodeError(f"evt3: unknown word code {int(code[i])} at word {i - npre}")
        _drop(drops, "unknown_code", unknown.size)

    pos_th = np.flatnonzero(code == EVT3_TIME_HIGH)
    pos_tl = np.flatnonzero(code == EVT3_TIME_LOW)
    pos_y = np.flatnonzero(code == EVT3_ADDR_Y)
    pos_base = np.flatnonzero(code == EVT3_VECT_BASE_X)
    sel = np.flatnonzero(_EVT3_CD_LUT[code])  # event-producing words
    scode = code[sel]
    sval = val[sel].astype(np.int64)

    # TIME_HIGH values with rollovers (a drop of more than 10 units), counted from the first one.
    th_val = val[pos_th].astype(np.int64)
    roll = np.cumsum(np.r_[th_val[:1], th_val[:-1]] - th_val > _EVT3_ROLLOVER_MIN_DISTANCE)
    high_full = (roll << 24) | (th_val << 12)
    i_th = _last_before(pos_th, sel)
    i_tl = _last_before(pos_tl, sel)
    i_y = _last_before(pos_y, sel)
    i_b = _last_before(pos_base, sel)
    is_vec = scode != EVT3_ADDR_X

    no_time = (i_th < 0) | (i_tl < 0)
    no_y = i_y < 0
    no_base = is_vec & (i_b < 0)
    for bad, reason, what in (
        (no_time, "no_time_reference", "event words before any TIME_HIGH/TIME_LOW"),
        (no_y, "no_y_address", "event words before any EVT_ADDR_Y"),
        (no_base, "vector_without_base", "vector words before any VECT_BASE_X"),
    ):
        nbad = int(np.count_nonzero(bad))
        if nbad:
            if strict:
                raise EventDecodeError(
                    f"evt3: truncated packet, {nbad} {what} (first at word "
                    f"{int(sel[np.flatnonzero(bad)[0]]) - npre}); pass the previous packet's "
                    "Evt3State"
                )
            _drop(drops, reason, nbad)

    # Base x of each vector word = its VECT_BASE_X + widths of the vectors since that base.
    widths = _EVT3_WIDTH_LUT[scode]
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
            advanced = int(_EVT3_WIDTH_LUT[code[pos_base[-1] :]].sum())
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
        epoch = 0
        if t24.size and time_base_ns > 0:
            tb_us = int(time_base_ns) // 1000
            epoch = max(0, round((tb_us - int(t24[0])) / _EVT3_EPOCH_US))
        elif pos_th.size and time_base_ns > 0:
            tb_us = int(time_base_ns) // 1000
            epoch = max(0, round((tb_us - int(high_full[0])) / _EVT3_EPOCH_US))
    if state is not None and pos_th.size:
        state.time_high = int(th_val[-1])
        state.epoch = epoch + int(roll[-1])
    t24 = t24 + epoch * _EVT3_EPOCH_US

    if not is_vec.any():  # fast path: single events only
        x = sval & 0x7FF
        return _finish(
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
    return _finish(t, x, y, p, width, height, "evt3", strict, drops)


# --------------------------------------------------------------------------- codecs


@runtime_checkable
class EventCodec(Protocol):
    """One payload encoding (an entry of ``registry.EVENT_CODECS``). ``raw`` is the payload as
    a uint8 array; ``decode`` gets geometry and time base already checked and the events'
    sensor geometry check (0: unchecked) is its own, through ``_finish``."""

    encoding: str
    stateful: bool  # decoding carries state from packet to packet (a raw sensor stream)

    def encode(self, events: np.ndarray, *, use_vectors: bool) -> tuple[int, bytes]:
        """Sorted, encodable ``events`` -> ``(time_base_ns, payload)``; ``(0, b"")`` if empty."""
        ...

    def decode(
        self,
        raw: np.ndarray,
        time_base_ns: int,
        width: int,
        height: int,
        *,
        is_bigendian: bool,
        strict: bool,
        drops: Counter | None,
        state: Evt3State | None,
    ) -> np.ndarray:
        """The payload's events (:data:`EVENT_DTYPE`)."""
        ...

    def events_at_most(self, nbytes: int) -> int:
        """Most events any payload of ``nbytes`` bytes can decode to (cheap)."""
        ...

    def event_bound(self, raw: np.ndarray) -> int:
        """Most events this payload can decode to (may read its words)."""
        ...


class MonoCodec:
    encoding = "mono"
    stateful = False

    def encode(self, events: np.ndarray, *, use_vectors: bool) -> tuple[int, bytes]:
        return _encode_mono(events)

    def decode(
        self,
        raw: np.ndarray,
        time_base_ns: int,
        width: int,
        height: int,
        *,
        is_bigendian: bool,
        strict: bool,
        drops: Counter | None,
        state: Evt3State | None,
    ) -> np.ndarray:
        return _decode_mono(raw, time_base_ns, width, height, is_bigendian, strict, drops)

    def events_at_most(self, nbytes: int) -> int:
        return nbytes // 8

    def event_bound(self, raw: np.ndarray) -> int:
        return raw.size // 8


class LibcaerCodec(MonoCodec):
    encoding = "libcaer"

    def encode(self, events: np.ndarray, *, use_vectors: bool) -> tuple[int, bytes]:
        return _encode_libcaer(events)

    def decode(
        self,
        raw: np.ndarray,
        time_base_ns: int,
        width: int,
        height: int,
        *,
        is_bigendian: bool,
        strict: bool,
        drops: Counter | None,
        state: Evt3State | None,
    ) -> np.ndarray:
        return _decode_libcaer(raw, time_base_ns, width, height, strict, drops)


class Evt3Codec:
    encoding = "evt3"
    stateful = True

    def encode(self, events: np.ndarray, *, use_vectors: bool) -> tuple[int, bytes]:
        return _encode_evt3(events, use_vectors)

    def decode(
        self,
        raw: np.ndarray,
        time_base_ns: int,
        width: int,
        height: int,
        *,
        is_bigendian: bool,
        strict: bool,
        drops: Counter | None,
        state: Evt3State | None,
    ) -> np.ndarray:
        return _decode_evt3(raw, time_base_ns, width, height, strict, drops, state)

    def events_at_most(self, nbytes: int) -> int:
        return nbytes // 2 * 12  # every word a VECT_12

    def event_bound(self, raw: np.ndarray) -> int:
        n_words = raw.size // 2
        code = raw[1 : 2 * n_words : 2] >> 4  # high byte of each little-endian word: its code
        return int(
            np.count_nonzero(code == EVT3_ADDR_X)
            + 12 * np.count_nonzero(code == EVT3_VECT_12)
            + 8 * np.count_nonzero(code == EVT3_VECT_8)
        )


class LibcaerCmpCodec:
    encoding = "libcaer_cmp"
    stateful = False  # every packet restarts its time offset and sets its own column

    def encode(self, events: np.ndarray, *, use_vectors: bool) -> tuple[int, bytes]:
        return _encode_libcaer_cmp(events, use_vectors)

    def decode(
        self,
        raw: np.ndarray,
        time_base_ns: int,
        width: int,
        height: int,
        *,
        is_bigendian: bool,
        strict: bool,
        drops: Counter | None,
        state: Evt3State | None,
    ) -> np.ndarray:
        return _decode_libcaer_cmp(raw, time_base_ns, width, height, strict, drops)

    def events_at_most(self, nbytes: int) -> int:
        return nbytes // 2 * 8  # every word a full VECT_8

    def event_bound(self, raw: np.ndarray) -> int:
        code = raw[1 : 2 * (raw.size // 2) : 2] >> 4  # high byte of each little-endian word
        return int(np.count_nonzero(code == CMP_ADDR_Y) + 8 * np.count_nonzero(code == CMP_VECT_8))


# The registry's entries (registry.EVENT_CODECS names them
# "hsnn_perception.core.events.codecs:MONO"...).
MONO = MonoCodec()
LIBCAER = LibcaerCodec()
LIBCAER_CMP = LibcaerCmpCodec()
EVT3 = Evt3Codec()


def codec_for(encoding: str, error: type[EventCodecError] = EventDecodeError) -> EventCodec:
    """The codec of ``encoding``; ``error`` (with the supported names) if there is none."""
    try:
        return EVENT_CODECS.entry(encoding).load()
    except UnknownNameError:
        raise error(f"unknown encoding {encoding!r}; supported: {', '.join(ENCODINGS)}") from None


# --------------------------------------------------------------------------- public API


def packet_event_bound(raw: np.ndarray, encoding: str) -> int:
    """Most events ``raw`` (a uint8 view of a payload) can decode to, from its length alone for
    the 8-byte encodings and from its word codes for EVT3 (a VECT_12 word is up to 12 events)."""
    return codec_for(encoding).event_bound(raw)


def check_packet_size(raw: np.ndarray, encoding: str, max_events: int = MAX_PACKET_EVENTS) -> None:
    """Raise EventPacketSizeError if the payload could decode to more than ``max_events``."""
    codec = codec_for(encoding)
    if codec.events_at_most(raw.size) <= max_events:
        return  # cannot be too large whatever its words say: skip reading them
    bound = codec.event_bound(raw)
    if bound > max_events:
        raise EventPacketSizeError(
            f"{encoding} payload of {raw.size} bytes decodes to up to {bound} events, more than "
            f"the {max_events} a packet may carry; split it"
        )


def encode_packet(
    events: np.ndarray,
    encoding: str = "mono",
    width: int = 0,
    height: int = 0,
    *,
    use_vectors: bool = True,
) -> tuple[int, bytes]:
    """Encode sorted ``events`` into an EventPacket payload; return ``(time_base_ns, payload)``.

    ``width``/``height`` (0 = unchecked) are the sensor geometry the events must lie in.
    ``use_vectors`` (evt3 only) packs runs of same-time, same-row events into ``VECT_12`` words.
    An empty packet encodes to ``(0, b"")``.
    """
    check_events(events)
    codec = codec_for(encoding, EventEncodeError)
    _check_encodable(events, encoding, width, height)
    return codec.encode(events, use_vectors=use_vectors)


def decode_packet(
    payload: bytes | bytearray | memoryview | np.ndarray,
    encoding: str,
    time_base_ns: int,
    width: int,
    height: int,
    is_bigendian: bool = False,
    *,
    strict: bool = True,
    drops: Counter | None = None,
    evt3_state: Evt3State | None = None,
    max_events: int = MAX_PACKET_EVENTS,
) -> np.ndarray:
    """Decode an EventPacket payload into an :data:`EVENT_DTYPE` array (t in us, sensor time).

    ``width``/``height`` are the message's sensor geometry; events beyond it are an error
    (0 disables the check). ``is_bigendian`` applies to ``mono`` words only: EVT3 and libcaer
    are little-endian byte streams by definition. ``strict=False`` drops bad events (and trailing
    bytes) instead of raising, adding per-reason counts to ``drops`` if given. ``evt3_state``
    carries EVT3 decoder state across packets and is updated in place. A payload that could
    decode to more than ``max_events`` events raises :class:`EventPacketSizeError` before any
    event is decoded.
    """
    codec = codec_for(encoding)
    if width < 0 or height < 0:
        raise EventDecodeError(f"sensor geometry must be non-negative, got {width}x{height}")
    if not 0 <= int(time_base_ns) <= _TIME_BASE_MAX:
        raise EventDecodeError(f"time_base {time_base_ns} is not a uint64")
    raw = _as_bytes_view(payload)
    check_packet_size(raw, encoding, max_events)
    return codec.decode(
        raw,
        time_base_ns,
        width,
        height,
        is_bigendian=is_bigendian,
        strict=strict,
        drops=drops,
        state=evt3_state,
    )


class PacketStreamDecoder:
    """Decodes the packets of one event stream in arrival order, as a subscriber gets them.

    ``mono`` and ``libcaer`` packets stand alone: a malformed one raises
    :class:`EventDecodeError` and is lost whole. EVT3 is a raw sensor stream that drivers (e.g.
    event_camera_msgs' metavision driver) cut anywhere, so a packet may begin with events whose
    time, row or vector base came in the packet before: the decoder state is carried from packet
    to packet, and events no state can place (the start of a stream, after a lost packet) or
    words that are not EVT3 are dropped one by one and counted in ``drops`` instead of losing the
    packet. The state is reset when a packet is missing (``seq`` jumps forward: the carried time
    would be stale) and when the sensor geometry changes.
    """

    def __init__(
        self,
        strict_standalone: bool = True,
        drops: Counter | None = None,
        max_events: int = MAX_PACKET_EVENTS,
    ) -> None:
        """``strict_standalone=False`` also drops bad mono/libcaer events one by one (a reader
        of recordings keeps what it can) instead of raising. A packet that could decode to more
        than ``max_events`` raises EventPacketSizeError before it is decoded."""
        self.strict_standalone = strict_standalone
        self.max_events = int(max_events)
        self.drops: Counter = Counter() if drops is None else drops
        self.resets = 0
        self.seq_gaps = SequenceGaps()  # packets lost before this decoder, every encoding
        self._state = Evt3State()
        self._last: tuple[int, int, int] | None = None  # (seq, width, height) of the last packet

    def decode(
        self,
        payload: Any,
        encoding: str,
        time_base_ns: int,
        width: int,
        height: int,
        is_bigendian: bool = False,
        seq: int | None = None,
    ) -> np.ndarray:
        if seq is not None:  # even a packet rejected below arrived: only missing seqs are lost
            self.seq_gaps.see(seq)
        if not codec_for(encoding).stateful:
            if self.strict_standalone:
                return decode_packet(
                    payload,
                    encoding,
                    time_base_ns,
                    width,
                    height,
                    is_bigendian,
                    max_events=self.max_events,
                )
            return decode_packet(
                payload,
                encoding,
                time_base_ns,
                width,
                height,
                is_bigendian,
                strict=False,
                drops=self.drops,
                max_events=self.max_events,
            )
        last, self._last = self._last, (-1 if seq is None else int(seq), width, height)
        # Only a forward jump of seq is a lost packet: a source that never sets seq (all 0)
        # or restarts it must not reset the state at every packet.
        if last is not None and (
            (width, height) != last[1:] or (seq is not None and last[0] >= 0 and seq > last[0] + 1)
        ):
            self._state = Evt3State()
            self.resets += 1
        try:
            return decode_packet(
                payload,
                encoding,
                time_base_ns,
                width,
                height,
                strict=False,
                drops=self.drops,
                evt3_state=self._state,
                max_events=self.max_events,
            )
        except EventDecodeError:  # the packet is lost whole: the state it would carry with it
            self._state = Evt3State()
            self.resets += 1
            raise
