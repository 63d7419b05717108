"""Tests of the synthetic DVS gesture generator (hsnn_perception/core/events/synthetic.py)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hsnn_perception.core.events.codecs import EVENT_DTYPE
from hsnn_perception.core.events.synthetic import (
    GESTURE_LABELS,
    DvsParams,
    SyntheticConfigError,
    SyntheticGestures,
    simulate_dvs,
)

QUIET = DvsParams(noise_hz=0.0)


def _reference_dvs(video, times, c_on, c_off, refr):
    """Slow pixel-by-pixel, crossing-by-crossing DVS model written independently of the module."""
    n, h, w = video.shape
    out = []
    for y in range(h):
        for x in range(w):
            ref = video[0, y, x]
            last = -np.inf
            for k in range(1, n):
                l0, l1 = video[k - 1, y, x], video[k, y, x]
                while True:
                    if l1 - ref >= c_on[y, x]:
                        level, pol, c = ref + c_on[y, x], 1, c_on[y, x]
                    elif ref - l1 >= c_off[y, x]:
                        level, pol, c = ref - c_off[y, x], 0, -c_off[y, x]
                    else:
                        break
                    t = times[k - 1] + (times[k] - times[k - 1]) * (level - l0) / (l1 - l0)
                    ref += c
                    if t >= last + refr:
                        out.append((t, x, y, pol))
                        last = t
    return out


def _centroid(events, t0, t1):
    m = (events["t"] >= t0) & (events["t"] < t1)
    return events["x"][m].astype(float).mean(), events["y"][m].astype(float).mean()


# ----------------------------------------------------------------- the DVS pixel model


def test_ramp_up_then_down_gives_interpolated_on_then_off_events():
    video = np.array([0.0, 1.0, 0.0]).reshape(3, 1, 1)
    t, x, y, p = simulate_dvs(video, np.array([0, 1000, 2000]), 0.25, 0.25)
    # 1.0 / 0.25 = 4 crossings each way, at evenly interpolated times
    assert t.tolist() == [250, 500, 750, 1000, 1250, 1500, 1750, 2000]
    assert p.tolist() == [1, 1, 1, 1, 0, 0, 0, 0]
    assert x.tolist() == [0] * 8 and y.tolist() == [0] * 8


def test_refractory_period_drops_crossings_but_reference_follows():
    video = np.array([0.0, 1.0, 1.0]).reshape(3, 1, 1)
    t, _, _, p = simulate_dvs(video, np.array([0, 1000, 2000]), 0.25, 0.25, refractory_us=300)
    assert t.tolist() == [250, 750]  # 500 and 1000 fall inside the 300 us after an event
    # No pending change is left: the flat second half gives nothing more.
    assert p.tolist() == [1, 1]


def test_lower_threshold_pixel_fires_more():
    video = np.stack([np.zeros((1, 2)), np.ones((1, 2))])
    t, x, _, _ = simulate_dvs(video, np.array([0, 1000]), np.array([[0.1, 0.3]]), 0.2)
    assert np.sum(x == 0) == 10 and np.sum(x == 1) == 3


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), refr=st.sampled_from([0.0, 120.0, 700.0]))
def test_vectorised_dvs_matches_crossing_by_crossing_reference(seed, refr):
    rng = np.random.default_rng(seed)
    n, h, w = 12, 3, 4
    video = np.cumsum(rng.normal(0, 0.4, (n, h, w)), axis=0)
    times = np.cumsum(rng.integers(200, 2000, n)).astype(np.float64)
    c_on = rng.uniform(0.1, 0.4, (h, w))
    c_off = rng.uniform(0.1, 0.4, (h, w))
    t, x, y, p = simulate_dvs(video, times, c_on, c_off, refr)
    ref = _reference_dvs(video, times, c_on, c_off, refr)
    assert len(t) == len(ref)
    got = sorted(zip(x.tolist(), y.tolist(), p.tolist(), t.tolist(), strict=True))
    want = sorted((rx, ry, rp, rt) for rt, rx, ry, rp in ref)
    for (gx, gy, gp, gt), (wx, wy, wp, wt) in zip(got, want, strict=True):
        assert (gx, gy, gp) == (wx, wy, wp)
        assert abs(gt - wt) <= 1.0  # floored to whole microseconds


def test_simulate_dvs_rejects_bad_input():
    with pytest.raises(SyntheticConfigError, match="frames, h, w"):
        simulate_dvs(np.zeros((4, 4)), np.arange(4), 0.2, 0.2)
    with pytest.raises(SyntheticConfigError, match="one time per frame"):
        simulate_dvs(np.zeros((4, 2, 2)), np.arange(3), 0.2, 0.2)
    with pytest.raises(SyntheticConfigError, match="non-decreasing"):
        simulate_dvs(np.zeros((3, 2, 2)), np.array([0, 2, 1]), 0.2, 0.2)
    with pytest.raises(SyntheticConfigError, match="positive"):
        simulate_dvs(np.zeros((3, 2, 2)), np.arange(3), 0.0, 0.2)


# ----------------------------------------------------------------- samples


def test_labels_are_eleven_distinct_classes():
    assert len(GESTURE_LABELS) == 11 and len(set(GESTURE_LABELS)) == 11


@pytest.mark.parametrize("height,width", [(128, 128), (48, 80)])
def test_sample_is_a_valid_sorted_event_array(height, width):
    gen = SyntheticGestures(height=height, width=width, seed=3, sample_us=160_000)
    for index in range(len(GESTURE_LABELS)):
        events, class_id = gen.sample(index)
        assert class_id == index % len(GESTURE_LABELS)
        assert events.dtype == EVENT_DTYPE and events.ndim == 1
        assert events.size > 500, GESTURE_LABELS[class_id]
        assert np.all(np.diff(events["t"]) >= 0)
        assert events["t"].min() >= 0 and events["t"].max() < 160_000
        assert events["x"].max() < width and events["y"].max() < height
        assert set(np.unique(events["p"]).tolist()) == {0, 1}


def test_samples_are_deterministic_per_seed_and_index():
    a = SyntheticGestures(seed=7).sample(5)[0]
    b = SyntheticGestures(seed=7).sample(5)[0]
    np.testing.assert_array_equal(a, b)
    c = SyntheticGestures(seed=8).sample(5)[0]
    d = SyntheticGestures(seed=7).sample(16)[0]  # same class, another index
    assert not np.array_equal(a, c) and not np.array_equal(a, d)


def test_class_can_be_forced():
    events, class_id = SyntheticGestures(seed=1).sample(0, class_id=9)
    assert class_id == 9 and events.size > 0


def test_swipes_move_the_events_in_their_direction():
    gen = SyntheticGestures(seed=11, dvs=QUIET)
    axis = {"swipe_left": (0, -1), "swipe_right": (0, 1), "swipe_up": (1, -1), "swipe_down": (1, 1)}
    for label, (coord, sign) in axis.items():
        for rep in range(3):
            events, _ = gen.sample(rep, class_id=GESTURE_LABELS.index(label))
            start = _centroid(events, 0, 40_000)[coord]
            end = _centroid(events, 120_000, 160_000)[coord]
            assert sign * (end - start) > 5, (label, rep, start, end)


def _orbit_area(events):
    pts = [_centroid(events, k * 20_000, (k + 1) * 20_000) for k in range(8)]
    xs, ys = np.array(pts).T
    xs, ys = xs - xs.mean(), ys - ys.mean()  # an open path: measure the area about its middle
    return float(np.sum(xs[:-1] * ys[1:] - xs[1:] * ys[:-1]))


def test_circles_turn_in_their_direction_on_screen():
    # With y pointing down, a positive shoelace sum is a clockwise turn on screen.
    gen = SyntheticGestures(seed=12, dvs=QUIET)
    for rep in range(3):
        cw, _ = gen.sample(rep, class_id=GESTURE_LABELS.index("circle_cw"))
        ccw, _ = gen.sample(rep, class_id=GESTURE_LABELS.index("circle_ccw"))
        assert _orbit_area(cw) > 0 > _orbit_area(ccw)


def test_zoom_in_spreads_and_zoom_out_shrinks():
    gen = SyntheticGestures(seed=13, dvs=QUIET)

    def spread(events, t0, t1):
        m = (events["t"] >= t0) & (events["t"] < t1)
        return np.hypot(events["x"][m].std(), events["y"][m].std())

    for rep in range(3):
        zin, _ = gen.sample(rep, class_id=GESTURE_LABELS.index("zoom_in"))
        zout, _ = gen.sample(rep, class_id=GESTURE_LABELS.index("zoom_out"))
        assert spread(zin, 120_000, 160_000) > 1.3 * spread(zin, 0, 40_000)
        assert spread(zout, 0, 40_000) > 1.3 * spread(zout, 120_000, 160_000)


def test_polarity_alone_does_not_tell_the_direction():
    # Bright-on-dark and dark-on-bright objects are both drawn, so a zoom in can be ON- or
    # OFF-dominated: only the order of events in time separates it from a zoom out.
    gen = SyntheticGestures(seed=14, dvs=QUIET)
    on_fraction = [
        gen.sample(i, class_id=GESTURE_LABELS.index("zoom_in"))[0]["p"].mean() for i in range(12)
    ]
    assert min(on_fraction) < 0.3 and max(on_fraction) > 0.7


def test_refractory_period_holds_per_pixel():
    refr = 800.0
    gen = SyntheticGestures(seed=4, dvs=DvsParams(noise_hz=0.0, refractory_us=refr))
    events, _ = gen.sample(8)  # a wave: fast edges, many crossings per sub-step
    pixel = events["y"].astype(np.int64) * gen.width + events["x"]
    order = np.lexsort((events["t"], pixel))
    same = np.diff(pixel[order]) == 0
    gaps = np.diff(events["t"][order])[same]
    assert gaps.size > 100 and gaps.min() >= refr - 1


def test_background_noise_rate():
    quiet = SyntheticGestures(seed=5, dvs=QUIET).sample(2)[0]
    rate = 20.0
    noisy = SyntheticGestures(seed=5, dvs=DvsParams(noise_hz=rate)).sample(2)[0]
    expected = rate * 128 * 128 * 0.16
    extra = noisy.size - quiet.size
    assert abs(extra - expected) < 5 * np.sqrt(expected)
    # Noise lands everywhere, e.g. in each corner quadrant of the sensor.
    for qx in (0, 1):
        for qy in (0, 1):
            m = (noisy["x"] // 64 == qx) & (noisy["y"] // 64 == qy)
            assert m.sum() > expected / 8


def test_threshold_mismatch_is_a_fixed_property_of_the_sensor():
    gen = SyntheticGestures(seed=6)
    video = np.stack([np.zeros((128, 128)), np.full((128, 128), 2.0)])
    t, x, y, _ = simulate_dvs(video, np.array([0, 1000]), gen._c_on, gen._c_off)
    counts = np.bincount(y.astype(np.int64) * 128 + x, minlength=128 * 128)
    assert counts.min() < counts.max()  # pixels differ (mismatch)...
    np.testing.assert_array_equal(gen._c_on, SyntheticGestures(seed=6)._c_on)  # ...reproducibly


# ----------------------------------------------------------------- streams


def test_stream_is_back_to_back_in_absolute_time():
    gen = SyntheticGestures(seed=9, sample_us=80_000)
    items = list(gen.stream(n_samples=4, start_us=1_000_000))
    assert [(t0, t1) for _, _, t0, t1 in items] == [
        (1_000_000 + 80_000 * i, 1_000_000 + 80_000 * (i + 1)) for i in range(4)
    ]
    for events, class_id, t0, t1 in items:
        assert 0 <= class_id < 11
        assert events["t"].min() >= t0 and events["t"].max() < t1
        assert np.all(np.diff(events["t"]) >= 0)
    shifted = next(iter(gen.stream(n_samples=1, start_us=0)))[0]
    np.testing.assert_array_equal(shifted["t"] + 1_000_000, items[0][0]["t"])


def test_stream_class_sequence_is_deterministic_from_seed():
    def classes(seed):
        return [c for _, c, _, _ in SyntheticGestures(seed=seed, sample_us=20_000).stream(12)]

    assert classes(1) == classes(1)
    assert classes(1) != classes(2)
    assert len(set(classes(1))) > 3  # a random sequence, not one class repeated


def test_endless_stream_keeps_going():
    stream = SyntheticGestures(seed=0, sample_us=10_000).stream(None)
    ends = [next(stream)[3] for _ in range(30)]
    assert ends[-1] == 300_000


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"height": 8}, "at least 16x16"),
        ({"sample_us": 0}, "sample_us"),
        ({"substep_us": 0}, "substep_us"),
        ({"sample_us": 1000, "substep_us": 5000}, "substep_us"),
        ({"seed": -1}, "seed"),
        ({"dvs": DvsParams(threshold=0)}, "thresholds"),
        ({"dvs": DvsParams(noise_hz=-1)}, "noise_hz"),
    ],
)
def test_bad_configuration_is_rejected(kwargs, match):
    with pytest.raises(SyntheticConfigError, match=match):
        SyntheticGestures(**kwargs)


def test_bad_sample_arguments_are_rejected():
    gen = SyntheticGestures(seed=0)
    with pytest.raises(SyntheticConfigError, match="class_id"):
        gen.sample(0, class_id=11)
    with pytest.raises(SyntheticConfigError, match="index"):
        gen.sample(-1)
    with pytest.raises(SyntheticConfigError, match="n_samples"):
        next(gen.stream(n_samples=-2))
    assert issubclass(SyntheticConfigError, ValueError)
