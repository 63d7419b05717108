"""Tests of AEDAT4 + label CSV datasets (hsnn_perception/training/aedat_labels.py), with files
written by dv-processing itself."""

from __future__ import annotations

from pathlib import Path

import dv_processing as dv
import numpy as np
import pytest

from hsnn_perception.core.events.synthetic import SyntheticGestures
from hsnn_perception.training.aedat_labels import (
    LabelFileError,
    load_aedat4_folder,
    read_aedat4_events,
)
from hsnn_perception.training.data import InputSpec, events_to_spikes

SPEC = InputSpec(sensor_height=64, sensor_width=64, height=16, width=16)


def write_aedat4(path: Path, events: np.ndarray, width: int = 64, height: int = 64) -> None:
    writer = dv.io.MonoCameraWriter(
        str(path), dv.io.MonoCameraWriter.EventOnlyConfig("dvs", (width, height))
    )
    store = dv.EventStore()
    for e in events:
        store.push_back(int(e["t"]), int(e["x"]), int(e["y"]), bool(e["p"]))
    writer.writeEvents(store)
    del writer  # closes the file


def _recording(seed: int, classes: list[int], t0: int = 1_700_000_000_000_000):
    gen = SyntheticGestures(height=64, width=64, seed=seed)
    chunks, spans, t = [], [], t0
    for c in classes:
        ev, _ = gen.sample(0, class_id=c)
        ev["t"] += t
        chunks.append(ev)
        spans.append((c, t, t + 160_000))
        t += 300_000
    return np.concatenate(chunks), spans


def test_aedat4_events_round_trip(tmp_path):
    events, _ = _recording(0, [3])
    write_aedat4(tmp_path / "r.aedat4", events)
    back, (h, w) = read_aedat4_events(tmp_path / "r.aedat4")
    assert (h, w) == (64, 64)
    np.testing.assert_array_equal(back, events)


def test_labelled_folder_gives_train_and_test_windows(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "test").mkdir()
    (tmp_path / "classes.txt").write_text("\n".join(f"g{i}" for i in range(11)) + "\n")
    ev_a, spans_a = _recording(1, [0, 7])
    ev_b, spans_b = _recording(2, [4])
    write_aedat4(tmp_path / "train" / "a.aedat4", ev_a)
    (tmp_path / "train" / "a_labels.csv").write_text(
        "class,start_us,end_us\n" + "".join(f"g{c},{s},{e}\n" for c, s, e in spans_a)
    )
    write_aedat4(tmp_path / "test" / "b.aedat4", ev_b)
    (tmp_path / "test" / "b.csv").write_text("".join(f"{c},{s},{e}\n" for c, s, e in spans_b))
    train, test = load_aedat4_folder(tmp_path, SPEC)
    assert train.labels.tolist() == [0, 7] and test.labels.tolist() == [4]
    assert train.class_names[7] == "g7"
    lo, hi = np.searchsorted(ev_b["t"], [spans_b[0][1], spans_b[0][2]])
    np.testing.assert_array_equal(
        test.spikes[0], events_to_spikes(ev_b[lo:hi], spans_b[0][1], SPEC)
    )


def test_problems_are_named(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "test").mkdir()
    ev, spans = _recording(3, [1])
    write_aedat4(tmp_path / "train" / "a.aedat4", ev)
    with pytest.raises(LabelFileError, match="no label file"):
        load_aedat4_folder(tmp_path, SPEC)
    (tmp_path / "train" / "a_labels.csv").write_text("wave,0,10\n")
    with pytest.raises(LabelFileError, match="unknown class 'wave'"):
        load_aedat4_folder(tmp_path, SPEC)
    (tmp_path / "train" / "a_labels.csv").write_text(f"1,{spans[0][1]},{spans[0][2]}\n")
    with pytest.raises(LabelFileError, match="no .aedat4 recordings"):
        load_aedat4_folder(tmp_path, SPEC)  # test/ is empty
    write_aedat4(tmp_path / "test" / "b.aedat4", ev, width=32, height=32)
    (tmp_path / "test" / "b_labels.csv").write_text(f"1,{spans[0][1]},{spans[0][2]}\n")
    with pytest.raises(LabelFileError, match="sensor is 32x32"):
        load_aedat4_folder(tmp_path, SPEC)
    (tmp_path / "x.aedat4").write_bytes(b"garbage")
    with pytest.raises(LabelFileError, match="cannot open AEDAT4"):
        read_aedat4_events(tmp_path / "x.aedat4")
