"""AEDAT 3.1 polarity events: what the writer writes, the reader reads back (valid bit, 31-bit
timestamp overflow, padding slots), and broken files give clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from hsnn_perception.core.events.codecs import EVENT_DTYPE
from hsnn_perception.core.events.synthetic import SyntheticGestures
from hsnn_perception.core.io.aedat31 import AedatError, read_aedat31, write_aedat31


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
    write_aedat31(path, events, packet_size=1000, invalid_every=5)
    valid = np.ones(events.size, bool)
    for start in range(0, events.size, 1000):
        valid[start : start + 1000 : 5] = False
    assert read_aedat31(path).size == valid.sum()


def test_broken_files_give_clear_errors(tmp_path):
    bad = tmp_path / "bad.aedat"
    bad.write_bytes(b"#!AER-DAT2.0\r\n")
    with pytest.raises(AedatError, match="not an AEDAT 3.1 file"):
        read_aedat31(bad)
    no_end = tmp_path / "no_end.aedat"
    no_end.write_bytes(b"#!AER-DAT3.1\r\n#Format: RAW\r\n")
    with pytest.raises(AedatError, match="END-HEADER"):
        read_aedat31(no_end)
    events, _ = SyntheticGestures(seed=1).sample(0)
    good = write_aedat31(tmp_path / "good.aedat", events)
    truncated = tmp_path / "trunc.aedat"
    truncated.write_bytes(good.read_bytes()[:-100])
    with pytest.raises(AedatError, match="runs past the end"):
        read_aedat31(truncated)
    unsorted = events[::-1].copy()
    with pytest.raises(AedatError, match="sorted by time"):
        write_aedat31(tmp_path / "u.aedat", unsorted)
