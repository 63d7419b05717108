"""Event statistics of the synthetic gesture set at 128x128 against the range real DVS gestures
have (a few % of the pixels active per 10 ms bin; docs/results/README.md says what was matched)."""

from __future__ import annotations

import numpy as np
import pytest

from hsnn_perception.core.events.codecs import make_events
from hsnn_perception.core.events.synthetic import SyntheticGestures
from hsnn_perception.training.data import DatasetError, bin_activity


def test_bin_activity_counts_events_and_distinct_pixels():
    # bin 0: three events on two pixels; bin 1 empty; bin 2: one event
    ev = make_events([0, 5, 9_999, 25_000], [1, 1, 2, 0], [0, 0, 3, 1], [1, 0, 1, 1])
    counts, frac = bin_activity(ev, 4, 4, 10_000, t0=0)
    assert counts.tolist() == [3, 0, 1]
    assert frac.tolist() == [2 / 16, 0, 1 / 16]
    with pytest.raises(DatasetError, match="before t0"):
        bin_activity(ev, 4, 4, 10_000, t0=1)


def test_synthetic_gestures_at_128x128_activate_a_few_percent_of_the_pixels_per_bin():
    gen = SyntheticGestures(128, 128, seed=0)
    fractions = []
    for i in range(50_000, 50_022):
        events, _ = gen.sample(i)
        _, frac = bin_activity(events, 128, 128, 10_000, t0=0)
        fractions.append(np.pad(frac, (0, 16 - frac.size)))
    f = np.concatenate(fractions)
    # 55 samples measured 2.9 % mean, 1.1 % p10, 6.1 % p90 (bench/event_activity.py); the real
    # DAVIS346 and EVK4 scenes mapped to 128x128 0.9 % and 2.4 %.
    assert 0.01 <= f.mean() <= 0.06, f.mean()
    assert np.percentile(f, 90) < 0.12
    assert (f > 0).all()  # the object moves during the whole window
