"""Decoding one event stream's packets in arrival order, as a subscriber gets them: the decoder
state carried from packet to packet (EVT3), and the numbers missing from a sequence (lost
packets, lost windows).
"""

from __future__ import annotations

import importlib.util
from collections import Counter
from typing import Any

from hsnn_perception.core.errors import EventError
from hsnn_perception.core.events.codecs import (
    MAX_PACKET_EVENTS,
    Array,
    Drops,
    EventDecodeError,
    Evt3State,
    checked_payload,
    codec_for,
    decode_packet,
)

# Event times a packet may carry by default (the windower's bound, binning.MAX_ABS_TIME_US).
TIME_LIMIT_US = 1 << 62


class EventTimeRangeError(EventError, ValueError):
    """A packet's event times ``tmin..tmax`` are outside the range its consumer can carry."""

    def __init__(self, tmin: int, tmax: int, time_range: tuple[int, int]) -> None:
        super().__init__(
            f"event times {tmin}..{tmax} us are outside {time_range[0]}..{time_range[1]} us"
        )
        self.tmin, self.tmax = tmin, tmax


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
        drops: Drops | None = None,
        max_events: int = MAX_PACKET_EVENTS,
    ) -> None:
        """``strict_standalone=False`` also drops bad mono/libcaer events one by one (a reader
        of recordings keeps what it can) instead of raising. A packet that could decode to more
        than ``max_events`` raises EventPacketSizeError before it is decoded."""
        self.strict_standalone = strict_standalone
        self.max_events = int(max_events)
        self.drops: Drops = Counter() if drops is None else drops
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
    ) -> Array:
        """The events of one packet (see the class docstring for what is dropped or raised)."""
        events, _ = self._packet(payload, encoding, time_base_ns, width, height, is_bigendian, seq)
        assert events is not None
        return events

    def decode_into(
        self,
        windower: Any,
        payload: Any,
        encoding: str,
        time_base_ns: int,
        width: int,
        height: int,
        is_bigendian: bool = False,
        seq: int | None = None,
        time_range: tuple[int, int] = (0, TIME_LIMIT_US),
    ) -> tuple[int, list[Any]]:
        """``windower.push(decode(...))``: (events decoded, windows completed). A packet with
        an event time outside ``time_range`` raises :class:`EventTimeRangeError` before the
        windower sees it (the decoder's state and drops are updated, as by ``decode``). Where
        ``windower`` has ``push_payload`` (``filters.MappedWindower``), ``mono`` and ``evt3``
        packets are decoded straight into the windows (``fused.py``); same results."""
        sink = windower if hasattr(windower, "push_payload") else None
        events, fused = self._packet(
            payload, encoding, time_base_ns, width, height, is_bigendian, seq, sink, time_range
        )
        if fused is not None:
            return fused
        assert events is not None
        if events.size:
            tmin, tmax = int(events["t"].min()), int(events["t"].max())
            if not time_range[0] <= tmin <= tmax <= time_range[1]:
                raise EventTimeRangeError(tmin, tmax, time_range)
        return int(events.size), windower.push(events)

    def _packet(
        self,
        payload: Any,
        encoding: str,
        time_base_ns: int,
        width: int,
        height: int,
        is_bigendian: bool,
        seq: int | None,
        sink: Any = None,
        time_range: tuple[int, int] = (0, TIME_LIMIT_US),
    ) -> tuple[Array | None, tuple[int, list[Any]] | None]:
        """The packet's events, or (with a ``sink``) what ``sink.push_payload`` made of it."""
        if seq is not None:  # even a packet rejected below arrived: only missing seqs are lost
            self.seq_gaps.see(seq)
        codec = codec_for(encoding)
        state: Evt3State | None = None
        drops: Drops | None
        if codec.stateful:
            last, self._last = self._last, (-1 if seq is None else int(seq), width, height)
            # Only a forward jump of seq is a lost packet: a source that never sets seq (all 0)
            # or restarts it must not reset the state at every packet.
            if last is not None and (
                (width, height) != last[1:]
                or (seq is not None and last[0] >= 0 and seq > last[0] + 1)
            ):
                self._state = Evt3State()
                self.resets += 1
            strict, drops, state = False, self.drops, self._state
        else:
            strict = self.strict_standalone
            drops = None if strict else self.drops
        # (is_bigendian concerns mono words only; the EVT3 paths ignore it.)
        try:
            raw = checked_payload(payload, encoding, time_base_ns, width, height, self.max_events)
            if sink is not None and time_range[0] <= 0:
                got = sink.push_payload(
                    raw,
                    encoding,
                    time_base_ns,
                    width,
                    height,
                    is_bigendian=is_bigendian,
                    strict=strict,
                    drops=drops,
                    state=state,
                    time_max_us=time_range[1],
                )
                if got is not None:
                    return None, got
            events = decode_packet(
                raw,
                encoding,
                time_base_ns,
                width,
                height,
                is_bigendian,
                strict=strict,
                drops=drops,
                evt3_state=state,
                max_events=self.max_events,
            )
            return events, None
        except EventDecodeError:
            if codec.stateful:  # the packet is lost whole: the state it would carry with it
                self._state = Evt3State()
                self.resets += 1
            raise


def warm_up() -> None:
    """Compile (or load from numba's cache) the kernels ``decode_into`` runs, for a node to call
    at configure rather than stall on its first packets (``fused.warm_up``); nothing to do
    without numba (everything then runs in numpy)."""
    if importlib.util.find_spec("numba") is None:
        return
    from hsnn_perception.core.events import fused

    fused.warm_up()
