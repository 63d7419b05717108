"""Packets of events as a driver publishes them, and pacing them on sensor time."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from hsnn_perception.core.events import empty_events


@dataclass(frozen=True)
class LabelSpan:
    """Ground truth for ``[start_us, end_us)`` of sensor time."""

    class_id: int
    label: str
    start_us: int
    end_us: int


@dataclass
class Packet:
    """Events of ``[t_start_us, t_end_us)`` (sensor time) and the labels that start in it."""

    events: np.ndarray
    t_start_us: int
    t_end_us: int
    labels: list[LabelSpan] = field(default_factory=list)


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
        span = LabelSpan(int(class_id), labels[class_id], int(t0), int(t1))
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
