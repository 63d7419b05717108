"""Tests of the DvsGesture loader (hsnn_perception/training/dvsgesture.py) on small folders in the
published layout (AEDAT 3.1 + labels CSV + trial lists), written by write_dvsgesture_folder, and of
the training recipe on such a folder (the AEDAT 3.1 format itself: test/core/io/test_aedat31.py)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from hsnn_perception.core.events.synthetic import SyntheticGestures
from hsnn_perception.training.data import InputSpec, events_to_spikes
from hsnn_perception.training.dvsgesture import (
    DVSGESTURE_LABELS,
    AedatError,
    load_dvsgesture,
    read_aedat31,
    read_labels_csv,
    write_aedat31,
    write_dvsgesture_folder,
)

SPEC = InputSpec(height=32, width=32)


def _recording(seed: int, classes: list[int], t0: int = 5_000_000):
    """Concatenated synthetic gestures (160 ms each, 2 per class span) and the label spans."""
    gen = SyntheticGestures(seed=seed)
    chunks, spans = [], []
    t = t0
    for c in classes:
        start = t
        for rep in range(2):
            ev, _ = gen.sample(rep, class_id=c)
            ev["t"] += t
            chunks.append(ev)
            t += 160_000
        spans.append((c, start, t + 50_000))  # spans a bit longer than 2 windows
        t += 200_000  # a gap between gestures
    return np.concatenate(chunks), spans


def _write_dataset(root: Path) -> dict[str, tuple[np.ndarray, list]]:
    recs = {
        "user01_fluorescent.aedat": _recording(1, [0, 4, 10]),
        "user02_led.aedat": _recording(2, [5, 2]),
        "user24_natural.aedat": _recording(3, [1, 8]),
    }
    write_dvsgesture_folder(root, recs, test=["user24_natural.aedat"])
    return recs


def test_labels_csv_is_read_zero_based(tmp_path):
    p = tmp_path / "x_labels.csv"
    p.write_text("class,startTime_usec,endTime_usec\n1,100,200\n11,300,900\n")
    assert read_labels_csv(p) == [(0, 100, 200), (10, 300, 900)]
    p.write_text("class,startTime_usec,endTime_usec\n12,100,200\n")
    with pytest.raises(AedatError, match="class 12 out of range"):
        read_labels_csv(p)


def test_dataset_is_split_by_trial_lists_and_cut_from_spans(tmp_path):
    root = tmp_path / "DvsGesture"
    recs = _write_dataset(root)
    train, test = load_dvsgesture(root, SPEC)
    assert train.class_names == DVSGESTURE_LABELS
    # each span holds 2 whole windows (+50 ms that do not make a third)
    assert train.labels.tolist() == [0, 0, 4, 4, 10, 10, 5, 5, 2, 2]
    assert test.labels.tolist() == [1, 1, 8, 8]
    assert train.spikes.shape == (10, 16, 2, 32, 32)
    # the windows hold exactly the binned events of their time range
    events, spans = recs["user24_natural.aedat"]
    c, start, _ = spans[1]
    lo, hi = np.searchsorted(events["t"], [start + 160_000, start + 320_000])
    expected = events_to_spikes(events[lo:hi], start + 160_000, SPEC)
    np.testing.assert_array_equal(test.spikes[3], expected)


def test_broken_inputs_give_clear_errors(tmp_path):
    with pytest.raises(AedatError, match="does not exist"):
        load_dvsgesture(tmp_path / "nowhere", SPEC)
    root = tmp_path / "DvsGesture"
    _write_dataset(root)
    (root / "trials_to_test.txt").write_text("user99_missing.aedat\n")
    with pytest.raises(AedatError, match="missing"):
        load_dvsgesture(root, SPEC)
    bad = tmp_path / "bad.aedat"
    bad.write_bytes(b"#!AER-DAT2.0\r\n")
    with pytest.raises(AedatError, match="not an AEDAT 3.1 file"):
        read_aedat31(bad)
    good = root / "user01_fluorescent.aedat"
    truncated = tmp_path / "trunc.aedat"
    truncated.write_bytes(good.read_bytes()[:-100])
    with pytest.raises(AedatError, match="runs past the end"):
        read_aedat31(truncated)
    with pytest.raises(AedatError, match="128x128"):
        load_dvsgesture(root, InputSpec(sensor_height=64, sensor_width=64, height=16, width=16))


def test_written_folder_has_the_published_layout(tmp_path):
    root = tmp_path / "DvsGesture"
    _write_dataset(root)
    assert sorted(p.name for p in root.iterdir()) == [
        "gesture_mapping.csv",
        "trials_to_test.txt",
        "trials_to_train.txt",
        "user01_fluorescent.aedat",
        "user01_fluorescent_labels.csv",
        "user02_led.aedat",
        "user02_led_labels.csv",
        "user24_natural.aedat",
        "user24_natural_labels.csv",
    ]
    raw = (root / "user02_led.aedat").read_bytes()
    head_end = raw.index(b"#!END-HEADER\r\n") + len(b"#!END-HEADER\r\n")
    assert raw.startswith(b"#!AER-DAT3.1\r\n")
    # the first packet holds special events (type 0), the next polarity events (type 1, 8 bytes)
    first = struct.unpack_from("<hhiiiiii", raw, head_end)
    assert first[0] == 0
    second = struct.unpack_from("<hhiiiiii", raw, head_end + 28 + first[5] * first[2])
    assert (second[0], second[2], second[3]) == (1, 8, 4)
    assert second[6] == second[7] <= second[5]  # number = valid <= capacity
    mapping = (root / "gesture_mapping.csv").read_text().splitlines()
    assert mapping[0] == "action,label" and mapping[1] == "hand_clapping,1"
    assert (root / "trials_to_test.txt").read_text() == "user24_natural.aedat\n"
    with pytest.raises(AedatError, match="sorted by time"):
        write_aedat31(tmp_path / "x.aedat", _recording(4, [0])[0][::-1])


def test_hsnn_train_runs_the_recipe_on_the_published_layout(tmp_path):
    """The documented DvsGesture recipe (docs/training.md), shortened to one step: the bundle's
    labels are DvsGesture's and its accuracy is measured on the trials_to_test windows."""
    from hsnn_perception.training.cli import train_main

    root = tmp_path / "DvsGesture"
    _write_dataset(root)
    out = tmp_path / "bundle"
    argv = ["--dataset", "dvsgesture", "--data", str(root), "--out", str(out)]
    argv += ["--height", "32", "--width", "32", "--k", "1", "--interval", "4", "--epochs", "1"]
    argv += ["--max-steps", "1", "--channels", "4,8,8,8", "--hidden", "16", "--no-cache"]
    assert train_main([*argv, "--no-progress"]) == 0
    doc = json.loads((out / "manifest.json").read_text())
    assert doc["labels"] == list(DVSGESTURE_LABELS)
    assert doc["metrics"]["test_samples"] == 4  # 2 spans x 2 windows in user24_natural
    assert 0.0 <= doc["metrics"]["test_accuracy"] <= 1.0
    assert doc["recipe"]["data"] == {
        "dataset": "dvsgesture",
        "path": str(root),
        "input": {**SPEC.to_dict()},
        "n_train": 10,
    }
