"""Tests of event-time binning and windowing (hsnn_perception.core.events.binning)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hsnn_perception.core.events.binning import BinningError, EventWindower, Window, bin_events
from hsnn_perception.core.events.codecs import EVENT_DTYPE, empty_events, make_events


def reference_bins(events, t_start, bin_us, n_bins, height, width, fy, fx) -> np.ndarray:
    """Per-event loop, the obvious definition the vectorised code must match."""
    out = np.zeros((n_bins, 2, height // fy, width // fx), dtype=np.int64)
    for t, x, y, p in events.tolist():
        b = (t - t_start) // bin_us
        if 0 <= b < n_bins and y // fy < height // fy and x // fx < width // fx:
            out[b, p, y // fy, x // fx] += 1
    return np.minimum(out, 65535).astype(np.uint16)


@st.composite
def streams(draw, height: int = 12, width: int = 10, span: int = 2_000):
    n = draw(st.integers(0, 200))
    t = np.sort(np.asarray(draw(st.lists(st.integers(0, span), min_size=n, max_size=n))))
    xs = draw(st.lists(st.integers(0, width - 1), min_size=n, max_size=n))
    ys = draw(st.lists(st.integers(0, height - 1), min_size=n, max_size=n))
    ps = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))
    return make_events(t.astype(np.int64), xs, ys, ps)


@settings(max_examples=40, deadline=None)
@given(
    events=streams(),
    t_start=st.integers(-500, 1500),
    bin_us=st.integers(1, 400),
    n_bins=st.integers(1, 6),
    down=st.sampled_from([(1, 1), (2, 2), (3, 4), (12, 10), (5, 3)]),
)
def test_bin_events_matches_per_event_definition(events, t_start, bin_us, n_bins, down) -> None:
    got = bin_events(events, t_start, bin_us, n_bins, 12, 10, downsample=down)
    want = reference_bins(events, t_start, bin_us, n_bins, 12, 10, *down)
    assert got.dtype == np.uint16
    np.testing.assert_array_equal(got, want)


def test_channels_are_off_then_on_and_window_is_half_open() -> None:
    ev = make_events([100, 199, 200, 99, 300], [1, 2, 3, 4, 5], [0, 0, 0, 0, 0], [0, 1, 1, 1, 0])
    frames = bin_events(ev, 100, 50, 2, 4, 8)
    assert frames.shape == (2, 2, 4, 8)
    assert frames[0, 0, 0, 1] == 1  # t=100, off
    assert frames[1, 1, 0, 2] == 1  # t=199, on, second bin
    assert frames.sum() == 2  # t=200 (end), t=99 (before) and t=300 are outside


def test_counts_saturate_instead_of_wrapping() -> None:
    n = 70_000
    ev = make_events(np.zeros(n, dtype=np.int64), np.zeros(n), np.zeros(n), np.ones(n))
    assert bin_events(ev, 0, 10, 1, 2, 2)[0, 1, 0, 0] == 65535


def test_bin_events_rejects_bad_input() -> None:
    ev = make_events([0], [128], [0], [0])
    with pytest.raises(BinningError, match="beyond the 128x128 sensor"):
        bin_events(ev, 0, 10, 1, 128, 128)
    with pytest.raises(BinningError, match="bin_us"):
        bin_events(empty_events(), 0, 0, 1, 4, 4)
    with pytest.raises(BinningError, match="EVENT_DTYPE"):
        bin_events(np.zeros(3), 0, 1, 1, 4, 4)
    with pytest.raises(BinningError, match="polarity"):
        bin_events(make_events([0], [0], [0], [3]), 0, 10, 1, 4, 4)


def collect(windower: EventWindower, packets) -> list[Window]:
    out: list[Window] = []
    for p in packets:
        out += windower.push(p)
    return out + windower.flush()


@settings(max_examples=30, deadline=None)
@given(
    events=streams(span=5_000),
    cuts=st.lists(st.integers(0, 200), max_size=6),
    bin_us=st.integers(1, 300),
    n_bins=st.integers(1, 4),
)
def test_windower_equals_binning_whole_stream(events, cuts, bin_us, n_bins) -> None:
    """However the stream is cut into packets, windows equal bin_events on the whole stream."""
    bounds = sorted({0, events.size, *[c for c in cuts if c < events.size]})
    packets = [events[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    w = EventWindower(bin_us, n_bins, 12, 10, 6, 5, max_gap_windows=10**6)
    windows = collect(w, packets)
    if events.size == 0:
        assert windows == []
        return
    win = bin_us * n_bins
    origin = (int(events["t"][0]) // win) * win
    assert w.origin_us == origin
    ids = [x.window_id for x in windows]
    assert ids == list(range(ids[0], ids[0] + len(ids)))  # no gaps with a huge max_gap
    assert windows[0].t_start_us <= events["t"][0] < windows[-1].t_end_us
    for x in windows:
        assert x.t_start_us == origin + x.window_id * win and x.t_end_us == x.t_start_us + win
        want = bin_events(events, x.t_start_us, bin_us, n_bins, 12, 10, (2, 2))
        np.testing.assert_array_equal(x.frames, want)
        assert x.n_events == int(want.sum())
    assert sum(x.n_events for x in windows) == events.size
    assert w.late_events == 0 and w.skipped_windows == 0


def test_window_emitted_only_when_an_event_reaches_its_end() -> None:
    w = EventWindower(10, 4, 4, 4, 4, 4, origin_us=0)
    assert w.push(make_events([5, 39], [0, 1], [0, 0], [1, 1])) == []
    out = w.push(make_events([40], [2], [0], [0]))
    assert [x.window_id for x in out] == [0]
    assert out[0].n_events == 2 and out[0].frames.shape == (4, 2, 4, 4)
    assert out[0].frames[0, 1, 0, 0] == 1 and out[0].frames[3, 1, 0, 1] == 1
    assert [x.window_id for x in w.flush()] == [1]
    assert w.flush() == []


def test_silent_gap_windows_then_jump() -> None:
    w = EventWindower(10, 2, 4, 4, 2, 2, max_gap_windows=3)  # window = 20 us
    w.push(make_events([105], [0], [0], [0]))  # origin 100, window 0
    # 10 windows on: beyond max_gap_windows + 1, so held until the stream confirms it...
    assert w.push(make_events([100 + 20 * 10 + 1], [0], [0], [0])) == []
    assert w.held_packets == 1
    # ... or the stream ends: then it is taken as it is.
    out = w.flush()
    assert [x.window_id for x in out] == [0, 1, 2, 3, 4]
    assert [x.n_events for x in out] == [1, 0, 0, 0, 1]
    assert out[4].t_start_us == 300 and w.skipped_windows == 6 and w.reorigins == 1


def test_gap_within_max_gap_windows_is_silence() -> None:
    w = EventWindower(10, 2, 4, 4, 2, 2, max_gap_windows=3)
    w.push(make_events([105], [0], [0], [0]))
    out = w.push(make_events([100 + 20 * 4 + 1], [0], [0], [0]))  # window 4 = 0 + 3 + 1
    assert [x.window_id for x in out] == [0, 1, 2, 3] and w.held_packets == 0


def stream(t0: int, n_packets: int, per_packet_us: int, rng: np.random.Generator, n: int = 30):
    """Sorted random packets of a 16x16 sensor covering [t0, t0 + n_packets * per_packet_us)."""
    out = []
    for i in range(n_packets):
        t = np.sort(rng.integers(t0 + i * per_packet_us, t0 + (i + 1) * per_packet_us, n))
        out.append(
            make_events(t, rng.integers(0, 16, n), rng.integers(0, 16, n), rng.integers(0, 2, n))
        )
    return out


def reference(packets, w_us: int) -> dict[int, np.ndarray]:
    """Frames of each complete window of the concatenated packets, keyed by window start."""
    events = np.concatenate(packets)
    t = events["t"]
    starts = range((int(t.min()) // w_us) * w_us, int(t.max()) - w_us + 1, w_us)
    return {s: bin_events(events, s, 10, 4, 16, 16, (2, 2)) for s in starts}


def windows_by_start(windows) -> dict[int, np.ndarray]:
    return {x.t_start_us: x.frames for x in windows}


def test_one_wild_packet_far_ahead_changes_nothing() -> None:
    rng = np.random.default_rng(3)
    good = stream(1_000, 40, 15, rng)  # 600 us, window 40 us
    wild = make_events([(1 << 62) - 1, (1 << 62) - 1], [1, 2], [1, 2], [0, 1])
    clean = EventWindower(10, 4, 16, 16, 8, 8)
    hit = EventWindower(10, 4, 16, 16, 8, 8)
    want = collect(clean, good)
    got = collect(hit, good[:10] + [wild] + good[10:])
    assert [(x.window_id, x.t_start_us, x.n_events) for x in got] == [
        (x.window_id, x.t_start_us, x.n_events) for x in want
    ]
    assert all(np.array_equal(a.frames, b.frames) for a, b in zip(got, want, strict=True))
    assert hit.out_of_range_events == 2 and hit.reorigins == 0 and hit.late_events == 0


def test_restart_at_an_earlier_time_reorigins_within_heal_packets() -> None:
    rng = np.random.default_rng(4)
    first = stream(500_000, 50, 20, rng)  # a driver that ran for a while
    second = stream(0, 60, 20, rng)  # restarted: its clock starts again at 0
    w = EventWindower(10, 4, 16, 16, 8, 8, heal_packets=3)
    before = []
    for p in first:
        before += w.push(p)
    after = []
    for i, p in enumerate(second):
        out = w.push(p)
        if i < 2:
            assert out == [] and w.held_packets == i + 1  # held, not dropped
        after += out
    after += w.flush()
    assert w.reorigins == 1 and w.late_events == 0 and w.out_of_range_events == 0
    ids = [x.window_id for x in before + after]
    assert ids == list(range(ids[0], ids[0] + len(ids)))  # ids go on: no repeat, no gap
    # Every event of the new stream is in a window, binned as on its own.
    want = reference(second, 40)
    got = windows_by_start(after[1:])  # after[0]: the old stream's last (pending) window
    assert after[0].t_start_us >= 500_000
    for start, frames in want.items():
        np.testing.assert_array_equal(got[start], frames)
    assert sum(x.n_events for x in after[1:]) == sum(p.size for p in second)


def test_jump_ahead_inside_the_range_heals_when_the_stream_stays_behind() -> None:
    rng = np.random.default_rng(5)
    good = stream(0, 80, 10, rng)  # window 40 us: 4 packets per window
    w = EventWindower(10, 4, 16, 16, 8, 8, max_gap_windows=8, heal_packets=3)
    wild = make_events([40 * 9 + 5], [0], [0], [1])  # 9 windows ahead of window 0: in range
    out = []
    for i, p in enumerate(good):
        out += w.push(p)
        if i == 1:
            out += w.push(wild)
    out += w.flush()
    assert w.reorigins == 1
    # The stream was blinded for at most heal_packets packets: every window from the third one
    # on is the reference.
    want = reference(good, 40)
    got = windows_by_start(out)
    for start, frames in want.items():
        if start >= 80:
            np.testing.assert_array_equal(got[start], frames)


@settings(max_examples=25, deadline=None)
@given(
    wild_times=st.lists(st.integers(0, 1 << 42), min_size=1, max_size=200),
    seed=st.integers(0, 2**16),
)
def test_random_packets_blind_for_a_bounded_number_of_packets(wild_times, seed) -> None:
    """Any burst of packets at random times, then a good stream: every window of the good stream
    that starts after its first heal_packets + 1 packets is exactly the reference."""
    rng = np.random.default_rng(seed)
    w = EventWindower(10, 4, 16, 16, 8, 8, heal_packets=3)
    for t in wild_times:
        w.push(make_events([t, t + int(rng.integers(0, 1000))], [0, 1], [0, 1], [0, 1]))
    good = stream(1 << 41, 40, 10, rng)
    out = []
    for p in good:
        out += w.push(p)
    out += w.flush()
    want = reference(good, 40)
    got = windows_by_start(out)
    heal_end = int(good[4]["t"].max())
    for start, frames in want.items():
        if start > heal_end:
            np.testing.assert_array_equal(got[start], frames)
    ids = [x.window_id for x in out]
    assert ids == list(range(ids[0], ids[0] + len(ids))) if ids else True


def test_pending_memory_is_bounded_when_time_stands_still() -> None:
    w = EventWindower(10, 2, 4, 4, 2, 2)  # 16 bins per window
    packet = make_events(np.full(50, 7), np.arange(50) % 4, np.zeros(50), np.ones(50))
    for _ in range(1000):
        assert w.push(packet) == []
        assert w._pending_len < 16 + 50  # folded into fixed-size counts
    (window,) = w.flush()
    assert window.n_events == 50_000
    once = bin_events(packet, 0, 10, 2, 4, 4, (2, 2)).astype(np.int64)
    np.testing.assert_array_equal(window.frames, once * 1000)


def test_late_events_counted_and_dropped() -> None:
    w = EventWindower(10, 1, 4, 4, 4, 4)
    w.push(make_events([100, 115], [0, 0], [0, 0], [0, 0]))  # emits window 0 ([100, 110))
    out = w.push(make_events([105, 116], [1, 1], [1, 1], [1, 1]))
    assert out == [] and w.late_events == 1
    (last,) = w.flush()
    assert last.window_id == 1 and last.n_events == 2


def test_unsorted_packet_is_handled() -> None:
    w = EventWindower(10, 1, 4, 4, 4, 4, origin_us=0)
    out = w.push(make_events([25, 3, 14], [0, 1, 2], [0, 0, 0], [1, 1, 1]))
    assert [(x.window_id, x.n_events) for x in out] == [(0, 1), (1, 1)]
    assert w.late_events == 0


def test_explicit_origin_and_first_window() -> None:
    w = EventWindower(100, 16, 128, 128, 64, 64, origin_us=50)
    out = w.push(make_events([50 + 1600 * 3 + 7, 50 + 1600 * 4], [127, 0], [127, 0], [1, 0]))
    assert [x.window_id for x in out] == [3]  # no silent windows before the first event
    assert out[0].t_start_us == 50 + 1600 * 3 and out[0].frames[0, 1, 63, 63] == 1


def test_windower_rejects_bad_configuration_and_events() -> None:
    with pytest.raises(BinningError, match="does not divide"):
        EventWindower(10, 4, 480, 640, 128, 128)
    with pytest.raises(BinningError, match="max_gap_windows"):
        EventWindower(10, 4, 128, 128, 128, 128, max_gap_windows=-1)
    w = EventWindower(10, 4, 128, 128, 128, 128)
    with pytest.raises(BinningError, match="beyond the 128x128"):
        w.push(make_events([0], [0], [200], [0]))
    assert w.origin_us is None  # a rejected packet leaves no trace
    assert w.push(np.zeros(0, dtype=EVENT_DTYPE)) == []
