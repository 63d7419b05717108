import numpy as np
import pytest

from hsnn_perception.core.events.synthetic import SyntheticGestures
from hsnn_perception.core.sources.streams import (
    Pacer,
    WindowFlowControl,
    WindowWorkMeter,
    synthetic_packets,
)


def test_packets_cover_the_samples_and_carry_labels():
    gen = SyntheticGestures(height=32, width=32, seed=1)
    packets = list(synthetic_packets(gen, 5000, n_samples=3))
    assert len(packets) == 3 * 160_000 // 5000
    assert [p.t_start_us for p in packets] == list(range(0, 480_000, 5000))
    labels = [span for p in packets for span in p.labels]
    assert [(s.start_us, s.end_us) for s in labels] == [
        (0, 160_000),
        (160_000, 320_000),
        (320_000, 480_000),
    ]
    reference = [events for events, *_ in gen.stream(3)]
    joined = np.concatenate([p.events for p in packets])
    np.testing.assert_array_equal(joined, np.concatenate(reference))
    for p in packets:
        assert ((p.events["t"] >= p.t_start_us) & (p.events["t"] < p.t_end_us)).all()


def test_pacer_releases_on_sensor_time():
    now = [100.0]
    pacer = Pacer(2.0, clock=lambda: now[0])
    assert pacer.due(10_000)  # first packet starts the clock
    assert not pacer.due(30_000)  # 20 ms of sensor time needs 10 ms of wall time at 2x
    now[0] += 0.011
    assert pacer.due(30_000)


def test_pacer_speed_zero_never_waits():
    pacer = Pacer(0.0, clock=lambda: 0.0)
    assert all(pacer.due(t) for t in range(0, 10**7, 10**6))


def test_bad_arguments():
    with pytest.raises(ValueError):
        Pacer(-1)
    with pytest.raises(ValueError):
        list(synthetic_packets(SyntheticGestures(32, 32), 0, 1))


W = 160_000  # window length (us)


def _flow(max_windows: int = 3, stall_s: float = 5.0):
    now = [0.0]
    return WindowFlowControl(W, max_windows, stall_s, clock=lambda: now[0]), now


def test_flow_control_holds_back_while_windows_are_unclassified():
    flow, _ = _flow(max_windows=3)
    for k in range(3):
        assert flow.may_publish()
        flow.published(np.array([k * W + 10, k * W + 5000]))  # two events in window k
    assert flow.pending == 3 and not flow.may_publish()
    flow.done(0)  # window 0 classified
    assert flow.pending == 2 and flow.may_publish()
    flow.published(np.array([3 * W - 1, 3 * W]))  # a packet across a boundary: windows 2 and 3
    assert flow.pending == 3 and not flow.may_publish()
    assert flow.lost == 0 and flow.stalls == 0


def test_flow_control_settles_older_windows_with_a_later_classification():
    """Windows are classified in order: one left behind was lost in the pipeline."""
    flow, _ = _flow(max_windows=4)
    flow.published(np.arange(4) * W + 7)
    flow.done(2 * W + 999)  # any time in window 2 names window 2
    assert flow.pending == 1 and flow.lost == 2
    flow.done(10 * W)  # a window never published (e.g. from another source) settles the rest
    assert flow.pending == 0 and flow.lost == 3


def test_flow_control_gives_up_the_oldest_window_after_a_stall():
    flow, now = _flow(max_windows=2, stall_s=5.0)
    flow.published(np.array([0, W]))
    assert not flow.may_publish()
    now[0] = 4.9
    assert not flow.may_publish()
    now[0] = 5.1
    assert flow.may_publish() and flow.stalls == 1 and flow.pending == 1
    flow.published(np.array([2 * W]))
    now[0] = 6.0
    assert not flow.may_publish()  # the stall clock restarted at the give-up
    flow.done(W)  # progress again
    now[0] = 6.1
    assert flow.may_publish() and flow.stalls == 1


