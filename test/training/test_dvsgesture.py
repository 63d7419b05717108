"""Tests of the DvsGesture loader (hsnn_perception/training/dvsgesture.py) on small files in the
published format, written here by a minimal AEDAT 3.1 writer."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from hsnn_perception.core.events.codecs import EVENT_DTYPE
from hsnn_perception.core.events.synthetic import SyntheticGestures
from hsnn_perception.training.data import InputSpec, events_to_spikes
from hsnn_perception.training.dvsgesture import (
    DVSGESTURE_LABELS,
    AedatError,
    load_dvsgesture,
    read_aedat31,
    read_labels_csv,
)

SPEC = InputSpec(height=32, width=32)


def write_aedat31(
    path: Path, events: np.ndarray, packet_size: int = 1000, invalid_every: int = 0
) -> None:
    """Minimal AEDAT 3.1 writer: header lines, then polarity packets (28-byte header + 8-byte
    events). A special-event packet (type 0) is put first, as cAER files have, to be skipped.
    Timestamps above 2**31 go into ``eventTSOverflow``."""
    with path.open("wb") as f:
        f.write(b"#!AER-DAT3.1\r\n")
        f.write(b"#Format: RAW\r\n#Source 1: DVS128\r\n")
        f.write(b"#!END-HEADER\r\n")
        # special events packet: 8-byte events, contents irrelevant
        f.write(struct.pack("<hhiiiiii", 0, 1, 8, 4, 0, 2, 2, 2))
        f.write(b"\x00" * 16)
        for start in range(0, events.size, packet_size):
            chunk = events[start : start + packet_size]
            overflow = int(chunk["t"][0]) >> 31
            if np.any((chunk["t"] >> 31) != overflow):
                raise ValueError("test writer: a packet must not straddle a timestamp overflow")
            data = (
                (chunk["x"].astype(np.uint32) << 17)
                | (chunk["y"].astype(np.uint32) << 2)
                | (chunk["p"].astype(np.uint32) << 1)
                | 1
            )
            if invalid_every:
                data[::invalid_every] &= ~np.uint32(1)
            ts = (chunk["t"] & 0x7FFFFFFF).astype(np.int32)
            # capacity larger than number: the unused slots are padding that must be skipped
            capacity = chunk.size + 3
            f.write(struct.pack("<hhiiiiii", 1, 1, 8, 4, overflow, capacity, chunk.size, 0))
            body = np.zeros(capacity, [("data", "<u4"), ("t", "<i4")])
            body["data"][: chunk.size] = data
            body["t"][: chunk.size] = ts
            f.write(body.tobytes())


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
    root.mkdir()
    recs = {
        "user01_fluorescent.aedat": _recording(1, [0, 4, 10]),
        "user02_led.aedat": _recording(2, [5, 2]),
        "user24_natural.aedat": _recording(3, [1, 8]),
    }
    for name, (events, spans) in recs.items():
        write_aedat31(root / name, events)
        with (root / name.replace(".aedat", "_labels.csv")).open("w") as f:
            f.write("class,startTime_usec,endTime_usec\n")
            for c, a, b in spans:
                f.write(f"{c + 1},{a},{b}\n")
    (root / "trials_to_train.txt").write_text("user01_fluorescent.aedat\nuser02_led.aedat\n")
    (root / "trials_to_test.txt").write_text("user24_natural.aedat\n")
    return recs


def test_aedat31_round_trip_with_invalid_events_and_overflow(tmp_path):
    events, _ = SyntheticGestures(seed=0).sample(4)
    events["t"] += (1 << 31) - 50_000  # crosses the 31-bit timestamp overflow mid-recording
    before = events[events["t"] < (1 << 31)]
    after = events[events["t"] >= (1 << 31)]
    path = tmp_path / "rec.aedat"
    # write the two sides in separate packets so no packet straddles the overflow
    write_aedat31(path, np.concatenate([before, after]), packet_size=max(1, before.size))
    back = read_aedat31(path)
    assert back.dtype == EVENT_DTYPE
    np.testing.assert_array_equal(back, events)  # the generator already sorts by time

    events, _ = SyntheticGestures(seed=0).sample(5)
    write_aedat31(path, events, invalid_every=5)
    valid = np.ones(events.size, bool)
    for start in range(0, events.size, 1000):
        valid[start : start + 1000 : 5] = False
    assert read_aedat31(path).size == valid.sum()


def test_labels_csv_is_read_zero_based(tmp_path):
    p = tmp_path / "x_labels.csv"
    p.write_text("class,startTime_usec,endTime_usec\n1,100,200\n11,300,900\n")
    assert read_labels_csv(p) == [(0, 100, 200), (10, 300, 900)]
    p.write_text("class,startTime_usec,endTime_usec\n12,100,200\n")
    with pytest.raises(AedatError, match="class must be 1..11"):
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
