"""A labelled event bag as a packet source: what the driver node publishes with ``source: rosbag``.

:func:`bag_packets` reads a bag written by :mod:`hsnn_perception.core.io.bag.write` (converted
from a synthetic set or an AEDAT4 file, or recorded live by ``hsnn-bag record``) and yields
:class:`~hsnn_perception.core.sources.streams.Packet` objects in *sensor* time, with the
ground-truth labels attached to the packet during which they start.

Packet times come from the decoded events, never from the bag's log times: a converted bag logs
sensor time, but a live recording logs the time a message arrived. Packet ``k`` spans
``[t_end(k-1), last event + 1)``, so the spans tile the stream without gaps and a label starting
in a silent stretch goes with the first packet after it. A packet is therefore complete once
sensor time reaches its ``t_end_us``, which is what the driver's pacer waits for.

Damaged bags: :func:`~hsnn_perception.core.io.bag.read.read_event_bag` already reads what it can;
packets that do not decode, or whose sensor geometry differs from the first packet's, are skipped
and counted in the :class:`~hsnn_perception.core.io.bag.storage.ReadReport` of the returned stream
(``stream.report``). What is not an event bag at all raises :class:`BagError`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from hsnn_perception.core.events.codecs import MAX_PACKET_EVENTS, EventCodecError, empty_events
from hsnn_perception.core.events.evt3_format import EVT3_EPOCH_US
from hsnn_perception.core.events.filters import MappedWindower, model_input_chain
from hsnn_perception.core.events.stream import PacketStreamDecoder
from hsnn_perception.core.io.bag.msgtypes import BagError, EventPacketData, Label
from hsnn_perception.core.io.bag.read import EventBag, read_event_bag
from hsnn_perception.core.io.bag.storage import ReadReport
from hsnn_perception.core.sources import evt3_span
from hsnn_perception.core.sources.evt3_span import Evt3Span
from hsnn_perception.core.sources.streams import Packet, RecordedPayload

__all__ = [
    "BagError",
    "BagPacketStream",
    "WindowSpan",
    "bag_packets",
    "bag_window_count",
    "bag_windows",
    "model_windower",
]

# Encodings a bag's packets are passed through in (``pass_through``): their sensor time is the
# time base plus what the payload holds, so a loop can shift it (EVT3: by whole 2**24 us epochs).
PASS_THROUGH_ENCODINGS = ("mono", "evt3")

# Loops shift sensor time by the played span rounded up to this: one window of the paper's
# set-up (T = 16 bins of 10 ms), so windows of the shipped models line up the same way each loop.
DEFAULT_LOOP_ALIGN_US = 160_000


def _span(label: Label, offset_us: int) -> Label:
    return Label(
        int(label.class_id), str(label.label), label.start_us + offset_us, label.end_us + offset_us
    )


class BagPacketStream(Iterator[Packet]):
    """Iterator of :class:`Packet` over one bag (optionally looping), with what it skipped.

    ``report`` is the bag reader's :class:`ReadReport` (of the latest pass when looping), to which
    this stream adds the packets it skipped. ``width`` / ``height`` are the sensor geometry of
    the first packet; ``labels`` the bag's labels; ``packets_out`` / ``events_out`` / ``loops``
    count what was yielded.

    ``pass_through`` (an encoding): packets recorded in it also carry their payload untouched
    (:attr:`Packet.recorded`) for a driver that publishes them as they are; ``mono`` packets are
    then not decoded at all (``events`` empty; their count and first and last times are read
    off the words). Such packets are checked less: events beyond the sensor or out of time
    order go on as recorded, for the consumer's decoder to drop and count. A loop pass that
    cannot shift an EVT3 payload's time (a shift of other than whole 2**24 us epochs) decodes
    and hands out events only. ``merge_us`` > 0 joins consecutive passed-through packets into one
    of up to that much sensor time (:meth:`_merged`).
    """

    def __init__(
        self,
        path: Path | str,
        loop: bool = False,
        loop_align_us: int = DEFAULT_LOOP_ALIGN_US,
        events_topic: str | None = None,
        pass_through: str | None = None,
        merge_us: int = 0,
    ) -> None:
        if int(loop_align_us) != loop_align_us or loop_align_us < 1:
            raise BagError(f"loop_align_us must be a positive integer, got {loop_align_us!r}")
        self.path = Path(path)
        self.events_topic = events_topic  # None: the one events topic found by type
        self.loop = bool(loop)
        self.loop_align_us = int(loop_align_us)
        self.pass_through = pass_through if pass_through in PASS_THROUGH_ENCODINGS else None
        self.merge_us = int(merge_us)
        self.packets_out = 0
        self.events_out = 0
        self.loops = 0
        self.drops: Counter[str] = Counter()
        self._offset = 0  # added to every time of the current pass (loops)
        self._bag = read_event_bag(self.path, events_topic=events_topic)
        self.labels: list[Label] = list(self._bag.labels)
        self._raw = self._decoded(self._bag, None)
        first = next(self._raw, None)
        if first is None:
            raise BagError(f"{self.path} holds no decodable event packet ({self.report.summary()})")
        _, pkt, rec = first
        self.width, self.height = int(pkt.width), int(pkt.height)
        self._peeked: _Item | None = first
        span = _span_of(first)
        self._first_us = span[0] if span else int(pkt.time_base_ns) // 1000
        self._prev_end: int | None = None
        self._label_i = 0
        self._carry: list[Label] = []
        self._done = False

    @property
    def report(self) -> ReadReport:
        return self._bag.report

    def _decoded(self, bag: EventBag, geometry: tuple[int, int] | None) -> Iterator[_Item]:
        """(events, packet, recorded payload or None) of each packet that decodes and has the
        sensor geometry ``geometry`` (``(height, width)``; None: the first packet's)."""
        # EVT3 streams may be cut anywhere: the decoder carries its state from packet to packet
        # (reset where the recording lost a packet, as the SNN node does on a live stream).
        decoder = PacketStreamDecoder(strict_standalone=False, drops=self.drops)
        skipped = bag.report.skipped
        # EVT3 passed through is only counted and timed (compiled, state carried like the
        # decoder's); mono is read off its words. The first packet is decoded all the same: it
        # sets the geometry.
        span = Evt3Span() if self.pass_through == "evt3" and evt3_span.available() else None
        prev: tuple[int, int, int] | None = None  # seq, height, width of the previous packet
        for pkt in bag.packets():
            passed = self.pass_through is not None and pkt.encoding == self.pass_through
            same = geometry is not None and (pkt.height, pkt.width) == geometry
            if passed and same and pkt.encoding == "mono":
                rec = _mono_summary(pkt)
                if rec is not None:
                    yield empty_events(), pkt, rec
                    continue
            if passed and span is not None:
                if prev is not None and (
                    (pkt.height, pkt.width) != prev[1:] or pkt.seq > prev[0] + 1 >= 1
                ):
                    span.reset()  # another geometry, a packet the recording lost: as the decoder
                prev = (pkt.seq, pkt.height, pkt.width)
                n, t0, t1 = span.scan(pkt.payload, pkt.time_base_ns, pkt.width, pkt.height)
            if passed and same and span is not None:
                yield (
                    empty_events(),
                    pkt,
                    RecordedPayload(
                        pkt.encoding, pkt.time_base_ns, pkt.payload, pkt.is_bigendian, n, t0, t1
                    ),
                )
                continue
            try:
                events = decoder.decode(
                    pkt.payload,
                    pkt.encoding,
                    pkt.time_base_ns,
                    pkt.width,
                    pkt.height,
                    pkt.is_bigendian,
                    seq=pkt.seq,
                )
            except EventCodecError as exc:
                skipped["undecodable event packet"] += 1
                bag.report.note(f"event packet seq {pkt.seq} skipped: {exc}")
                continue
            if geometry is None:
                geometry = (pkt.height, pkt.width)
            elif (pkt.height, pkt.width) != geometry:
                skipped[f"packet of another sensor geometry ({pkt.width}x{pkt.height})"] += 1
                continue
            if events.size > 1 and np.any(np.diff(events["t"]) < 0):
                # Consumers encode packets again, which needs time order inside a packet.
                events = events[np.argsort(events["t"], kind="stable")]
                skipped["packets re-sorted by event time (not an error)"] += 1
            rec = None
            if passed:
                first, last = (int(events["t"][0]), int(events["t"][-1])) if events.size else (0, 0)
                rec = RecordedPayload(
                    pkt.encoding,
                    pkt.time_base_ns,
                    pkt.payload,
                    pkt.is_bigendian,
                    int(events.size),
                    first,
                    last,
                )
            yield events, pkt, rec
        for reason, n in self.drops.items():
            skipped[f"events dropped by the decoder: {reason}"] = n

    def _next_raw(self) -> _Item | None:
        if self._peeked is not None:
            peeked, self._peeked = self._peeked, None
            return peeked
        item = next(self._raw, None)
        while item is None and self.loop:
            if self._prev_end is None:  # nothing was ever played: a loop would spin
                return None
            played = self._prev_end - (self._first_us + self._offset)
            self._offset += -(-max(played, 1) // self.loop_align_us) * self.loop_align_us
            # Labels of the pass that no packet took go out with the next packet.
            self._carry = [_span(lab, self._offset) for lab in self.labels[self._label_i :]]
            self._bag = read_event_bag(self.path, events_topic=self.events_topic)
            self._raw = self._decoded(self._bag, (self.height, self.width))
            self._label_i = 0
            self.loops += 1
            item = next(self._raw, None)
            if item is None:
                return None
        return item

    def __next__(self) -> Packet:
        if self._done:
            raise StopIteration
        item = self._next_raw()
        if item is None:
            self._done = True
            raise StopIteration
        events, pkt, rec = item
        if self._offset:
            rec, events = self._shifted(rec, events, pkt)
        if rec is not None and rec.n_events and self.merge_us > 0:
            rec = self._merged(rec)
            events = events if rec.n_events == events.size else empty_events()
        span = _span_of((events, pkt, rec))
        if span is not None:
            start = span[0] if self._prev_end is None else self._prev_end
            end = max(span[1] + 1, start)
        else:
            # An empty packet (a recorded driver's heartbeat): its time base says where it is.
            hint = int(pkt.time_base_ns) // 1000 + self._offset
            start = hint if self._prev_end is None else self._prev_end
            end = max(hint, start)
        self._prev_end = end
        labels = self._labels_until(end, last=self._is_last())
        packet = Packet(events, start, end, labels, rec)
        self.packets_out += 1
        self.events_out += packet.n_events
        return packet

    def _merged(self, rec: RecordedPayload) -> RecordedPayload:
        """``rec`` and the passed-through packets after it in this pass, joined while they span
        at most ``merge_us`` of sensor time: fewer, larger messages (each costs the driver and
        its consumers a fixed price whatever its size). EVT3 is a byte stream: payloads join as
        they are; mono words are moved onto the first packet's time base."""
        parts, n, first, last = [rec.payload], rec.n_events, rec.first_us, rec.last_us
        while True:
            if self._peeked is None:
                self._peeked = next(self._raw, None)  # None: the pass ended (loops go on later)
            if self._peeked is None:
                break
            events, pkt, nxt = self._peeked
            if self._offset and nxt is not None:
                nxt, events = self._shifted(nxt, events, pkt)
            if (
                nxt is None
                or not nxt.n_events
                or (nxt.encoding, nxt.is_bigendian) != (rec.encoding, rec.is_bigendian)
                or max(last, nxt.last_us) - first >= self.merge_us
                or n + nxt.n_events > MAX_PACKET_EVENTS // 2
            ):
                break
            word = 8 if rec.encoding == "mono" else 2
            if len(rec.payload) % word or len(nxt.payload) % word:
                break  # trailing bytes would shift every word after them
            if rec.encoding == "mono":
                delta = nxt.time_base_ns - rec.time_base_ns
                dt_max = (nxt.last_us + 1) * 1000 - rec.time_base_ns
                if rec.is_bigendian or delta < 0 or dt_max > 0xFFFFFFFF:
                    break
                words = np.frombuffer(nxt.payload, "<u8") + np.uint64(delta)  # dt stays < 2**32
                parts.append(words.tobytes())
            else:
                parts.append(nxt.payload)
            n, first, last = n + nxt.n_events, min(first, nxt.first_us), max(last, nxt.last_us)
            self._peeked = None
        if len(parts) == 1:
            return rec
        return RecordedPayload(
            rec.encoding, rec.time_base_ns, b"".join(parts), rec.is_bigendian, n, first, last
        )

    def _shifted(
        self, rec: RecordedPayload | None, events: NDArray[Any], pkt: EventPacketData
    ) -> tuple[RecordedPayload | None, NDArray[Any]]:
        """A loop pass's packet moved ``_offset`` on in sensor time: the payload through its
        time base where the encoding allows, the decoded events (decoded here if need be)."""
        off = self._offset
        if rec is not None and (rec.encoding != "evt3" or off % EVT3_EPOCH_US == 0):
            shifted = RecordedPayload(
                rec.encoding,
                rec.time_base_ns + off * 1000,
                rec.payload,
                rec.is_bigendian,
                rec.n_events,
                rec.first_us + off,
                rec.last_us + off,
            )
            if not events.size:
                return shifted, events
            events = events.copy()
            events["t"] += off
            return shifted, events
        if rec is not None and rec.n_events and not events.size:  # a mono payload not decoded
            events = pkt.decode(strict=False, drops=self.drops)
            events = events[np.argsort(events["t"], kind="stable")]
        events = events.copy()
        events["t"] += off
        return None, events

    def _is_last(self) -> bool:
        if self.loop:
            return False
        if self._peeked is None:
            nxt = next(self._raw, None)
            if nxt is None:
                return True
            self._peeked = nxt
        return False

    def _labels_until(self, end_us: int, last: bool) -> list[Label]:
        """Labels starting before ``end_us`` not yet handed out (all that are left if ``last``)."""
        out, self._carry = self._carry, []
        while self._label_i < len(self.labels) and (
            last or self.labels[self._label_i].start_us + self._offset < end_us
        ):
            out.append(_span(self.labels[self._label_i], self._offset))
            self._label_i += 1
        return out


_Item = tuple[NDArray[Any], EventPacketData, RecordedPayload | None]


def _span_of(item: _Item) -> tuple[int, int] | None:
    """First and last event time of a decoded or passed-through packet (None: no event)."""
    events, _, rec = item
    if rec is not None:
        return (rec.first_us, rec.last_us) if rec.n_events else None
    return (int(events["t"][0]), int(events["t"][-1])) if events.size else None


def _mono_summary(pkt: EventPacketData) -> RecordedPayload | None:
    """A mono packet's payload with its event count and first and last times, read off its
    words without decoding them (None: whole words missing or too many: decode it instead)."""
    raw = np.frombuffer(pkt.payload, np.uint8)
    n = raw.size // 8
    if raw.size % 8 or n > MAX_PACKET_EVENTS:
        return None
    first = last = 0
    if n:
        dt = raw.view(">u8" if pkt.is_bigendian else "<u8") & np.uint64(0xFFFFFFFF)
        base_us, base_ns = divmod(int(pkt.time_base_ns), 1000)
        first = (int(dt.min()) + base_ns) // 1000 + base_us
        last = (int(dt.max()) + base_ns) // 1000 + base_us
    return RecordedPayload(
        pkt.encoding, pkt.time_base_ns, pkt.payload, pkt.is_bigendian, n, first, last
    )


def bag_packets(
    path: Path | str,
    loop: bool = False,
    speed_hint: float | None = None,
    *,
    loop_align_us: int = DEFAULT_LOOP_ALIGN_US,
    events_topic: str | None = None,
    pass_through: str | None = None,
    merge_us: int = 0,
) -> tuple[BagPacketStream, int, int]:
    """Open a labelled event bag as ``(packets, width, height)`` for the driver node.

    ``packets`` is a :class:`BagPacketStream` (an iterator of :class:`Packet` in sensor time; its
    ``report`` says what was skipped). ``loop`` replays the bag again and again, shifting sensor
    time by the played span rounded up to ``loop_align_us`` so it keeps increasing.
    ``speed_hint`` is checked (>= 0) but changes nothing: packets are yielded as recorded and the
    caller paces them. ``pass_through``, ``merge_us``: see :class:`BagPacketStream`. Raises
    :class:`BagError` when ``path`` is not an event bag or holds no decodable event packet.
    """
    if speed_hint is not None and not float(speed_hint) >= 0:
        raise BagError(f"speed must be >= 0 (0: as fast as possible), got {speed_hint!r}")
    stream = BagPacketStream(
        path,
        loop=loop,
        loop_align_us=loop_align_us,
        events_topic=events_topic,
        pass_through=pass_through,
        merge_us=merge_us,
    )
    return stream, stream.width, stream.height


@dataclass(frozen=True)
class WindowSpan:
    """One window the SNN node would cut from a bag: ``[t_start_us, t_end_us)``, events in it."""

    window_id: int
    t_start_us: int
    t_end_us: int
    n_events: int


def model_windower(
    sensor_shape: tuple[int, int],
    bin_us: int,
    timesteps: int,
    model_shape: tuple[int, int],
    mapping: str = "scale",
    roi: Sequence[int] = (),
) -> MappedWindower:
    """Events of a sensor of ``sensor_shape`` (height, width) -> windows of the model's input
    ``model_shape``, mapped as the SNN node maps them (its ``input_mapping`` / ``input_roi``:
    :func:`~hsnn_perception.core.events.filters.model_input_chain`), so any geometry fits. Raises
    ``FilterConfigError`` / ``BinningError`` (ValueErrors) for a mapping that cannot be made."""
    from hsnn_perception.core.events.binning import EventWindower

    chain = model_input_chain(sensor_shape, model_shape, mapping, roi)
    h, w = int(model_shape[0]), int(model_shape[1])
    return MappedWindower(chain, EventWindower(bin_us, timesteps, h, w, h, w))


def bag_windows(
    path: Path | str,
    bin_us: int,
    timesteps: int,
    height: int,
    width: int,
    *,
    mapping: str = "scale",
    roi: Sequence[int] = (),
    events_topic: str | None = None,
) -> list[WindowSpan]:
    """The windows of ``timesteps`` bins of ``bin_us`` that the bag's events span, cut the way the
    SNN node cuts them (its mapping, see :func:`model_windower`, then the windower with its
    defaults on the packets, flushed at the end of the stream). ``height`` / ``width``: the
    model's input."""
    from hsnn_perception.core.events.binning import BinningError

    stream, sensor_w, sensor_h = bag_packets(path, events_topic=events_topic)
    try:
        windower = model_windower(
            (sensor_h, sensor_w), bin_us, timesteps, (height, width), mapping, roi
        )
    except ValueError as exc:
        raise BagError(
            f"{path}: sensor {sensor_w}x{sensor_h} does not fit the model: {exc}"
        ) from exc
    out: list[WindowSpan] = []

    def keep(windows: list[Any]) -> None:
        out.extend(WindowSpan(w.window_id, w.t_start_us, w.t_end_us, w.n_events) for w in windows)

    for packet in stream:
        try:
            keep(windower.push(packet.events))
        except BinningError:  # the SNN node drops such a packet too
            continue
    keep(windower.flush())
    return out


def bag_window_count(
    path: Path | str, bin_us: int, timesteps: int, height: int, width: int, **kw: Any
) -> int:
    """How many windows the bag's events span (see :func:`bag_windows`, same keywords)."""
    return len(bag_windows(path, bin_us, timesteps, height, width, **kw))
