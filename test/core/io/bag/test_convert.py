"""Tests of hsnn_perception.core.io.bag.convert: real dv-processing AEDAT4 files and label CSV
files to event bags."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.io.bag.bag_fixtures import STORAGES
from hsnn_perception.core.events.codecs import make_events
from hsnn_perception.core.io.bag.convert import aedat4_to_bag, read_label_csv
from hsnn_perception.core.io.bag.msgtypes import TOPIC_LABELS, BagError, Label
from hsnn_perception.core.io.bag.read import read_event_bag


def _aedat4(path: Path, events: np.ndarray, size=(64, 48)) -> None:
    import dv_processing as dv

    store = dv.EventStore()
    for e in events:
        store.push_back(int(e["t"]), int(e["x"]), int(e["y"]), bool(e["p"]))
    writer = dv.io.MonoCameraWriter(str(path), dv.io.MonoCameraWriter.EventOnlyConfig("test", size))
    writer.writeEvents(store)
    del writer  # closes the file


@pytest.mark.parametrize("storage", STORAGES)
def test_aedat4_and_label_csv_to_bag(tmp_path, storage):
    rng = np.random.default_rng(0)
    n = 3000
    t = 1_700_000_000_000_000 + np.sort(rng.integers(0, 300_000, n))
    events = make_events(t, rng.integers(0, 64, n), rng.integers(0, 48, n), rng.integers(0, 2, n))
    src = tmp_path / "rec.aedat4"
    _aedat4(src, events)
    csv = tmp_path / "labels.csv"
    t0 = int(t[0])
    csv.write_text(
        "class,startTime_usec,endTime_usec\n"
        f"1,{t0},{t0 + 100_000}\n"
        f"3,{t0 + 100_000},{t0 + 300_000}\n"
    )
    out = tmp_path / "bag"
    covered: list[float] = []
    counts = aedat4_to_bag(
        src, csv, out, storage, packet_us=10_000, class_base=1, progress=covered.append
    )
    assert counts[TOPIC_LABELS] == 2
    assert covered and covered == sorted(covered) and covered[-1] == 1.0, covered
    bag = read_event_bag(out, require_labels=True)
    assert [(lab.class_id, lab.start_us) for lab in bag.labels] == [(0, t0), (2, t0 + 100_000)]
    pkts = list(bag.packets())
    assert all(p.width == 64 and p.height == 48 for p in pkts)
    got = np.concatenate([p.decode() for p in pkts])
    np.testing.assert_array_equal(got, events)
    # each packet lies within one 10 ms slot of the sensor-time grid
    for p in pkts:
        ev = p.decode()
        assert (ev["t"] // 10_000 == ev["t"][0] // 10_000).all()


def test_aedat4_bad_input(tmp_path):
    with pytest.raises(BagError, match="no AEDAT4"):
        aedat4_to_bag(tmp_path / "none.aedat4", None, tmp_path / "o")
    junk = tmp_path / "junk.aedat4"
    junk.write_bytes(b"not an aedat file at all")
    with pytest.raises(BagError, match="AEDAT4"):
        aedat4_to_bag(junk, None, tmp_path / "o")


def test_read_label_csv(tmp_path):
    f = tmp_path / "l.csv"
    f.write_text("# comment\nswipe_left,0,10\n1,10,20\n")
    labels = read_label_csv(f, names=["swipe_left", "swipe_right"])
    assert labels == [Label(0, "swipe_left", 0, 10), Label(1, "swipe_right", 10, 20)]
    for text, match in [
        ("1,5\n", "expected"),
        ("1,5,x\n2,1,2\n", None),  # a non-numeric first row is a header
        ("1,a,b\n1,c,d\n", "not numbers"),
        ("foo,0,10\nfoo,10,20\n", "unknown class"),
        ("1,10,5\n", "not after"),
        ("", "no labels"),
    ]:
        f.write_text(text)
        if match is None:
            assert len(read_label_csv(f)) == 1
        else:
            with pytest.raises(BagError, match=match):
                read_label_csv(f)
    with pytest.raises(BagError, match="cannot read"):
        read_label_csv(tmp_path / "missing.csv")


def test_aedat31_recording_and_labels_to_bag(tmp_path):
    """An AEDAT 3.1 file (DvsGesture's form: its _labels.csv counts classes from 1) becomes a
    labelled bag holding exactly its valid events; events beyond the given sensor are refused."""
    from hsnn_perception.core.io.aedat31 import write_aedat31
    from hsnn_perception.core.io.bag.convert import aedat31_to_bag

    rng = np.random.default_rng(3)
    n = 5000
    t = 3_000_000 + np.sort(rng.integers(0, 500_000, n))
    events = make_events(t, rng.integers(0, 128, n), rng.integers(0, 128, n), rng.integers(0, 2, n))
    src = write_aedat31(tmp_path / "user01_led.aedat", events)
    csv = tmp_path / "user01_led_labels.csv"
    csv.write_text(
        "class,startTime_usec,endTime_usec\r\n4,3000000,3200000\r\n11,3200000,3500000\r\n"
    )
    covered: list[float] = []
    names = [f"c{i}" for i in range(11)]
    counts = aedat31_to_bag(
        src, csv, tmp_path / "bag", class_base=1, names=names, progress=covered.append
    )
    assert counts[TOPIC_LABELS] == 2 and covered[-1] == 1.0
    bag = read_event_bag(tmp_path / "bag", require_labels=True)
    assert [(lab.class_id, lab.label) for lab in bag.labels] == [(3, "c3"), (10, "c10")]
    pkts = list(bag.packets())
    assert {(p.width, p.height) for p in pkts} == {(128, 128)}
    np.testing.assert_array_equal(np.concatenate([p.decode() for p in pkts]), events)
    with pytest.raises(BagError, match="do not fit a 64x64 sensor"):
        aedat31_to_bag(src, None, tmp_path / "small", width=64, height=64)
    with pytest.raises(BagError, match="not an AEDAT 3.1 file"):
        aedat31_to_bag(csv, None, tmp_path / "csv")
