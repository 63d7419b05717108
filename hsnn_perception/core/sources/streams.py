"""Packets of events as a driver publishes them, and pacing them on sensor time."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from hsnn_perception.core.events.codecs import empty_events
from hsnn_perception.core.io.bag.msgtypes import Label


@dataclass(frozen=True)
class RecordedPayload:
    """A packet's events as the recording encoded them, for publishing untouched (no decode and
    re-encode on the way through the driver), with what the driver counts and flow-controls on:
    the number of events and the sensor times of the first and last (``first_us`` <= ``last_us``;
    both 0 when there is none)."""

    encoding: str
    time_base_ns: int
    payload: bytes
    is_bigendian: bool
    n_events: int
    first_us: int
    last_us: int


@dataclass
class Packet:
    """Events of ``[t_start_us, t_end_us)`` (sensor time) and the labels that start in it.

    ``recorded``: the same events still encoded as recorded (a bag played without filters). Then
    ``events`` may be left empty (not decoded); :attr:`n_events` and :meth:`event_span` hold
    either way.
    """

    events: NDArray[Any]
    t_start_us: int
    t_end_us: int
    labels: list[Label] = field(default_factory=list)
    recorded: RecordedPayload | None = None

    @property
    def decoded(self) -> bool:
        """Whether ``events`` holds the packet's events."""
        return self.recorded is None or len(self.events) == self.recorded.n_events

    @property
    def n_events(self) -> int:
        return len(self.events) if self.recorded is None else self.recorded.n_events

    def event_span(self) -> tuple[int, int] | None:
        """Sensor times of the first and last event (None: no event)."""
        if self.recorded is not None:
            r = self.recorded
            return (r.first_us, r.last_us) if r.n_events else None
        if not len(self.events):
            return None
        t = self.events["t"]
        return int(t[0]), int(t[-1])


def synthetic_packets(
    generator: object,
    packet_us: int,
    n_samples: int | None = None,
    start_us: int = 0,
) -> Iterator[Packet]:
    """Cut the back-to-back samples of a SyntheticGestures generator into fixed-length packets.

    Samples start on window boundaries, so a windower whose origin is the first packet's start sees
    exactly one gesture per window. Empty packets are still yielded: they carry time forward.
    """
    if packet_us < 1:
        raise ValueError(f"packet_us must be >= 1, got {packet_us}")
    labels = generator.labels  # type: ignore[attr-defined]
    for events, class_id, t0, t1 in generator.stream(n_samples, start_us):  # type: ignore[attr-defined]
        span = Label(int(class_id), labels[class_id], int(t0), int(t1))
        edges = np.arange(t0, t1 + packet_us, packet_us)
        edges[-1] = min(edges[-1], t1)
        cuts = np.searchsorted(events["t"], edges)
        for i in range(len(edges) - 1):
            if edges[i] >= edges[i + 1]:
                continue
            chunk = events[cuts[i] : cuts[i + 1]] if cuts[i] < cuts[i + 1] else empty_events()
            yield Packet(chunk, int(edges[i]), int(edges[i + 1]), [span] if i == 0 else [])


class Pacer:
    """Releases packets when wall time catches up with sensor time (times ``speed``).

    ``speed`` 1.0 is real time, 2.0 twice as fast; 0 releases everything at once ("as fast as the
    pipeline consumes", left to the caller's per-tick budget).
    """

    def __init__(self, speed: float, clock: Callable[[], float] = time.monotonic) -> None:
        if speed < 0:
            raise ValueError(f"speed must be >= 0, got {speed}")
        self.speed = float(speed)
        self._clock = clock
        self._wall0: float | None = None
        self._sensor0: int | None = None

    def due(self, sensor_end_us: int) -> bool:
        if self.speed == 0:
            return True
        now = self._clock()
        if self._wall0 is None or self._sensor0 is None:
            self._wall0, self._sensor0 = now, sensor_end_us
            return True
        return (sensor_end_us - self._sensor0) * 1e-6 <= (now - self._wall0) * self.speed

    def reset(self) -> None:
        self._wall0 = self._sensor0 = None

    def progress(self, sensor_end_us: int) -> tuple[float, float]:
        """(pace, late_s) of a packet ending at ``sensor_end_us`` going out now: sensor seconds
        played per wall second since the first packet (``speed`` when keeping up), and how long
        after it was due it goes out (< 0: early). (0, 0) before the first packet or at speed 0."""
        if self._wall0 is None or self._sensor0 is None or self.speed == 0:
            return 0.0, 0.0
        wall = self._clock() - self._wall0
        sensor = (sensor_end_us - self._sensor0) * 1e-6
        return (sensor / wall if wall > 0 else self.speed), wall - sensor / self.speed


