"""The ``mono`` encoding of event_camera_msgs/EventPacket: one little-endian 64-bit word per event.

Bit 63 polarity, bits 48-62 y (15 bits), bits 32-47 x (16 bits), bits 0-31 ``dt`` in
nanoseconds; event time = ``time_base + dt``. The encoder sets ``time_base`` to the first event's
time, so a packet may span at most 2**32 ns (4.29 s). ``is_bigendian`` (the message's flag) reads
big-endian words.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from hsnn_perception.core.events.codecs import (
    Array,
    Drops,
    EventEncodeError,
    Payload,
    finish_events,
    whole_words,
)

_MONO_MAX_DT_NS = (1 << 32) - 1


def encode_mono(events: Array) -> tuple[int, bytes]:
    """Sorted, checked ``events`` -> ``(time_base_ns, payload)``."""
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


def decode_mono(
    raw: NDArray[np.uint8],
    time_base_ns: int,
    width: int,
    height: int,
    is_bigendian: bool,
    strict: bool,
    drops: Drops | None,
) -> Array:
    """The events of a mono payload (t in us: ``(time_base + dt) // 1000``)."""
    raw = whole_words(raw, 8, "mono", strict, drops)
    w = raw.view(">u8" if is_bigendian else "<u8")
    dt = (w & np.uint64(0xFFFFFFFF)).astype(np.int64)
    # Whole microseconds of time_base apart: time_base + dt may pass int64 in nanoseconds.
    base_us, base_ns = divmod(int(time_base_ns), 1000)
    t = (dt + base_ns) // 1000 + base_us
    x = ((w >> np.uint64(32)) & np.uint64(0xFFFF)).astype(np.uint16)
    y = ((w >> np.uint64(48)) & np.uint64(0x7FFF)).astype(np.uint16)
    p = (w >> np.uint64(63)).astype(np.uint8)
    return finish_events(t, x, y, p, width, height, "mono", strict, drops)


class MonoCodec:
    """:class:`~hsnn_perception.core.events.codecs.EventCodec` of ``mono``."""

    encoding = "mono"
    stateful = False

    def encode(self, events: Array, *, use_vectors: bool) -> tuple[int, bytes]:
        return encode_mono(events)

    def decode(self, p: Payload) -> Array:
        return decode_mono(
            p.raw, p.time_base_ns, p.width, p.height, p.is_bigendian, p.strict, p.drops
        )

    def events_at_most(self, nbytes: int) -> int:
        return nbytes // 8

    def event_bound(self, raw: NDArray[np.uint8]) -> int:
        return raw.size // 8


MONO = MonoCodec()  # the registry's entry (registry.EVENT_CODECS)
