"""Tests of the training datasets (hsnn_perception/training/data.py)."""

from __future__ import annotations

import numpy as np
import pytest

from hsnn_perception.core.events.binning import bin_events
from hsnn_perception.core.events.codecs import EVENT_DTYPE
from hsnn_perception.core.events.synthetic import SyntheticGestures
from hsnn_perception.training.data import (
    DatasetError,
    InputSpec,
    SpikeSet,
    events_to_spikes,
    load_spikeset,
    save_spikeset,
    synthetic_spikeset,
    windows_from_spans,
)

SPEC = InputSpec(sensor_height=64, sensor_width=64, height=16, width=16)


def _events(rows):
    ev = np.zeros(len(rows), EVENT_DTYPE)
    for i, (t, x, y, p) in enumerate(rows):
        ev[i] = (t, x, y, p)
    return ev


def test_spikes_are_binary_per_bin_pixel_and_polarity():
    # three ON events in one 4x4 block of one bin -> one spike; an OFF event elsewhere
    ev = _events([(100, 0, 0, 1), (200, 1, 2, 1), (300, 3, 3, 1), (15_000, 8, 4, 0)])
    s = events_to_spikes(ev, 0, SPEC)
    assert s.shape == (16, 2, 16, 16) and s.dtype == np.uint8
    assert s[0, 1, 0, 0] == 1 and s[1, 0, 1, 2] == 1
    assert s.sum() == 2


def test_spikes_match_the_nodes_binning_on_synthetic_data():
    events, _ = SyntheticGestures(height=64, width=64, seed=1).sample(3)
    s = events_to_spikes(events, 0, SPEC)
    counts = bin_events(events, 0, 10_000, 16, 64, 64, downsample=(4, 4))
    np.testing.assert_array_equal(s, (counts > 0).astype(np.uint8))
    assert 0 < s.mean() < 0.5


def test_synthetic_set_is_balanced_deterministic_and_cached(tmp_path):
    a = synthetic_spikeset(22, SPEC, seed=2, cache_dir=tmp_path)
    assert a.spikes.shape == (22, 16, 2, 16, 16)
    assert a.class_counts().tolist() == [2] * 11
    assert len(list(tmp_path.glob("synthetic-*.npz"))) == 1
    b = synthetic_spikeset(22, SPEC, seed=2, cache_dir=tmp_path)  # from the cache
    c = synthetic_spikeset(22, SPEC, seed=2)  # rendered again
    np.testing.assert_array_equal(a.spikes, b.spikes)
    np.testing.assert_array_equal(a.spikes, c.spikes)
    held_out = synthetic_spikeset(11, SPEC, seed=2, first_index=1000)
    assert not np.array_equal(held_out.spikes, a.spikes[:11])


def test_spikeset_save_load_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    data = SpikeSet(
        (rng.random((5, 4, 2, 3, 7)) < 0.3).astype(np.uint8), np.arange(5), ("a", "b", "c")
    )
    save_spikeset(data, tmp_path / "x.npz")
    back = load_spikeset(tmp_path / "x.npz")
    np.testing.assert_array_equal(back.spikes, data.spikes)
    np.testing.assert_array_equal(back.labels, data.labels)
    assert back.class_names == data.class_names


def test_windows_are_cut_inside_labelled_spans():
    t = np.arange(0, 1_000_000, 1000)
    ev = np.zeros(t.size, EVENT_DTYPE)
    ev["t"] = t
    spans = [(3, 0, 400_000), (5, 500_000, 600_000), (7, 600_000, 930_000)]
    got = [(label, s.sum()) for s, label in windows_from_spans(ev, spans, SPEC)]
    # 400 ms -> 2 windows of 160 ms; 100 ms -> none; 330 ms -> 2
    assert [g[0] for g in got] == [3, 3, 7, 7]
    assert all(n == 16 for _, n in got)  # events in every bin, all at one pixel and polarity
    overlapping = list(windows_from_spans(ev, spans[:1], SPEC, stride_us=80_000))
    assert len(overlapping) == 4


def test_bad_specs_and_files_raise_dataset_errors(tmp_path):
    with pytest.raises(DatasetError, match="must divide"):
        InputSpec(sensor_height=128, height=48)
    with pytest.raises(DatasetError, match="positive"):
        InputSpec(bin_us=0)
    with pytest.raises(DatasetError, match="n_samples"):
        synthetic_spikeset(0, SPEC)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(DatasetError, match="cannot read cached dataset"):
        load_spikeset(tmp_path / "bad.npz")
    with pytest.raises(DatasetError, match="one label each"):
        SpikeSet(np.zeros((2, 1, 1, 1, 1), np.uint8), np.zeros(3, np.int64), ("a",))
