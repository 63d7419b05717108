"""What the driver node plays: one interface over every event source.

``poll()`` returns the next :class:`~hsnn_perception.core.sources.streams.Packet`, or None when
nothing is ready (live sources) or the source has ended (``finished``). Live sources (camera, DV
network stream) that are absent or drop out are reopened every ``retry_s``; the driver stays up
meanwhile.
Recorded sources (synthetic, AEDAT4, rosbag) are paced by the driver on sensor time.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from hsnn_perception.core.events.filters import EventFilterChain
from hsnn_perception.core.sources.streams import Packet


class PacketSource:
    """Base: a source of packets with a sensor geometry."""

    live = False
    width = 0
    height = 0
    finished = False
    status = "ok"

    def poll(self) -> Packet | None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class IteratorSource(PacketSource):
    """A recorded source given as an iterator of packets (synthetic set, rosbag)."""

    def __init__(self, packets: Iterator[Packet], width: int, height: int) -> None:
        self._packets = packets
        self.width, self.height = int(width), int(height)

    def poll(self) -> Packet | None:
        if self.finished:
            return None
        try:
            return next(self._packets)
        except StopIteration:
            self.finished = True
            self.status = "finished"
            return None


class BatchSource(PacketSource):
    """Adapts sources whose ``next_packet()`` gives ``(events, sensor_end_us)`` (sources.py)."""

    def __init__(self, source: Any) -> None:
        self._source = source
        self.width, self.height = int(source.width), int(source.height)
        self._t: int | None = None  # sensor time the last packet ended at

    def _packet(self, batch: tuple[Any, int] | None) -> Packet | None:
        if batch is None:
            return None
        events, t_end = batch
        t_start = (
            self._t if self._t is not None else (int(events["t"][0]) if len(events) else t_end)
        )
        self._t = int(t_end)
        return Packet(events, int(t_start), int(t_end))

    def poll(self) -> Packet | None:
        if self.finished:
            return None
        batch = self._source.next_packet()
        if batch is None and not self.live:
            self.finished = True
            self.status = "finished"
        return self._packet(batch)

    def close(self) -> None:
        close = getattr(self._source, "close", None)
        if close is not None:
            close()


class ReconnectingSource(PacketSource):
    """A live source opened by ``opener()``; when it is absent or fails, retried every
    ``retry_s`` (the reason is kept in ``status``), never raising into the caller."""

    live = True

    def __init__(
        self,
        opener: Callable[[], Any],
        retry_s: float,
        on_error: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._opener = opener
        self.retry_s = float(retry_s)
        self._on_error = on_error
        self._clock = clock
        self._source: BatchSource | None = None
        self._next_try = 0.0
        self.status = "not opened yet"

    def _try_open(self) -> None:
        if self._clock() < self._next_try:
            return
        try:
            source = BatchSource(self._opener())
            source.live = True
            self._source = source
            self.width, self.height = source.width, source.height
            self.status = "streaming"
        except Exception as exc:  # absent camera, refused connection: report and retry later
            self.status = f"unavailable: {exc}; retrying every {self.retry_s:g} s"
            self._on_error(self.status)
            self._next_try = self._clock() + self.retry_s

    def poll(self) -> Packet | None:
        if self._source is None:
            self._try_open()
            if self._source is None:
                return None
        try:
            return self._source.poll()
        except Exception as exc:  # unplugged, stream ended: back to retrying
            self._source.close()
            self._source = None
            self.status = f"lost: {exc}; retrying every {self.retry_s:g} s"
            self._on_error(self.status)
            self._next_try = self._clock() + self.retry_s
            return None

    def close(self) -> None:
        if self._source is not None:
            self._source.close()
            self._source = None


class ReadAheadSource(PacketSource):
    """A recorded source read on a thread of its own, up to ``depth`` packets ahead, so that
    reading it (a disk stall, a bag's deserialization, a synthetic gesture rendered whole) does
    not hold up the thread that paces and publishes. Packets come out in order; an error of the
    source is raised by the ``poll`` that reaches it."""

    def __init__(self, inner: PacketSource, depth: int = 64) -> None:
        if inner.live:
            raise ValueError("read-ahead is for recorded sources: a live one is read as it comes")
        self._inner = inner
        self.width, self.height = inner.width, inner.height
        self.status = inner.status
        self._queue: queue.Queue[Packet | BaseException | None] = queue.Queue(max(depth, 1))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name="hsnn-read-ahead", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            while not self._stop.is_set():
                packet = self._inner.poll()
                if packet is None and self._inner.finished:
                    self._put(None)
                    return
                if packet is not None:
                    self._put(packet)
        except Exception as exc:  # handed to the reader's thread, which reports it
            self._put(exc)

    def _put(self, item: Packet | BaseException | None) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def poll(self) -> Packet | None:
        if self.finished:
            return None
        try:
            item = self._queue.get_nowait()
        except queue.Empty:
            return None
        if isinstance(item, Packet):
            return item
        self.finished = True
        self.status = self._inner.status
        if item is not None:
            raise item
        return None

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)
        self._inner.close()


class FilteredSource(PacketSource):
    """Applies an event filter chain (ROI, polarity, noise, spatial map) to another source."""

    def __init__(self, inner: PacketSource, chain_config: list[dict[str, Any]]) -> None:
        self._inner = inner
        self._config = chain_config
        self._chain: EventFilterChain | None = None
        self.live = inner.live
        if inner.width:  # a recorded source: its geometry is known, so the chain is checked now
            self.height, self.width = self._chain_for().out_shape

    def _chain_for(self) -> EventFilterChain:
        shape = (self._inner.height, self._inner.width)
        if self._chain is None or self._chain.in_shape != shape:
            self._chain = EventFilterChain.from_config(self._config, shape)
        return self._chain

    def poll(self) -> Packet | None:
        packet = self._inner.poll()
        self.finished, self.status = self._inner.finished, self._inner.status
        if self._inner.width:  # live sources know their geometry once opened
            chain = self._chain_for()
            self.height, self.width = chain.out_shape
        if packet is None:
            return None
        packet.events = self._chain_for()(packet.events)
        packet.recorded = None  # the filtered events are no longer what was recorded
        return packet

    def close(self) -> None:
        self._inner.close()


def filter_config(
    roi: list[int], polarity: str, noise_filter_us: int, out_width: int, out_height: int
) -> list[dict[str, Any]]:
    """The filter chain of the driver's parameters (empty list: no filtering)."""
    stages: list[dict[str, Any]] = []
    if roi:
        if len(roi) != 4:
            raise ValueError(f"roi must be [x, y, width, height], got {roi}")
        x, y, w, h = (int(v) for v in roi)
        stages.append({"type": "roi", "x": x, "y": y, "width": w, "height": h})
    if polarity not in ("both", "on", "off"):
        raise ValueError(f"polarity must be both, on or off, got {polarity!r}")
    if polarity != "both":
        stages.append({"type": "polarity", "keep": polarity})
    if noise_filter_us > 0:
        stages.append({"type": "background_activity", "time_window_us": int(noise_filter_us)})
    if out_width > 0 and out_height > 0:
        stages.append({"type": "spatial_map", "height": int(out_height), "width": int(out_width)})
    return stages
