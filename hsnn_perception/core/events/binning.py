"""Cutting event streams into time bins and fixed-length windows, on EVENT time only.

Wall-clock time never decides which bin an event goes to: replaying a recording at any speed,
or a slow consumer, gives the same frames as live capture.

Layout of binned frames: ``(n_bins, 2, height // fy, width // fx)`` ``uint16`` event counts,
channel 0 = off events (``p == 0``), channel 1 = on events (``p == 1``). Counts saturate at
65535 instead of wrapping. Spatial downsampling here is integer pooling only (pixel ``(y, x)``
goes to ``(y // fy, x // fx)``; trailing rows/columns that do not fill a whole block are
dropped); other geometries are mapped by ``hsnn_perception.core.events.filters`` first.

``EventWindower`` runs compiled (``fast_bin``: one pass per packet to check it and place it in
time, one to count it) where numba is installed, else in numpy; both share every rule of the
windowing (ranges, holding, re-origin) in the one class, which is why this module is a little
over 500 lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from hsnn_perception.core.errors import EventError
from hsnn_perception.core.events.codecs import EVENT_DTYPE

_U16_MAX = np.iinfo(np.uint16).max


def _pick_engine(engine: str) -> str:
    """``"auto"``: the compiled windower where numba is installed, else numpy."""
    if engine not in ("auto", "numba", "numpy"):
        raise BinningError(f"engine must be 'auto', 'numba' or 'numpy', not {engine!r}")
    if engine == "numpy":
        return "numpy"
    try:
        import numba  # noqa: F401
    except ImportError:
        if engine == "numba":
            raise BinningError("engine='numba' but numba is not installed") from None
        return "numpy"
    return "numba"


class BinningError(EventError, ValueError):
    """Events or binning parameters are inconsistent (names the offending value)."""


@dataclass(frozen=True)
class Window:
    """One window of ``T`` bins: ``[t_start_us, t_end_us)``, frames ``(T, 2, h, w)`` uint16."""

    window_id: int
    t_start_us: int
    t_end_us: int
    frames: NDArray[Any]
    n_events: int


def _check_events(events: NDArray[Any]) -> None:
    if not isinstance(events, np.ndarray) or events.dtype != EVENT_DTYPE or events.ndim != 1:
        raise BinningError("events must be a 1-D array of EVENT_DTYPE")


def _check_positive(**kw: int) -> None:
    for name, v in kw.items():
        if int(v) != v or v < 1:
            raise BinningError(f"{name} must be a positive integer, got {v!r}")


def _validate(events: NDArray[Any], height: int, width: int) -> None:
    """Raise before any state changes if events do not fit the sensor geometry."""
    _check_events(events)
    if events.size:
        xmax, ymax, pmax = (int(events[f].max()) for f in ("x", "y", "p"))
        _check_geometry(xmax, ymax, pmax, height, width)


def _check_geometry(xmax: int, ymax: int, pmax: int, height: int, width: int) -> None:
    if xmax >= width or ymax >= height:
        raise BinningError(
            f"events beyond the {width}x{height} sensor (max x={xmax}, max y={ymax}); "
            "wrong sensor geometry or missing crop/downsample filter"
        )
    if pmax > 1:
        raise BinningError(f"polarity must be 0 or 1, got {pmax}")


def _bin_counts(
    events: NDArray[Any],
    t_start_us: int,
    bin_us: int,
    n_bins: int,
    height: int,
    width: int,
    fy: int,
    fx: int,
) -> tuple[NDArray[Any], int]:
    """Flat int64 counts of shape ``(n_bins, 2, height // fy, width // fx)`` and events used.

    Events must have passed :func:`_validate`.
    """
    oh, ow = height // fy, width // fx
    size = n_bins * 2 * oh * ow
    idx = _bin_index(events, t_start_us, bin_us, n_bins, height, width, fy, fx)
    return np.bincount(idx, minlength=size), int(idx.size)


def _bin_index(
    events: NDArray[Any],
    t_start_us: int,
    bin_us: int,
    n_bins: int,
    height: int,
    width: int,
    fy: int,
    fx: int,
) -> NDArray[Any]:
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
    events: NDArray[Any],
    t_start_us: int,
    bin_us: int,
    n_bins: int,
    height: int,
    width: int,
    downsample: tuple[int, int] = (1, 1),
) -> NDArray[Any]:
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


# Event times beyond this are refused before any arithmetic: window indices stay far from int64
# overflow whatever the origin (sensor times are ~2^51 us even as Unix time).
MAX_ABS_TIME_US = 1 << 62


def _check_times(tmin: int, tmax: int) -> None:
    if max(-tmin, tmax) > MAX_ABS_TIME_US:
        raise BinningError(f"event time {tmin}..{tmax} us beyond +-2^62 us")


class EventWindower:
    """Cuts a sorted event stream into windows of ``n_bins`` bins of ``bin_us`` (event time).

    Window ``k`` covers ``[origin + k*T*bin, origin + (k+1)*T*bin)``; ``origin_us`` defaults to
    the first event's time floored to a multiple of the window length. A window is emitted by
    :meth:`push` once an event at or after its end arrives (so it is complete); :meth:`flush`
    emits the pending one. Empty windows between two events are emitted (the SNN must see the
    silence) up to ``max_gap_windows`` in a row. Within one packet events may be unsorted. No
    window before the one holding the first event is emitted, even with an explicit ``origin_us``.

    Time that jumps (docs/events.md, "Event time that heals"): an event is *in range* from the
    pending window to ``max_gap_windows + 1`` windows after it. Events before it are dropped and
    counted in ``late_events``, events after it in ``out_of_range_events``. A packet with no event
    in range is held, not used: if ``heal_packets`` such packets in a row agree with each other
    (each starts no earlier than one window before the previous one's last event and no later
    than ``max_gap_windows + 1`` windows after it), the stream has moved (a restarted driver, a
    new recording): the pending window is emitted, the windower re-origins at the held stream
    (window ids go on from the last one, so ids never repeat or leave gaps) and the held packets
    are used. A packet with events in range first discards what was held (counted as late or out
    of range): one wild packet, or random ones, never move the windows. :meth:`flush` takes a
    held stream as it is (the end of a stream must not be lost).

    Memory is bounded: the pending window's events are kept as flat bin indices until they are
    as many as the window has bins, then folded into fixed-size counts; at most ``heal_packets``
    packets are held.
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
        heal_packets: int = 3,
        engine: str = "auto",
    ) -> None:
        _check_positive(
            bin_us=bin_us,
            n_bins=n_bins,
            sensor_height=sensor_height,
            sensor_width=sensor_width,
            out_height=out_height,
            out_width=out_width,
            heal_packets=heal_packets,
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
        self.heal_packets = int(heal_packets)
        self.late_events = 0
        self.out_of_range_events = 0
        self.skipped_windows = 0
        self.windows_emitted = 0
        self.reorigins = 0
        self._started = False  # no window before the first event is ever emitted
        self._k = 0  # index of the pending window
        self._size = int(np.prod(self._shape()))
        # The pending window's events: flat bin indices per packet (int32, counted once when the
        # window is emitted: counting every packet into a full (T, 2, h, w) array would cost more
        # than the events), folded into ``_counts`` once they are as many as the window has bins.
        self._pending: list[NDArray[Any]] = []
        self._pending_len = 0
        self._counts: NDArray[Any] | None = None
        self._pending_n = 0
        self._touched = False  # an event (even one cropped away) fell in the pending window
        self._held: list[NDArray[Any]] = []  # packets of a stream that may have moved
        self._held_last = 0
        self._payload_maps: Any = None  # push_mono's lookup tables (fused.payload_maps)
        self.engine = _pick_engine(engine)
        if self.engine == "numba":
            from hsnn_perception.core.events import fast_bin

            self._fast: Any = fast_bin
            fy, fx = self.downsample
            self._ymap = fast_bin.pixel_map(self.sensor_height, fy, self.out_height)
            self._xmap = fast_bin.pixel_map(self.sensor_width, fx, self.out_width)

    @property
    def pending_window_id(self) -> int:
        """Index of the window now being filled."""
        return self._k

    @property
    def held_packets(self) -> int:
        """Packets held while the windower decides whether the stream moved."""
        return len(self._held)

    def _shape(self) -> tuple[int, int, int, int]:
        return (self.n_bins, 2, self.out_height, self.out_width)

    def _emit_pending(self) -> Window:
        k = self._k
        assert self.origin_us is not None
        t0 = self.origin_us + k * self.window_us
        counts = self._counts
        if self._pending:
            idx = self._pending[0] if len(self._pending) == 1 else np.concatenate(self._pending)
            more = np.bincount(idx, minlength=self._size)
            counts = more if counts is None else counts + more
        if counts is None:
            frames = np.zeros(self._shape(), dtype=np.uint16)
        elif counts.dtype == np.uint16:  # the compiled path's counts, saturated already
            frames = counts.reshape(self._shape())
        else:
            frames = np.minimum(counts, _U16_MAX).astype(np.uint16).reshape(self._shape())
        n = self._pending_n
        self._pending, self._pending_len, self._counts = [], 0, None
        self._pending_n, self._touched = 0, False
        self.windows_emitted += 1
        return Window(k, t0, t0 + self.window_us, frames, n)

    def _silent(self, k: int) -> Window:
        assert self.origin_us is not None
        t0 = self.origin_us + k * self.window_us
        self.windows_emitted += 1
        return Window(k, t0, t0 + self.window_us, np.zeros(self._shape(), dtype=np.uint16), 0)

    def _add(self, idx: NDArray[Any]) -> None:
        self._pending.append(idx.astype(np.int32))
        self._pending_len += idx.size
        self._pending_n += int(idx.size)
        self._touched = True
        if self._pending_len >= self._size:  # fold: memory stays one window's worth
            idx = np.concatenate(self._pending)
            more = np.bincount(idx, minlength=self._size)
            self._counts = more if self._counts is None else self._counts + more
            self._pending, self._pending_len = [], 0

    def _advance(self, k_new: int, out: list[Window]) -> None:
        """Emit the pending window and the silent ones before ``k_new``; make ``k_new`` pending."""
        out.append(self._emit_pending())
        gap = k_new - self._k - 1
        n_empty = min(gap, self.max_gap_windows)
        for j in range(1, n_empty + 1):
            out.append(self._silent(self._k + j))
        self.skipped_windows += gap - n_empty
        self._k = k_new

    @property
    def _origin(self) -> int:
        """The origin, once the first packet has set it (every caller runs after that)."""
        assert self.origin_us is not None
        return self.origin_us

    def _index(self, events: NDArray[Any]) -> NDArray[Any]:
        k: NDArray[Any] = (events["t"] - np.int64(self._origin)) // self.window_us
        return k

    def _in_range(self, k: NDArray[Any]) -> NDArray[Any]:
        return (k >= self._k) & (k <= self._k + self.max_gap_windows + 1)

    def push(self, events: NDArray[Any]) -> list[Window]:
        """Add a packet of events; return the windows it completed, oldest first."""
        if self.engine == "numba":
            return self._push_compiled(events)
        _validate(events, self.sensor_height, self.sensor_width)
        if events.size == 0:
            return []
        t = events["t"]
        tmin, tmax = int(t.min()), int(t.max())
        _check_times(tmin, tmax)
        if self.origin_us is None:
            self.origin_us = (tmin // self.window_us) * self.window_us
        k = self._index(events)
        if not self._started:
            self._k, self._started = int(k.min()), True
        in_range = self._in_range(k)
        if not in_range.any():
            return self._hold(events, tmin, tmax)
        self._discard_held()
        return self._accept(events, k, in_range)

    def _push_compiled(self, events: NDArray[Any]) -> list[Window]:
        """``push`` in one compiled pass over the packet (checks, time range, where each event
        falls) and one that counts the events into the window they belong to."""
        _check_events(events)
        if events.size == 0:
            return []
        cols = (events["t"], events["x"], events["y"], events["p"])
        known = self.origin_us is not None and self._started
        lo, hi = self._range_times() if known else (0, 0)
        xmax, ymax, pmax, tmin, tmax, late, after, ordered = self._fast.packet_scan(*cols, lo, hi)
        _check_geometry(xmax, ymax, pmax, self.sensor_height, self.sensor_width)
        _check_times(tmin, tmax)
        if self.origin_us is None:
            self.origin_us = (tmin // self.window_us) * self.window_us
        if not self._started:
            self._k, self._started = (tmin - self.origin_us) // self.window_us, True
        if not known:  # the range was not known before this packet: classify again
            lo, hi = self._range_times()
            *_, late, after, ordered = self._fast.packet_scan(*cols, lo, hi)
        if late + after == events.size:
            return self._hold(events, tmin, tmax)
        self._discard_held()
        if late or after or not ordered:  # the general path sorts and filters first
            k = self._index(events)
            return self._accept(events, k, self._in_range(k))
        out: list[Window] = []
        self._bin_sorted(events, out)
        return out

    def push_mono(
        self,
        raw: NDArray[Any],
        time_base_ns: int,
        is_bigendian: bool = False,
        strict: bool = True,
        drops: Any = None,
    ) -> list[Window]:
        """``push(decode_packet(raw, "mono", time_base_ns, sensor width, sensor height, ...))``
        without the events in between: compiled, the words are decoded as they are counted
        (``fused.py``). Same windows, counters, decode errors and drop counts (``drops``) as
        decoding first."""
        from hsnn_perception.core.events.codecs import checked_payload, decode_packet

        h, w = self.sensor_height, self.sensor_width
        raw = checked_payload(raw, "mono", time_base_ns, w, h)
        if self.engine == "numba":  # fused.py imports numba
            from hsnn_perception.core.events import fused

            maps = self._payload_maps = self._payload_maps or fused.payload_maps(self, None, w, h)
            decode = {"is_bigendian": is_bigendian, "strict": strict, "drops": drops}
            limit = MAX_ABS_TIME_US
            got = (
                None
                if maps is None
                else fused.push_payload(
                    self, maps, raw, "mono", time_base_ns, w, h, **decode, time_max_us=limit
                )
            )
            if got is not None:
                return got[2]
        events = decode_packet(
            raw, "mono", time_base_ns, w, h, is_bigendian, strict=strict, drops=drops
        )
        return self.push(events)

    def _range_times(self) -> tuple[int, int]:
        """Event times of the range: from the pending window's start to the end of the last
        window ``max_gap_windows + 1`` after it."""
        assert self.origin_us is not None
        lo = self.origin_us + self._k * self.window_us
        return lo, lo + (self.max_gap_windows + 2) * self.window_us

    def _bin_sorted(self, events: NDArray[Any], out: list[Window]) -> None:
        """Count time-sorted events, all in range, window by window (compiled)."""
        assert self.origin_us is not None
        t, x, y, p = events["t"], events["x"], events["y"], events["p"]
        i, n = 0, events.size
        while i < n:
            kw = (int(t[i]) - self.origin_us) // self.window_us
            if kw != self._k:
                self._advance(kw, out)
            if self._counts is None:  # uint16, saturated as it counts: handed out as the frames
                self._counts = np.zeros(self._size, np.uint16)
            t0 = self.origin_us + kw * self.window_us
            counts = self._counts.reshape(self._shape())
            i, binned = self._fast.bin_window(
                t, x, y, p, i, t0, self.bin_us, self.n_bins, self._ymap, self._xmap, counts
            )
            self._pending_n += binned
            self._touched = True

    def _accept(
        self, events: NDArray[Any], k: NDArray[Any], in_range: NDArray[Any]
    ) -> list[Window]:
        if not in_range.all():
            late = k < self._k
            n_late = int(np.count_nonzero(late))
            self.late_events += n_late
            self.out_of_range_events += int(k.size - n_late - np.count_nonzero(in_range))
            events, k = events[in_range], k[in_range]
        out: list[Window] = []
        if self.engine == "numba":  # in time order, the windows come in order too
            t = events["t"]
            if np.any(t[1:] < t[:-1]):
                events = events[np.argsort(t, kind="stable")]
            self._bin_sorted(events, out)
            return out
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
            t0 = self._origin + kw * self.window_us
            self._add(
                _bin_index(
                    chunk,
                    t0,
                    self.bin_us,
                    self.n_bins,
                    self.sensor_height,
                    self.sensor_width,
                    *self.downsample,
                )
            )
        return out

    def _hold(self, events: NDArray[Any], tmin: int, tmax: int) -> list[Window]:
        """A packet with no event in range: held until ``heal_packets`` agree (then re-origin)."""
        if self._held and not (
            self._held_last - self.window_us
            <= tmin
            <= self._held_last + (self.max_gap_windows + 1) * self.window_us
        ):
            self._discard_held()  # not one stream with what was held: start over from this one
        if not self._held:
            self._held_last = tmax
        self._held.append(events)
        self._held_last = max(self._held_last, tmax)
        if len(self._held) >= self.heal_packets:
            return self._reorigin()
        return []

    def _discard_held(self) -> None:
        for events in self._held:
            late = int(np.count_nonzero(self._index(events) < self._k))
            self.late_events += late
            self.out_of_range_events += events.size - late
        self._held = []

    def _reorigin(self) -> list[Window]:
        """The held packets are where the stream is now: windows go on from there."""
        held, self._held = self._held, []
        out: list[Window] = []
        new_id = self._k
        if self._touched:
            out.append(self._emit_pending())
            new_id += 1
        k_first = int((int(held[0]["t"].min()) - self._origin) // self.window_us)
        if k_first > new_id:  # forward: the silence is shown as after any gap, then skipped
            n_empty = min(k_first - new_id, self.max_gap_windows)
            for j in range(n_empty):
                out.append(self._silent(new_id + j))
            new_id += n_empty
            self.skipped_windows += k_first - new_id
        self.origin_us = self._origin + (k_first - new_id) * self.window_us  # keeps the phase
        self._k = new_id
        self.reorigins += 1
        for events in held:
            k = self._index(events)
            in_range = self._in_range(k)
            if in_range.any():
                out += self._accept(events, k, in_range)
            else:  # not in range even after the move (the held stream's own jitter)
                late = int(np.count_nonzero(k < self._k))
                self.late_events += late
                self.out_of_range_events += events.size - late
        return out

    def flush(self) -> list[Window]:
        """End of stream: take a held stream as it is, then emit the pending window if it has
        events; later events start after it."""
        out = self._reorigin() if self._held else []
        if not self._touched:
            return out
        out.append(self._emit_pending())
        self._k += 1
        return out
