"""Cutting event streams into time bins and fixed-length windows, on EVENT time only.

Wall-clock time never decides which bin an event goes to: replaying a recording at any speed,
or a slow consumer, gives the same frames as live capture.

Layout of binned frames: ``(n_bins, 2, height // fy, width // fx)`` ``uint16`` event counts,
channel 0 = off events (``p == 0``), channel 1 = on events (``p == 1``). Counts saturate at
65535 instead of wrapping. Spatial downsampling here is integer pooling only (pixel ``(y, x)``
goes to ``(y // fy, x // fx)``; trailing rows/columns that do not fill a whole block are
dropped); other geometries are mapped by ``hsnn_perception.core.filters`` first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hsnn_perception.core.events import EVENT_DTYPE

_U16_MAX = np.iinfo(np.uint16).max


class BinningError(ValueError):
    """Events or binning parameters are inconsistent (names the offending value)."""


@dataclass(frozen=True)
class Window:
    """One window of ``T`` bins: ``[t_start_us, t_end_us)``, frames ``(T, 2, h, w)`` uint16."""

    window_id: int
    t_start_us: int
    t_end_us: int
    frames: np.ndarray
    n_events: int


def _check_events(events: np.ndarray) -> None:
    if not isinstance(events, np.ndarray) or events.dtype != EVENT_DTYPE or events.ndim != 1:
        raise BinningError("events must be a 1-D array of EVENT_DTYPE")


def _check_positive(**kw: int) -> None:
    for name, v in kw.items():
        if int(v) != v or v < 1:
            raise BinningError(f"{name} must be a positive integer, got {v!r}")


def _validate(events: np.ndarray, height: int, width: int) -> None:
    """Raise before any state changes if events do not fit the sensor geometry."""
    _check_events(events)
    if events.size == 0:
        return
    xmax, ymax, pmax = int(events["x"].max()), int(events["y"].max()), int(events["p"].max())
    if xmax >= width or ymax >= height:
        raise BinningError(
            f"events beyond the {width}x{height} sensor (max x={xmax}, max y={ymax}); "
            "wrong sensor geometry or missing crop/downsample filter"
        )
    if pmax > 1:
        raise BinningError(f"polarity must be 0 or 1, got {pmax}")


def _bin_counts(
    events: np.ndarray,
    t_start_us: int,
    bin_us: int,
    n_bins: int,
    height: int,
    width: int,
    fy: int,
    fx: int,
) -> tuple[np.ndarray, int]:
    """Flat int64 counts of shape ``(n_bins, 2, height // fy, width // fx)`` and events used.

    Events must have passed :func:`_validate`.
    """
    oh, ow = height // fy, width // fx
    size = n_bins * 2 * oh * ow
    idx = _bin_index(events, t_start_us, bin_us, n_bins, height, width, fy, fx)
    return np.bincount(idx, minlength=size), int(idx.size)


def _bin_index(
    events: np.ndarray,
    t_start_us: int,
    bin_us: int,
    n_bins: int,
    height: int,
    width: int,
    fy: int,
    fx: int,
) -> np.ndarray:
    """Flat index into ``(n_bins, 2, height // fy, width // fx)`` of each event in the window."""
    oh, ow = height // fy, width // fx
    if events.size == 0:
        return np.zeros(0, dtype=np.int64)
    x = events["x"]
    y = events["y"]
    # int64 difference first: t - t_start can be far outside any window.
    b = events["t"] - np.int64(t_start_us)
    keep = (b >= 0) & (b < np.int64(bin_us) * n_bins)
    if fy > 1 or fx > 1:
        yy, xx = y // fy, x // fx
        if oh * fy != height or ow * fx != width:
            keep &= (yy < oh) & (xx < ow)
    else:
        yy, xx = y, x
    if not keep.all():
        b, yy, xx, p = b[keep], yy[keep], xx[keep], events["p"][keep]
    else:
        p = events["p"]
    idx = b // bin_us
    idx *= 2
    idx += p
    idx *= oh
    idx += yy
    idx *= ow
    idx += xx
    return idx


def bin_events(
    events: np.ndarray,
    t_start_us: int,
    bin_us: int,
    n_bins: int,
    height: int,
    width: int,
    downsample: tuple[int, int] = (1, 1),
) -> np.ndarray:
    """Count events into ``n_bins`` bins of ``bin_us`` from ``t_start_us`` (event time).

    Returns ``(n_bins, 2, height // fy, width // fx)`` uint16 (channel 0 off, 1 on); events
    outside ``[t_start_us, t_start_us + n_bins * bin_us)`` are ignored. Events beyond the
    ``width`` x ``height`` sensor raise :class:`BinningError`. Events need not be sorted.
    """
    fy, fx = downsample
    _check_positive(bin_us=bin_us, n_bins=n_bins, height=height, width=width, fy=fy, fx=fx)
    if fy > height or fx > width:
        raise BinningError(f"downsample {downsample} is larger than the {width}x{height} sensor")
    _validate(events, height, width)
    counts, _ = _bin_counts(events, t_start_us, bin_us, n_bins, height, width, fy, fx)
    out = np.minimum(counts, _U16_MAX).astype(np.uint16)
    return out.reshape(n_bins, 2, height // fy, width // fx)


class EventWindower:
    """Cuts a sorted event stream into windows of ``n_bins`` bins of ``bin_us`` (event time).

    Window ``k`` covers ``[origin + k*T*bin, origin + (k+1)*T*bin)``; ``origin_us`` defaults to
    the first event's time floored to a multiple of the window length. A window is emitted by
    :meth:`push` once an event at or after its end arrives (so it is complete); :meth:`flush`
    emits the pending one. Empty windows between two events are emitted (the SNN must see the
    silence) up to ``max_gap_windows`` in a row; beyond that the windower jumps ahead and counts
    the rest in ``skipped_windows``. Events older than the pending window are counted in
    ``late_events`` and dropped. Within one packet events may be unsorted. No window before the
    one holding the first event is emitted, even with an explicit ``origin_us``.
    """

    def __init__(
        self,
        bin_us: int,
        n_bins: int,
        sensor_height: int,
        sensor_width: int,
        out_height: int,
        out_width: int,
        origin_us: int | None = None,
        max_gap_windows: int = 8,
    ) -> None:
        _check_positive(
            bin_us=bin_us,
            n_bins=n_bins,
            sensor_height=sensor_height,
            sensor_width=sensor_width,
            out_height=out_height,
            out_width=out_width,
        )
        if sensor_height % out_height or sensor_width % out_width:
            raise BinningError(
                f"output {out_width}x{out_height} does not divide the sensor "
                f"{sensor_width}x{sensor_height}; map coordinates with a filter first"
            )
        if int(max_gap_windows) != max_gap_windows or max_gap_windows < 0:
            raise BinningError(f"max_gap_windows must be >= 0, got {max_gap_windows!r}")
        self.bin_us = int(bin_us)
        self.n_bins = int(n_bins)
        self.sensor_height = int(sensor_height)
        self.sensor_width = int(sensor_width)
        self.out_height = int(out_height)
        self.out_width = int(out_width)
        self.downsample = (sensor_height // out_height, sensor_width // out_width)
        self.window_us = self.bin_us * self.n_bins
        self.origin_us = None if origin_us is None else int(origin_us)
        self.max_gap_windows = int(max_gap_windows)
        self.late_events = 0
        self.skipped_windows = 0
        self.windows_emitted = 0
        self._started = False  # no window before the first event is ever emitted
        self._k = 0  # index of the pending window
        # Flat bin indices of the pending window's events, counted once when it is emitted:
        # counting every packet into a full (T, 2, h, w) array would cost more than the events.
        self._pending: list[np.ndarray] = []

    @property
    def pending_window_id(self) -> int:
        """Index of the window now being filled."""
        return self._k

    def _shape(self) -> tuple[int, int, int, int]:
        return (self.n_bins, 2, self.out_height, self.out_width)

    def _window(self, k: int, chunks: list[np.ndarray]) -> Window:
        t0 = self.origin_us + k * self.window_us
        if not chunks:
            frames, n = np.zeros(self._shape(), dtype=np.uint16), 0
        else:
            idx = chunks[0] if len(chunks) == 1 else np.concatenate(chunks)
            counts = np.bincount(idx, minlength=int(np.prod(self._shape())))
            frames = np.minimum(counts, _U16_MAX).astype(np.uint16).reshape(self._shape())
            n = int(idx.size)
        self.windows_emitted += 1
        return Window(k, t0, t0 + self.window_us, frames, n)

    def _advance(self, k_new: int, out: list[Window]) -> None:
        """Emit the pending window and the silent ones before ``k_new``; make ``k_new`` pending."""
        out.append(self._window(self._k, self._pending))
        gap = k_new - self._k - 1
        n_empty = min(gap, self.max_gap_windows)
        for j in range(1, n_empty + 1):
            out.append(self._window(self._k + j, []))
        self.skipped_windows += gap - n_empty
        self._k, self._pending = k_new, []

    def push(self, events: np.ndarray) -> list[Window]:
        """Add a packet of events; return the windows it completed, oldest first."""
        _validate(events, self.sensor_height, self.sensor_width)
        if events.size == 0:
            return []
        t = events["t"]
        if self.origin_us is None:
            tmin = int(t.min())
            self.origin_us = (tmin // self.window_us) * self.window_us
        k = (t - np.int64(self.origin_us)) // self.window_us
        if not self._started:
            self._k, self._started = int(k.min()), True
        if int(k.min()) < self._k:
            late = k < self._k
            self.late_events += int(np.count_nonzero(late))
            keep = ~late
            events, k = events[keep], k[keep]
            if events.size == 0:
                return []
        out: list[Window] = []
        if k[0] == k[-1] and (k.size < 3 or not np.any(k != k[0])):
            groups = [(int(k[0]), events)]  # common case: the whole packet in one window
        else:
            if np.any(k[1:] < k[:-1]):
                order = np.argsort(k, kind="stable")
                events, k = events[order], k[order]
            cuts = np.flatnonzero(k[1:] != k[:-1]) + 1
            starts = np.r_[0, cuts]
            groups = [
                (int(k[a]), events[a:b])
                for a, b in zip(starts.tolist(), np.r_[cuts, k.size].tolist(), strict=True)
            ]
        for kw, chunk in groups:
            if kw != self._k:
                self._advance(kw, out)
            # Keep only each event's flat bin index (int32, small and cache friendly): binning
            # the whole window at emission would touch every event twice more.
            t0 = self.origin_us + kw * self.window_us
            idx = _bin_index(
                chunk,
                t0,
                self.bin_us,
                self.n_bins,
                self.sensor_height,
                self.sensor_width,
                *self.downsample,
            )
            self._pending.append(idx.astype(np.int32))
        return out

    def flush(self) -> list[Window]:
        """Emit the pending window if it has events (end of stream); later events start after it."""
        if not self._pending:
            return []
        out = [self._window(self._k, self._pending)]
        self._k, self._pending = self._k + 1, []
        return out
