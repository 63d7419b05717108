"""Tests of hsnn_perception.core.io.bag.recover (through read_event_bag): truncated, damaged and
foreign files."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from core.io.bag.bag_fixtures import synthetic_bag
from hsnn_perception.core.events.codecs import make_events
from hsnn_perception.core.io.bag.msgtypes import (
    MSG_EVENT_PACKET,
    TOPIC_EVENTS,
    BagError,
    event_packet_message,
    package_typestore,
)
from hsnn_perception.core.io.bag.read import MessageReader, read_event_bag
from hsnn_perception.core.io.bag.write import BagRecorder, packetize


def _cut(path: Path, pattern: str, frac: float) -> None:
    f = next(path.glob(pattern))
    data = f.read_bytes()
    f.write_bytes(data[: int(len(data) * frac)])


def test_truncated_mcap_reads_what_is_there(tmp_path):
    path = synthetic_bag(tmp_path, "mcap", n=3)
    full = read_event_bag(path)
    n_full = sum(1 for _ in full.packets())
    _cut(path, "*.mcap", 0.6)
    bag = read_event_bag(path)
    pkts = list(bag.packets())
    assert 0 < len(pkts) < n_full
    assert bag.report.recovered and not bag.report.clean
    assert any("truncated" in n for n in bag.report.notes)
    assert sum(bag.report.skipped.values()) > 0
    for p in pkts:  # what was recovered decodes
        assert p.decode().size > 0


def test_mcap_cut_in_its_header_is_an_error(tmp_path):
    path = synthetic_bag(tmp_path, "mcap", n=1)
    _cut(path, "*.mcap", 0.0005)
    with pytest.raises(BagError, match="damaged"):
        read_event_bag(path)


def test_truncated_sqlite_is_a_clear_error(tmp_path):
    path = synthetic_bag(tmp_path, "sqlite3", n=2)
    _cut(path, "*.db3", 0.5)
    with pytest.raises(BagError, match="sqlite3"):
        read_event_bag(path)


@pytest.mark.parametrize("storage,pattern", [("mcap", "*.mcap"), ("sqlite3", "*.db3")])
def test_missing_metadata_yaml_is_recovered(tmp_path, storage, pattern):
    path = synthetic_bag(tmp_path, storage, n=1)
    (path / "metadata.yaml").unlink()
    bag = read_event_bag(path)
    assert len(bag.labels) == 1 and sum(1 for _ in bag.packets()) > 0
    assert any("metadata.yaml" in n for n in bag.report.notes)
    # the storage file alone is also a bag
    alone = read_event_bag(next(path.glob(pattern)))
    assert len(alone.labels) == 1


def test_not_a_bag(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    fake = tmp_path / "fake.mcap"
    fake.write_bytes(b"\x00" * 100)
    (tmp_path / "emptydir").mkdir()
    for path, match in [
        (tmp_path / "missing", "does not exist"),
        (text, "not a rosbag2"),
        (fake, "not a rosbag2"),
        (tmp_path / "emptydir", "not a rosbag2"),
    ]:
        with pytest.raises(BagError, match=match):
            read_event_bag(path)


def test_type_without_definition_is_skipped_and_counted(tmp_path):
    path = synthetic_bag(tmp_path, "sqlite3", n=1)
    db = next(path.glob("*.db3"))
    con = sqlite3.connect(db)
    con.execute("INSERT INTO topics VALUES(99, '/mystery', 'mystery_msgs/msg/X', 'cdr', '', '')")
    con.execute("INSERT INTO messages (topic_id, timestamp, data) VALUES(99, 1, x'00010000')")
    con.commit()
    con.close()
    (path / "metadata.yaml").unlink()  # the topic list now comes from the database
    reader = MessageReader(path)
    assert list(reader.messages(["/mystery"])) == []
    assert reader.report.skipped["unknown type mystery_msgs/msg/X on /mystery"] == 1
    assert read_event_bag(path).labels  # the rest of the bag is fine


def test_corrupt_message_is_skipped_and_counted(tmp_path):
    ev = make_events([0, 20_000], [1, 2], [1, 2], [0, 1])
    path = tmp_path / "corrupt"
    store = package_typestore()
    with BagRecorder(path) as rec:
        pkts = packetize(ev, 10_000, 8, 8)
        rec.write(TOPIC_EVENTS, MSG_EVENT_PACKET, 0, event_packet_message(store, pkts[0]))
        rec.write(TOPIC_EVENTS, MSG_EVENT_PACKET, 10, b"\x00\x01\x00\x00\xff\xff")
        rec.write(
            TOPIC_EVENTS,
            MSG_EVENT_PACKET,
            20_000_000,
            event_packet_message(store, pkts[1]),
        )
    bag = read_event_bag(path)
    assert len(list(bag.packets())) == 2
    assert bag.report.skipped[f"undecodable {MSG_EVENT_PACKET} on /events"] == 1


def test_copy_of_bag_reads_the_same(tmp_path):
    path = synthetic_bag(tmp_path, "mcap", n=1)
    copy = tmp_path / "copy"
    shutil.copytree(path, copy)
    a = [p.payload for p in read_event_bag(path).packets()]
    b = [p.payload for p in read_event_bag(copy).packets()]
    assert a == b and a