def test_flow_control_ignores_packets_without_events_and_checks_arguments():
    flow, _ = _flow(max_windows=2)
    flow.published(np.array([], np.int64))
    assert flow.pending == 0
    for kwargs, match in (
        ({"window_us": 0}, "window_us"),
        ({"max_windows": 1}, "max_windows"),
        ({"stall_s": 0}, "stall_s"),
    ):
        args = {"window_us": W, "max_windows": 2, "stall_s": 1.0, **kwargs}
        with pytest.raises(ValueError, match=match):
            WindowFlowControl(**args)


def test_window_work_is_spread_over_the_windows_of_each_packet():
    from hsnn_perception.core.sources.streams import WindowWorkMeter

    meter = WindowWorkMeter(W)
    assert meter.add(np.array([], np.int64), 0, 1.0) == []  # before the first event: no window
    t0 = 5 * W + 100  # the first event's window is the SNN node's window 0
    assert meter.add(np.array([t0, t0 + 10]), 5 * W, 0.002, 4e-6) == []
    # A packet across a boundary: 1 event in window 5, 3 in window 6; window 5 is not done yet.
    assert meter.add(np.array([6 * W - 1, 6 * W, 6 * W + 1, 6 * W + 2]), 6 * W - 5, 0.004) == []
    done = meter.add(np.array([], np.int64), 7 * W, 0.001)  # an empty packet in window 7
    assert [(w.window_id, w.start_us, w.events) for w in done] == [(0, 5 * W, 3), (1, 6 * W, 3)]
    assert done[0].seconds == pytest.approx(0.002 + 0.001) and done[1].seconds == pytest.approx(
        0.003
    )
    assert np.isnan(done[0].energy_j)  # one packet had no measurement: the window has none
    rest = meter.flush()
    assert [(w.window_id, w.events, w.seconds) for w in rest] == [(2, 0, pytest.approx(0.001))]
    assert meter.flush() == []
    with pytest.raises(ValueError, match="window_us"):
        WindowWorkMeter(0)


def test_window_bookkeeping_of_sorted_packets_matches_np_unique():
    """Sorted packets take the bisection path; unsorted ones np.unique: the same windows."""
    from hsnn_perception.core.sources.streams import _window_counts

    rng = np.random.default_rng(3)
    for _ in range(50):
        t = np.sort(rng.integers(0, 5 * W, int(rng.integers(1, 400))))
        for times in (t, rng.permutation(t)):
            index, counts = _window_counts(times, W)
            want = np.unique(times // W, return_counts=True)
            np.testing.assert_array_equal(index, want[0])
            np.testing.assert_array_equal(counts, want[1])


def test_spans_of_undecoded_packets_count_their_windows():
    flow = WindowFlowControl(W, max_windows=3)
    flow.published_span(W + 5, W + 9)
    assert flow.pending == 1
    flow.published_span(2 * W - 1, 3 * W)  # across a boundary: windows 1 (already), 2, 3
    assert flow.pending == 3 and not flow.may_publish()
    meter = WindowWorkMeter(W)
    assert meter.add_span(0, 0, 0, 0, 1.0) == []  # nothing before the first event
    assert meter.add_span(W, W + 10, 5, W, 0.002) == []
    assert meter.add_span(2 * W - 50, 2 * W + 49, 100, 2 * W - 60, 0.004) == []
    done = meter.add_span(3 * W, 3 * W, 1, 3 * W, 0.0)
    assert [(w.window_id, w.events) for w in done] == [(0, 55), (1, 50)]
    assert done[0].seconds == pytest.approx(0.004)
    assert done[1].seconds == pytest.approx(0.002)


def test_pacer_progress_says_whether_playback_keeps_up():
    now = [10.0]
    pacer = Pacer(1.0, clock=lambda: now[0])
    assert pacer.progress(0) == (0.0, 0.0)
    assert pacer.due(1_000_000)
    now[0] = 11.0
    assert pacer.progress(2_000_000) == pytest.approx((1.0, 0.0))
    now[0] = 12.0  # the packet ending at 2 s of sensor time goes out a second late
    assert pacer.progress(2_000_000) == pytest.approx((0.5, 1.0))
