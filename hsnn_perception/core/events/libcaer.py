"""The ``libcaer`` encoding of event_camera_msgs/EventPacket: libcaer polarity events.

8 bytes each, little-endian: ``uint32 data`` (bit 0 valid mark, bit 1 polarity, bits 2-16 y,
bits 17-31 x) then ``int32`` timestamp, the low 31 bits of the microsecond time; event time =
``time_base + ts * 1000`` ns, plus ``2**31`` us for every rollover of ``ts`` inside the packet.
Events whose valid mark is 0 are skipped (libcaer's own iterators skip them) and counted as
``invalid_mark``.
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

_LIBCAER_EPOCH_US = 1 << 31


def encode_libcaer(events: Array) -> tuple[int, bytes]:
    """Sorted, checked ``events`` -> ``(time_base_ns, payload)``; ``time_base`` holds the time's
    bits above the 31 the events carry."""
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


def decode_libcaer(
    raw: NDArray[np.uint8],
    time_base_ns: int,
    width: int,
    height: int,
    strict: bool,
    drops: Drops | None,
) -> Array:
    """The events of a libcaer payload (t in us)."""
    raw = whole_words(raw, 8, "libcaer", strict, drops)
    pairs = raw.view("<u4").reshape(-1, 2)
    data = pairs[:, 0]
    ts = pairs[:, 1].view("<i4")
    valid = (data & np.uint32(1)).astype(bool)
    if ts.size and (ts < 0).any():
        if strict:
            raise EventDecodeError(
                f"libcaer: {int(np.count_nonzero(ts < 0))} events with a negative timestamp"
            )
        count_drop(drops, "bad_timestamp", int(np.count_nonzero(valid & (ts < 0))))
        valid &= ts >= 0
    if not valid.all():
        count_drop(drops, "invalid_mark", int(np.count_nonzero(~valid & (ts >= 0))))
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
    return finish_events(t, x, y, p, width, height, "libcaer", strict, drops)


class LibcaerCodec:
    """:class:`~hsnn_perception.core.events.codecs.EventCodec` of ``libcaer``."""

    encoding = "libcaer"
    stateful = False

    def encode(self, events: Array, *, use_vectors: bool) -> tuple[int, bytes]:
        return encode_libcaer(events)

    def decode(self, p: Payload) -> Array:
        return decode_libcaer(p.raw, p.time_base_ns, p.width, p.height, p.strict, p.drops)

    def events_at_most(self, nbytes: int) -> int:
        return nbytes // 8

    def event_bound(self, raw: NDArray[np.uint8]) -> int:
        return raw.size // 8


LIBCAER = LibcaerCodec()  # the registry's entry (registry.EVENT_CODECS)