class WindowFlowControl:
    """Holds a recorded source back so that the pipeline never has more than ``max_windows``
    event windows unclassified: replay "as fast as the pipeline keeps up", with nothing lost.

    Without it, a recording played as fast as possible over best-effort transport loses whatever
    a busy consumer cannot take. The driver reports each packet it publishes
    (:meth:`published`) and each classification it hears (:meth:`done`, with the window's sensor
    start time) and publishes a packet with events only while :meth:`may_publish`. Windows are
    identified by their start, ``(t // window_us) * window_us``: the windows an ``EventWindower``
    cuts (its origin is floored to a multiple of the window length). Packets without events add
    no window and are never held back, so silent stretches of a recording pass at once.

    Windows are classified in order, so a classification of window ``w`` settles every older
    window too (one the pipeline lost never comes; counted in ``lost``). If no classification
    came for ``stall_s`` while held back, the oldest window is given up (``stalls``) so that a
    lost last window cannot stop playback for good.
    """

    def __init__(
        self,
        window_us: int,
        max_windows: int = 4,
        stall_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if window_us < 1:
            raise ValueError(f"window_us must be >= 1, got {window_us}")
        # The newest window is still being filled (the SNN node emits a window once an event of
        # a later one arrives), so one window in flight could never be classified.
        if max_windows < 2:
            raise ValueError(f"max_windows must be >= 2, got {max_windows}")
        if not stall_s > 0:
            raise ValueError(f"stall_s must be > 0, got {stall_s}")
        self.window_us = int(window_us)
        self.max_windows = int(max_windows)
        self.stall_s = float(stall_s)
        self._clock = clock
        self._pending: set[int] = set()
        self._last_progress = clock()
        self.lost = 0
        self.stalls = 0

    @property
    def pending(self) -> int:
        """Windows published and not classified yet."""
        return len(self._pending)

    def published(self, t_us: NDArray[Any]) -> None:
        """A packet with events at sensor times ``t_us`` went out."""
        if len(t_us):
            index, _ = _window_counts(np.asarray(t_us, np.int64), self.window_us)
            self._pending.update(int(k) * self.window_us for k in index)

    def published_span(self, first_us: int, last_us: int) -> None:
        """A packet with events from ``first_us`` to ``last_us`` went out, its events not decoded:
        every window between counts as having events (a packet shorter than a window spans two
        at most, so none is made up)."""
        w = self.window_us
        self._pending.update(range(first_us // w * w, last_us // w * w + 1, w))

    def done(self, window_start_us: int) -> None:
        """The window starting at ``window_start_us`` was classified."""
        start = (int(window_start_us) // self.window_us) * self.window_us
        settled = {w for w in self._pending if w <= start}
        self.lost += sum(1 for w in settled if w < start)
        self._pending -= settled
        self._last_progress = self._clock()

    def may_publish(self) -> bool:
        """Whether a packet with events may go out now."""
        now = self._clock()
        if len(self._pending) < self.max_windows:
            self._last_progress = now
            return True
        if now - self._last_progress < self.stall_s:
            return False
        self._pending.discard(min(self._pending))
        self.stalls += 1
        self._last_progress = now
        return len(self._pending) < self.max_windows


@dataclass
class WindowWork:
    """A source's own work (host seconds, measured energy) on one model window."""

    window_id: int  # as the SNN node's windower numbers it (0 = the first event's window)
    start_us: int  # sensor time at which the window starts (a multiple of the window length)
    seconds: float = 0.0
    energy_j: float = 0.0  # NaN when nothing measured it
    events: int = 0


class WindowWorkMeter:
    """Spreads the work of publishing each packet over the model windows its events fall in, and
    hands out a window's total once the stream has moved past it: the driver's per-inference
    figure. Windows are those an ``EventWindower`` with the same window length cuts (origin = the
    first event's time floored to the window length); a packet without events charges the window
    its start lies in, so windows of a silent stretch get a figure too. Work before the first
    event belongs to no window and is left out.
    """

    def __init__(self, window_us: int) -> None:
        if window_us < 1:
            raise ValueError(f"window_us must be >= 1, got {window_us}")
        self.window_us = int(window_us)
        self._origin: int | None = None  # index of the first event's window
        self._open: dict[int, WindowWork] = {}

    def add(
        self, t_us: NDArray[Any], t_start_us: int, seconds: float, energy_j: float = math.nan
    ) -> list[WindowWork]:
        """Charge one packet (event times ``t_us``, starting at ``t_start_us``); return the
        windows completed before it, oldest first."""
        length = self.window_us
        t = np.asarray(t_us, np.int64)
        if self._origin is None:
            if not t.size:
                return []
            self._origin = int(t[0]) // length
        if t.size:
            index, counts = _window_counts(t, length)
        else:
            index, counts = np.array([int(t_start_us) // length]), np.array([0])
        return self._charge(index, counts, seconds, energy_j)

    def add_span(
        self,
        first_us: int,
        last_us: int,
        n_events: int,
        t_start_us: int,
        seconds: float,
        energy_j: float = math.nan,
    ) -> list[WindowWork]:
        """:meth:`add` for a packet whose events were not decoded (``n_events`` from ``first_us``
        to ``last_us``): spread over its windows in proportion to the sensor time of the span
        each holds."""
        if n_events < 1:
            return self.add(np.zeros(0, np.int64), t_start_us, seconds, energy_j)
        length = self.window_us
        if self._origin is None:
            self._origin = first_us // length
        k0, k1 = first_us // length, last_us // length
        index = np.arange(k0, k1 + 1, dtype=np.int64)
        if k0 == k1:
            return self._charge(index, np.array([n_events]), seconds, energy_j)
        edges = index * length
        edges[0] = first_us
        spans = np.diff(np.append(edges, last_us + 1))
        counts = np.rint(spans / spans.sum() * n_events).astype(np.int64)
        return self._charge(index, counts, seconds, energy_j)

    def _charge(
        self, index: NDArray[Any], counts: NDArray[Any], seconds: float, energy_j: float
    ) -> list[WindowWork]:
        """Charge ``seconds`` and ``energy_j`` to windows ``index`` in proportion to ``counts``
        (evenly where they sum to 0); return the windows completed before the first."""
        total = int(counts.sum())
        shares = counts / total if total else np.full(len(index), 1 / len(index))
        done = self._close_before(int(index[0]))
        origin = self._origin if self._origin is not None else int(index[0])
        for k, n, share in zip(index.tolist(), counts.tolist(), shares.tolist(), strict=True):
            if k < origin:
                continue
            work = self._open.get(k)
            if work is None:
                work = self._open[k] = WindowWork(k - origin, k * self.window_us)
            work.seconds += seconds * share
            work.energy_j += energy_j * share
            work.events += int(n)
        return done

    def flush(self) -> list[WindowWork]:
        """Every window still open (the stream ended)."""
        return self._close_before(None)

    def _close_before(self, k: int | None) -> list[WindowWork]:
        done = sorted(w for w in self._open if k is None or w < k)
        return [self._open.pop(w) for w in done]


def _window_counts(t: NDArray[Any], length: int) -> tuple[NDArray[Any], NDArray[Any]]:
    """Indexes of the windows of ``length`` that times ``t`` fall in, and events per window. A
    packet's times are sorted (every source sorts them): its window edges are then found by
    bisection instead of sorting all its events again (np.unique), which a 20 Mev/s stream of
    1 ms packets could not afford."""
    if t.size > 1 and not bool(np.all(t[1:] >= t[:-1])):
        return np.unique(t // length, return_counts=True)
    k0, k1 = int(t[0]) // length, int(t[-1]) // length
    if k0 == k1:
        return np.array([k0]), np.array([t.size])
    index = np.arange(k0, k1 + 1, dtype=np.int64)
    cuts = np.searchsorted(t, index[1:] * length)
    counts = np.diff(np.concatenate(([0], cuts, [t.size])))
    keep = counts > 0
    return index[keep], counts[keep]
