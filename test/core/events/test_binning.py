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


# ---- the compiled windower against the numpy one ------------------------------------------------


@st.composite
def rough_streams(draw):
    """Packets as a stream really delivers them, rough edges included: mostly sorted and
    advancing, with unsorted packets, late events, jumps ahead and back (restarts), far-away
    wild packets, empty packets and long silences."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    t = int(draw(st.integers(-10_000, 10_000)))
    packets = []
    for _ in range(draw(st.integers(1, 25))):
        kind = draw(st.sampled_from(["ok"] * 6 + ["unsorted", "late", "jump", "back", "wild"]))
        n = int(draw(st.integers(0, 40)))
        if kind == "jump":
            t += int(rng.integers(100, 5_000))
        elif kind == "back":
            t -= int(rng.integers(100, 5_000))
        base = t + (1 << 40 if kind == "wild" else 0)
        times = base + np.sort(rng.integers(0, 60, n))
        if kind == "unsorted":
            rng.shuffle(times)
        if kind == "late":
            times[: n // 2] -= int(rng.integers(30, 300))
        packets.append(
            make_events(
                times, rng.integers(0, 10, n), rng.integers(0, 12, n), rng.integers(0, 2, n)
            )
        )
        if kind != "wild":
            t += int(rng.integers(0, 80))
    return packets


@settings(max_examples=80, deadline=None)
@given(
    packets=rough_streams(),
    bin_us=st.integers(1, 30),
    n_bins=st.integers(1, 4),
    gap=st.integers(0, 4),
    heal=st.integers(1, 4),
    out_shape=st.sampled_from([(12, 10), (6, 5), (4, 2), (3, 5)]),
)
def test_compiled_windower_equals_numpy(packets, bin_us, n_bins, gap, heal, out_shape) -> None:
    """The compiled engine emits the numpy engine's windows (ids, times, frames, event counts)
    packet by packet, and keeps the same counters, on streams with every rough edge."""
    make = lambda engine: EventWindower(  # noqa: E731
        bin_us, n_bins, 12, 10, *out_shape, max_gap_windows=gap, heal_packets=heal, engine=engine
    )
    fast, slow = make("numba"), make("numpy")
    assert (fast.engine, slow.engine) == ("numba", "numpy")
    counters = ("late_events", "out_of_range_events", "skipped_windows", "reorigins")
    for packet in [*packets, None]:
        got = fast.flush() if packet is None else fast.push(packet)
        want = slow.flush() if packet is None else slow.push(packet)
        assert [(w.window_id, w.t_start_us, w.n_events) for w in got] == [
            (w.window_id, w.t_start_us, w.n_events) for w in want
        ]
        for a, b in zip(got, want, strict=True):
            assert a.frames.dtype == np.uint16 and a.frames.shape == b.frames.shape
            np.testing.assert_array_equal(a.frames, b.frames)
        assert [getattr(fast, c) for c in counters] == [getattr(slow, c) for c in counters]
        assert fast.held_packets == slow.held_packets


def test_compiled_windower_saturates_and_refuses_like_numpy() -> None:
    n = 70_000
    for engine in ("numba", "numpy"):
        w = EventWindower(10, 1, 2, 2, 2, 2, origin_us=0, engine=engine)
        w.push(make_events(np.zeros(n, np.int64), np.zeros(n), np.zeros(n), np.ones(n)))
        (window,) = w.flush()
        assert window.frames[0, 1, 0, 0] == 65535 and window.n_events == n
        with pytest.raises(BinningError, match="beyond the 2x2 sensor"):
            w.push(make_events([5], [2], [0], [0]))
        with pytest.raises(BinningError, match="polarity"):
            w.push(make_events([5], [0], [0], [2]))
        with pytest.raises(BinningError, match="beyond \\+-2\\^62"):
            w.push(make_events([-(1 << 62) - 1], [0], [0], [0]))
    with pytest.raises(BinningError, match="engine must be"):
        EventWindower(10, 1, 2, 2, 2, 2, engine="gpu")


def mono_payload(events: np.ndarray, rng: np.random.Generator, beyond: bool) -> tuple[int, bytes]:
    """Mono words of ``events`` in their order (unsorted and late ones stay so: the decoder
    drops what goes backwards), some pushed beyond the sensor when ``beyond``."""
    t = events["t"].astype(np.int64) + (1 << 30)  # mono times are unsigned
    base = int(t.min()) * 1000 if t.size else 0
    x = events["x"].astype(np.uint64)
    if beyond and x.size:
        x[rng.random(x.size) < 0.2] = 10 + rng.integers(0, 50)
    words = (
        (events["p"].astype(np.uint64) << np.uint64(63))
        | (events["y"].astype(np.uint64) << np.uint64(48))
        | (x << np.uint64(32))
        | ((t * 1000 - base).astype(np.uint64) + rng.integers(0, 1000, t.size).astype(np.uint64))
    )
    return base, words.astype("<u8").tobytes()


@settings(max_examples=60, deadline=None)
@given(
    packets=rough_streams(),
    bin_us=st.integers(1, 30),
    n_bins=st.integers(1, 4),
    gap=st.integers(0, 4),
    strict=st.booleans(),
    beyond=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_push_mono_equals_decode_then_push(
    packets, bin_us, n_bins, gap, strict, beyond, seed
) -> None:
    """The fused mono path (words decoded as they are windowed) gives what decoding first and
    pushing the events gives: windows, counters, decode errors and drop counts."""
    from collections import Counter

    from hsnn_perception.core.events.codecs import EventDecodeError, decode_packet

    rng = np.random.default_rng(seed)
    fused = EventWindower(bin_us, n_bins, 12, 10, 6, 5, max_gap_windows=gap, engine="numba")
    plain = EventWindower(bin_us, n_bins, 12, 10, 6, 5, max_gap_windows=gap, engine="numpy")
    counters = ("late_events", "out_of_range_events", "skipped_windows", "reorigins")
    got_drops: Counter = Counter()
    want_drops: Counter = Counter()
    for events in packets:
        base, raw = mono_payload(events, rng, beyond)
        try:
            got = fused.push_mono(np.frombuffer(raw, np.uint8), base, False, strict, got_drops)
        except EventDecodeError as exc:
            got = str(exc)
        try:
            decoded = decode_packet(raw, "mono", base, 10, 12, strict=strict, drops=want_drops)
            want = plain.push(decoded)
        except EventDecodeError as exc:
            want = str(exc)
        if isinstance(want, str):
            assert got == want
            continue
        assert [(w.window_id, w.t_start_us, w.n_events) for w in got] == [
            (w.window_id, w.t_start_us, w.n_events) for w in want
        ]
        for a, b in zip(got, want, strict=True):
            np.testing.assert_array_equal(a.frames, b.frames)
        assert [getattr(fused, c) for c in counters] == [getattr(plain, c) for c in counters]
        assert got_drops == want_drops
    assert [w.n_events for w in fused.flush()] == [w.n_events for w in plain.flush()]
