"""Events as numpy structured arrays, and the front door of the ``event_camera_msgs/EventPacket``
payload codecs: what every codec shares (the :class:`EventCodec` interface, the errors, the
checks), the lookup by encoding (:func:`codec_for`) and the calls the rest of the package makes
(:func:`encode_packet`, :func:`decode_packet`).

Inside Python an event stream is a structured array of :data:`EVENT_DTYPE`: ``t`` in microseconds of
*sensor* time, ``x``/``y`` pixel coordinates, ``p`` polarity (0 = off, 1 = on). External trigger
events (EVT3 ``EXT_TRIGGER`` words) are arrays of :data:`TRIGGER_DTYPE`.

Message conventions (as event_camera_msgs / event_camera_codecs define them): ``header.stamp`` is
the host time at which the packet was sent (arrival time, for latency figures only); the events
carry sensor time, reconstructed from the packet's ``time_base`` (nanoseconds) and the payload.

One module per encoding, each an entry of ``registry.EVENT_CODECS`` (as event_camera_codecs has
one decoder per encoding behind its decoder factory), numpy-vectorised (no Python loop per event):
:mod:`.mono`, :mod:`.evt3` (with a sequential decoder compiled by numba in :mod:`.evt3_sequential`),
:mod:`.libcaer`, :mod:`.libcaer_cmp`. Their word layouts are in their docstrings. Decoding a
stream of packets in arrival order (state carried, sequence gaps counted) is :mod:`.stream`.

Errors: every problem raises :class:`EventDecodeError` / :class:`EventEncodeError` (both
``ValueError``) naming what is wrong. With ``strict=False`` the decoder drops the bad events
instead and adds how many it dropped, per reason, to the ``drops`` counter the caller passes in.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from hsnn_perception.core.errors import EventError
from hsnn_perception.core.registry import EVENT_CODECS, UnknownNameError

EVENT_DTYPE = np.dtype([("t", "<i8"), ("x", "<u2"), ("y", "<u2"), ("p", "u1")])
# An external trigger: sensor time (us), edge (1 rising, 0 falling), trigger channel id.
TRIGGER_DTYPE = np.dtype([("t", "<i8"), ("edge", "u1"), ("id", "u1")])
ENCODINGS = EVENT_CODECS.names()

# Events one packet may decode to, checked from the payload length (before anything is decoded):
# 2 ms of a Prophesee sensor at its peak rate; decoding costs up to ~60 bytes per event on the way.
MAX_PACKET_EVENTS = 1 << 21
_TIME_BASE_MAX = (1 << 64) - 1  # uint64 in the message

Array = NDArray[Any]  # numpy arrays of events, words and coordinates
Drops = Counter[str]  # events dropped per reason (strict=False)


class EventCodecError(EventError, ValueError):
    """Base class of the codec errors."""


class EventDecodeError(EventCodecError):
    """A packet payload cannot be decoded (names the encoding and what is wrong)."""


class EventEncodeError(EventCodecError):
    """Events cannot be represented in the requested encoding."""


class EventPacketSizeError(EventDecodeError):
    """A payload would decode to more events than the cap (checked before decoding)."""


def empty_events(n: int = 0) -> Array:
    """Return a zeroed event array of length ``n``."""
    return np.zeros(n, dtype=EVENT_DTYPE)


def make_events(t: Any, x: Any, y: Any, p: Any) -> Array:
    """Build an event array from four equally long sequences (values are cast, not checked)."""
    t = np.asarray(t)
    ev = empty_events(len(t))
    ev["t"] = t
    ev["x"] = x
    ev["y"] = y
    ev["p"] = p
    return ev


def check_events(events: Any, what: str = "events") -> Array:
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
    """Decoder state carried from one EVT3 packet to the next (raw streams cut anywhere): the
    ``state`` of :meth:`EventCodec.decode` (the only stateful encoding so far).

    ``epoch`` counts 2**24 us rollovers; ``None`` fields are not known yet.
    """

    time_high: int | None = None
    time_low: int | None = None
    epoch: int = 0
    y: int | None = None
    base_x: int | None = None
    polarity: int = 0

    def words_state(self) -> tuple[int, int, int, int, int]:
        """(time_high, time_low, y, base_x, polarity) as the compiled passes over the words take
        them: -1 for what is not known, polarity 0 without a base."""

        def known(value: int | None) -> int:
            return -1 if value is None else int(value)

        pol = int(self.polarity) if self.base_x is not None else 0
        return known(self.time_high), known(self.time_low), known(self.y), known(self.base_x), pol

    def carry(self, th: int, tl: int, y: int, base: int, pol: int, epoch: int, roll: int) -> None:
        """Take the state a compiled pass over a packet's words ended in (-1: not seen in the
        packet, what was carried stays); ``epoch``: the packet's first epoch, ``roll``: the
        rollovers inside it."""
        if tl >= 0:
            self.time_low = int(tl)
        if y >= 0:
            self.y = int(y)
        if base >= 0:
            # A base past 11 bits cannot be carried; later vectors then count as base-less.
            self.base_x = int(base) if base <= 0x7FF else None
            self.polarity = int(pol)
        if th >= 0:
            self.time_high = int(th)
            self.epoch = int(epoch) + int(roll)


# --------------------------------------------------------------------------- shared by the codecs


def as_byte_view(payload: Any) -> NDArray[np.uint8]:
    """``payload`` (bytes-like, numpy array, ``array.array``) as a flat uint8 view, no copy where
    the buffer allows; EventDecodeError for anything else."""
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


def count_drop(drops: Drops | None, reason: str, n: int) -> None:
    """Add ``n`` dropped events to ``drops[reason]`` (nothing when no counter was passed)."""
    if drops is not None and n:
        drops[reason] += int(n)


def whole_words(
    raw: NDArray[np.uint8], size: int, encoding: str, strict: bool, drops: Drops | None
) -> NDArray[np.uint8]:
    """``raw`` cut to whole ``size``-byte words: trailing bytes are an error, or dropped and
    counted (``trailing_bytes``) when not ``strict``."""
    rem = raw.size % size
    if rem:
        if strict:
            raise EventDecodeError(
                f"{encoding} payload of {raw.size} bytes is not a multiple of the {size}-byte word"
            )
        count_drop(drops, "trailing_bytes", rem)
        raw = raw[: raw.size - rem]
    return raw


def finish_events(
    t: Array,
    x: Array,
    y: Array,
    p: Array,
    width: int,
    height: int,
    encoding: str,
    strict: bool,
    drops: Drops | None,
) -> Array:
    """Check geometry (0: unchecked) and time order, then pack into an event array."""
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
            count_drop(drops, "out_of_bounds", nbad)
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
            count_drop(drops, "time_backwards", t.size - int(np.count_nonzero(ok)))
            t, x, y, p = t[ok], x[ok], y[ok], p[ok]
    ev = np.empty(t.size, dtype=EVENT_DTYPE)
    ev["t"] = t
    ev["x"] = x
    ev["y"] = y
    ev["p"] = p
    return ev


def check_encodable(events: Array, encoding: str, width: int, height: int) -> None:
    """Refuse what no encoding can hold: negative or unsorted times, events beyond the sensor
    (0: unchecked), polarities other than 0/1."""
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


# --------------------------------------------------------------------------- the interface


@dataclass(frozen=True)
class Payload:
    """One packet's payload as :func:`decode_packet` hands it to a codec, checked: the bytes as
    uint8, the time base, the sensor geometry (0: unchecked), and how to decode (see
    :func:`decode_packet` for ``strict``, ``drops``, ``state`` and ``triggers``)."""

    raw: NDArray[np.uint8]
    time_base_ns: int
    width: int
    height: int
    is_bigendian: bool = False
    strict: bool = True
    drops: Drops | None = None
    state: Evt3State | None = None
    triggers: list[Array] | None = None


@runtime_checkable
class EventCodec(Protocol):
    """One payload encoding (an entry of ``registry.EVENT_CODECS``). ``raw`` is the payload as
    a uint8 array; ``decode`` gets geometry and time base already checked and the events'
    sensor geometry check (0: unchecked) is its own, through :func:`finish_events`."""

    encoding: str
    stateful: bool  # decoding carries state from packet to packet (a raw sensor stream)

    def encode(self, events: Array, *, use_vectors: bool) -> tuple[int, bytes]:
        """Sorted, encodable ``events`` -> ``(time_base_ns, payload)``; ``(0, b"")`` if empty."""
        ...

    def decode(self, payload: Payload) -> Array:
        """The payload's events (:data:`EVENT_DTYPE`). An encoding that carries external
        trigger events appends them to ``payload.triggers`` (one :data:`TRIGGER_DTYPE` array
        per packet) when a list is given."""
        ...

    def events_at_most(self, nbytes: int) -> int:
        """Most events any payload of ``nbytes`` bytes can decode to (cheap)."""
        ...

    def event_bound(self, raw: NDArray[np.uint8]) -> int:
        """Most events this payload can decode to (may read its words)."""
        ...


def codec_for(encoding: str, error: type[EventCodecError] = EventDecodeError) -> EventCodec:
    """The codec of ``encoding``; ``error`` (with the supported names) if there is none."""
    codec = _LOADED.get(encoding)  # every packet asks: the registry's import once per name
    if codec is not None:
        return codec
    try:
        loaded: EventCodec = EVENT_CODECS.entry(encoding).load()
    except UnknownNameError:
        raise error(f"unknown encoding {encoding!r}; supported: {', '.join(ENCODINGS)}") from None
    _LOADED[encoding] = loaded
    return loaded


_LOADED: dict[str, EventCodec] = {}


# --------------------------------------------------------------------------- public API


def packet_event_bound(raw: NDArray[np.uint8], encoding: str) -> int:
    """Most events ``raw`` (a uint8 view of a payload) can decode to, from its length alone for
    the 8-byte encodings and from its word codes for EVT3 (a VECT_12 word is up to 12 events)."""
    return codec_for(encoding).event_bound(raw)


def check_packet_size(
    raw: NDArray[np.uint8], encoding: str, max_events: int = MAX_PACKET_EVENTS
) -> None:
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
    events: Array,
    encoding: str = "mono",
    width: int = 0,
    height: int = 0,
    *,
    use_vectors: bool = True,
) -> tuple[int, bytes]:
    """Encode sorted ``events`` into an EventPacket payload; return ``(time_base_ns, payload)``.

    ``width``/``height`` (0 = unchecked) are the sensor geometry the events must lie in.
    ``use_vectors`` (evt3, libcaer_cmp) packs runs of same-time events into vector words.
    An empty packet encodes to ``(0, b"")``.
    """
    check_events(events)
    codec = codec_for(encoding, EventEncodeError)
    check_encodable(events, encoding, width, height)
    return codec.encode(events, use_vectors=use_vectors)


def decode_packet(
    payload: bytes | bytearray | memoryview | Array,
    encoding: str,
    time_base_ns: int,
    width: int,
    height: int,
    is_bigendian: bool = False,
    *,
    strict: bool = True,
    drops: Drops | None = None,
    evt3_state: Evt3State | None = None,
    max_events: int = MAX_PACKET_EVENTS,
    triggers: list[Array] | None = None,
) -> Array:
    """Decode an EventPacket payload into an :data:`EVENT_DTYPE` array (t in us, sensor time).

    ``width``/``height`` are the message's sensor geometry; events beyond it are an error
    (0 disables the check). ``is_bigendian`` applies to ``mono`` words only: EVT3 and libcaer
    are little-endian byte streams by definition. ``strict=False`` drops bad events (and trailing
    bytes) instead of raising, adding per-reason counts to ``drops`` if given. ``evt3_state``
    carries EVT3 decoder state across packets and is updated in place. A payload that could
    decode to more than ``max_events`` events raises :class:`EventPacketSizeError` before any
    event is decoded. ``triggers``: a list that gets the packet's external trigger events (one
    :data:`TRIGGER_DTYPE` array, EVT3 only; without it they are only counted in ``drops``).
    """
    codec = codec_for(encoding)
    raw = checked_payload(payload, encoding, time_base_ns, width, height, max_events)
    return codec.decode(
        Payload(raw, time_base_ns, width, height, is_bigendian, strict, drops, evt3_state, triggers)
    )


def checked_payload(
    payload: bytes | bytearray | memoryview | Array,
    encoding: str,
    time_base_ns: int,
    width: int,
    height: int,
    max_events: int = MAX_PACKET_EVENTS,
) -> NDArray[np.uint8]:
    """The checks :func:`decode_packet` makes before decoding (geometry, time base, size), in its
    order and with its errors; returns the payload as a uint8 view."""
    if width < 0 or height < 0:
        raise EventDecodeError(f"sensor geometry must be non-negative, got {width}x{height}")
    if not 0 <= int(time_base_ns) <= _TIME_BASE_MAX:
        raise EventDecodeError(f"time_base {time_base_ns} is not a uint64")
    raw = as_byte_view(payload)
    check_packet_size(raw, encoding, max_events)
    return raw
