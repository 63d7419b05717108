"""Prophesee EVT 3.0 as event_camera_msgs/EventPacket carries it (``evt3``): the word layout and the
rules both EVT3 decoders (:mod:`.evt3_vectorised`, :mod:`.evt3_sequential`) share.

Little-endian 16-bit words, code in the top 4 bits. ``EVT_ADDR_Y`` (0) sets y; ``EVT_ADDR_X`` (2)
is one event at x with polarity in bit 11; ``VECT_BASE_X`` (3) sets the base x and polarity of
vector events; ``VECT_12`` (4) / ``VECT_8`` (5) carry a validity mask of 12 / 8 pixels from the
base x (the base then advances by 12 / 8); ``TIME_LOW`` (6) and ``TIME_HIGH`` (8) hold bits 0-11
and 12-23 of the microsecond time. A ``TIME_HIGH`` that goes back by more than 10 units is a
24-bit rollover (as event_camera_codecs does). ``time_base`` only tells which 2**24 us epoch the
packet lies in: the first timestamp is placed in the epoch nearest to it (our encoder writes the
first event's time there, like event_camera_codecs' encoder does). ``EXT_TRIGGER`` (10) words
are external trigger events: bit 0 the edge, bits 8-11 the channel id, at the current time; they
are returned when the caller asks for them and counted (``drops["ext_trigger"]``) otherwise.
``OTHERS`` (14), ``CONTINUED_*`` (7, 15) and padding (9) are skipped. A packet must carry its own
time and y before its first event, unless an :class:`~.codecs.Evt3State` from the previous packet
is passed in (for raw sensor streams that are cut anywhere).
"""

from __future__ import annotations

from hsnn_perception.core.events.codecs import Drops, EventDecodeError, count_drop

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
EVT3_SKIPPED = (EVT3_CONTINUED_4, EVT3_PADDING, EVT3_OTHERS, EVT3_CONTINUED_12)
EVT3_KNOWN = (
    EVT3_ADDR_Y,
    EVT3_ADDR_X,
    EVT3_VECT_BASE_X,
    EVT3_VECT_12,
    EVT3_VECT_8,
    EVT3_TIME_LOW,
    EVT3_TIME_HIGH,
    EVT3_EXT_TRIGGER,
) + EVT3_SKIPPED

EVT3_EPOCH_US = 1 << 24
EVT3_ROLLOVER_MIN_DISTANCE = 10  # TIME_HIGH jitter tolerated without a rollover
EVT3_MAX_GAP_US = 1 << 23  # a larger gap between two events would make rollovers ambiguous

# Words no decoder state can place: (drops reason, what they are), checked in this order.
NO_TIME = ("no_time_reference", "event words before any TIME_HIGH/TIME_LOW")
NO_Y = ("no_y_address", "event words before any EVT_ADDR_Y")
NO_BASE = ("vector_without_base", "vector words before any VECT_BASE_X")
TRIGGER_NO_TIME = ("trigger_no_time_reference", "EXT_TRIGGER words before any TIME_HIGH/TIME_LOW")


def unplaced(
    drops: Drops | None, strict: bool, kind: tuple[str, str], n: int, first_word: int
) -> None:
    """``n`` words of ``kind`` (e.g. :data:`NO_TIME`) that no state places, the first at word
    ``first_word``: an error naming them when ``strict``, else dropped and counted."""
    if not n:
        return
    reason, what = kind
    if strict:
        raise EventDecodeError(
            f"evt3: truncated packet, {n} {what} (first at word {first_word}); "
            "pass the previous packet's Evt3State"
        )
    count_drop(drops, reason, n)


def unknown_code(code: int, word: int) -> EventDecodeError:
    """The error of a word whose code EVT 3.0 does not define."""
    return EventDecodeError(f"evt3: unknown word code {code} at word {word}")


def choose_epoch(time_base_ns: int, first_t24: int | None, first_high: int | None) -> int:
    """The 2**24 us epoch that puts the packet's first time (the first placed event's 24-bit
    time, else its first ``TIME_HIGH`` value << 12) nearest to ``time_base`` (0 when
    ``time_base`` is 0 or the packet has no time)."""
    reference = first_t24 if first_t24 is not None else first_high
    if reference is None or time_base_ns <= 0:
        return 0
    return max(0, round((int(time_base_ns) // 1000 - int(reference)) / EVT3_EPOCH_US))
