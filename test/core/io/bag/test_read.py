"""Tests of hsnn_perception.core.io.bag.read and .source: event topics found by type, types from
the bag's own definitions, pre-Iron sqlite3, split and compressed bags."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from core.io.bag.bag_fixtures import ROOT, STORAGES, event_packets, events_of, synthetic_bag
from hsnn_perception.core.events.codecs import make_events
from hsnn_perception.core.io.bag.msgtypes import (
    MSG_ENERGY_REPORT,
    MSG_EVENT_CAMERA_PACKET,
    MSG_EVENT_PACKET,
    TOPIC_ENERGY,
    TOPIC_EVENTS,
    BagError,
    event_packet_message,
    package_typestore,
)
from hsnn_perception.core.io.bag.read import MessageReader, read_event_bag
from hsnn_perception.core.io.bag.write import BagRecorder, packetize, write_event_bag


def test_no_label_topic(tmp_path):
    ev = make_events([0, 5, 20_000], [1, 2, 3], [1, 2, 3], [0, 1, 1])
    path = tmp_path / "nolabels"
    write_event_bag(path, packetize(ev, 10_000, 8, 8))
    bag = read_event_bag(path)
    assert bag.labels == [] and bag.label_at(0) is None
    assert any("/labels" in n for n in bag.report.notes)
    with pytest.raises(BagError, match="no labels"):
        read_event_bag(path, require_labels=True)


def test_bag_without_events_topic(tmp_path):
    path = tmp_path / "only_energy"
    with BagRecorder(path) as rec:
        rec.write(TOPIC_ENERGY, MSG_ENERGY_REPORT, 1, {})
    with pytest.raises(BagError, match=r"no events topic .*topics: /energy \(hsnn_perception"):
        read_event_bag(path)


FOREIGN_EVENT_PACKET = """std_msgs/Header header
uint32 height
uint32 width
uint64 seq
uint64 time_base
string encoding
bool is_bigendian
uint8[] events
"""


def _foreign_store(extra: dict[str, str]):
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    for name, text in extra.items():
        store.register(get_types_from_msg(text, name))
    return store


def test_unknown_types_use_the_bags_own_definitions(tmp_path):
    """A vendor type is not known to the package: its definition comes from the bag (and
    event_camera_msgs/EventPacket, known, still decodes with the bag's); a type that cannot be an
    event packet on /events is refused."""
    store = _foreign_store(
        {
            "event_camera_msgs/msg/EventPacket": FOREIGN_EVENT_PACKET,
            "vendor_msgs/msg/Blob": "uint8[] data\nstring note\n",
        }
    )
    ev = make_events([100, 200, 300], [1, 2, 3], [4, 5, 6], [1, 0, 1])
    pkt = packetize(ev, 10_000, 8, 8)[0]
    path = tmp_path / "foreign"
    with BagRecorder(path, typestore=store) as rec:
        msg = event_packet_message(package_typestore(), pkt)
        raw = package_typestore().serialize_cdr(msg, MSG_EVENT_PACKET)
        rec.write(TOPIC_EVENTS, "event_camera_msgs/msg/EventPacket", pkt.log_time_ns, raw)
        rec.write("/vendor", "vendor_msgs/msg/Blob", 1, {"data": b"\x01\x02", "note": "x"})
    bag = read_event_bag(path)
    np.testing.assert_array_equal(next(bag.packets()).decode(), ev)
    reader = MessageReader(path)
    blob = next(reader.messages(["/vendor"]))
    assert blob.msg.note == "x"
    assert "vendor_msgs/msg/Blob" not in package_typestore().fielddefs  # shared store intact

    wrong = tmp_path / "wrong"
    with BagRecorder(wrong, typestore=store) as rec:
        rec.write(TOPIC_EVENTS, "vendor_msgs/msg/Blob", 1, {"data": b"\x01"})
    with pytest.raises(BagError, match="not an EventPacket"):
        read_event_bag(wrong, events_topic=TOPIC_EVENTS)
    with pytest.raises(BagError, match=r"no events topic .*/events \(vendor_msgs/msg/Blob\)"):
        read_event_bag(wrong)


def test_a_bag_of_another_version_is_decoded_with_its_own_definition(tmp_path):
    """EnergyReport gained host_stamp: a bag recorded with the older definition (embedded in it)
    still decodes, with that definition, and the report says so."""
    from rosbags.typesys import get_types_from_msg

    text = (ROOT / "msg" / "EnergyReport.msg").read_text()
    old_text = "\n".join(
        line for line in text.splitlines() if not line.startswith("builtin_interfaces/Time host")
    )
    old = package_typestore().fielddefs["hsnn_perception/msg/EnergyReport"]
    assert "host_stamp" in str(old)
    store = _copy_store_without_energy()
    store.register(get_types_from_msg(old_text, "hsnn_perception/msg/EnergyReport"))
    path = tmp_path / "old"
    with BagRecorder(path, typestore=store) as rec:
        rec.write(
            "/energy",
            "hsnn_perception/msg/EnergyReport",
            5,
            {"stage": "snn", "source": "modelled", "energy_j": 1.5e-5, "window_id": 3},
        )
    reader = MessageReader(path)
    (msg,) = list(reader.messages(["/energy"]))
    assert (msg.msg.stage, msg.msg.window_id, msg.msg.energy_j) == ("snn", 3, 1.5e-5)
    assert not hasattr(msg.msg, "host_stamp")
    assert any("recorded by another version" in n for n in reader.report.notes)
    # the package's shared store still has the current definition
    assert "host_stamp" in str(package_typestore().fielddefs["hsnn_perception/msg/EnergyReport"])


def _copy_store_without_energy():
    from rosbags.typesys import get_typestore
    from rosbags.typesys.stores import Stores

    store = get_typestore(Stores.EMPTY)
    fielddefs = package_typestore().fielddefs
    store.register({n: d for n, d in fielddefs.items() if not n.endswith("/EnergyReport")})
    return store


def _write_typed(path: Path, topic_types: dict[str, str], pkts, version: int = 9) -> None:
    """``pkts`` written on each topic of ``topic_types`` (name -> event packet type)."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    store = package_typestore()
    storage = StoragePlugin.SQLITE3 if version == 8 else StoragePlugin.MCAP
    writer = Writer(path, version=version, storage_plugin=storage)
    writer.open()
    conns = {t: writer.add_connection(t, typ, typestore=store) for t, typ in topic_types.items()}
    for pkt in pkts:
        msg = event_packet_message(store, pkt)
        raw = store.serialize_cdr(msg, MSG_EVENT_PACKET)  # same fields: same bytes
        for conn in conns.values():
            writer.write(conn, pkt.log_time_ns, raw)
    writer.close()


def test_events_topic_is_found_by_type_or_named(tmp_path):
    pkts = event_packets()
    want = np.concatenate([p.decode() for p in pkts])
    one = tmp_path / "one"
    _write_typed(one, {"/event_camera/events": MSG_EVENT_CAMERA_PACKET}, pkts)
    got, bag = events_of(one)
    assert bag.events_topic == "/event_camera/events"
    np.testing.assert_array_equal(got, want)
    two = tmp_path / "two"
    both = {"/cam_a/events": MSG_EVENT_CAMERA_PACKET, "/cam_b/events": MSG_EVENT_PACKET}
    _write_typed(two, both, pkts)
    with pytest.raises(BagError, match=r"2 event topics \(/cam_a/events, /cam_b/events\)"):
        read_event_bag(two)
    np.testing.assert_array_equal(events_of(two, events_topic="/cam_b/events")[0], want)
    with pytest.raises(BagError, match="has no /nope topic"):
        read_event_bag(two, events_topic="/nope")


def _pre_iron(path: Path) -> None:
    """Turn a version-8 sqlite3 bag into what rosbag2 before Iron wrote: no message_definitions
    table, no type hashes, metadata version 5."""
    db = next(path.glob("*.db3"))
    con = sqlite3.connect(db)
    con.executescript(
        """DROP TABLE message_definitions;
        CREATE TABLE t2(id INTEGER PRIMARY KEY, name TEXT NOT NULL, type TEXT NOT NULL,
            serialization_format TEXT NOT NULL, offered_qos_profiles TEXT NOT NULL);
        INSERT INTO t2 SELECT id, name, type, serialization_format, offered_qos_profiles
            FROM topics;
        DROP TABLE topics; ALTER TABLE t2 RENAME TO topics;
        UPDATE schema SET schema_version = 3, ros_distro = 'humble';"""
    )
    con.commit()
    con.close()
    meta = path / "metadata.yaml"
    text = meta.read_text()
    lines = text.replace("version: 8", "version: 5").splitlines()
    keep = [ln for ln in lines if "type_description_hash" not in ln and "RIHS01_" not in ln]
    assert len(keep) < len(lines)
    meta.write_text("\n".join(keep) + "\n")


@pytest.mark.parametrize("with_metadata", [True, False])
@pytest.mark.parametrize("msgtype", [MSG_EVENT_PACKET, MSG_EVENT_CAMERA_PACKET])
def test_pre_iron_sqlite_bag_reads_known_types_without_definitions(
    tmp_path, msgtype, with_metadata
):
    pkts = event_packets()
    path = tmp_path / "humble"
    _write_typed(path, {"/event_camera/events": msgtype}, pkts, version=8)
    _pre_iron(path)
    con = sqlite3.connect(next(path.glob("*.db3")))
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master")}
    con.close()
    assert "message_definitions" not in tables
    if not with_metadata:
        (path / "metadata.yaml").unlink()
    got, bag = events_of(path)
    np.testing.assert_array_equal(got, np.concatenate([p.decode() for p in pkts]))
    assert bag.report.read["/event_camera/events"] == len(pkts)
    assert not bag.report.recovered and not bag.report.skipped, bag.report.summary()
    assert not any("damaged" in n or "unknown" in n for n in bag.report.notes), bag.report.notes


def _split(tmp_path: Path, storage: str) -> tuple[Path, np.ndarray]:
    """A bag in three files (rosbag2's NAME_0, NAME_1, NAME_2), as a recorder that splits by size
    writes it, with its metadata.yaml listing all three."""
    pkts = event_packets(9)
    parts = [pkts[0:3], pkts[3:6], pkts[6:9]]
    path = tmp_path / "split"
    path.mkdir()
    infos = []
    for i, part in enumerate(parts):
        write_event_bag(tmp_path / f"part{i}", part, storage=storage)
        src = next(p for p in (tmp_path / f"part{i}").iterdir() if p.suffix in (".mcap", ".db3"))
        shutil.move(src, path / f"split_{i}{src.suffix}")
        infos.append((tmp_path / f"part{i}" / "metadata.yaml").read_text())
    meta = infos[0].replace(f"part0{'.mcap' if storage == 'mcap' else '.db3'}", "X")
    files = "".join(f"\n  - split_{i}.{'mcap' if storage == 'mcap' else 'db3'}" for i in range(3))
    meta = meta.replace("relative_file_paths:\n  - X", "relative_file_paths:" + files)
    assert "split_2" in meta
    (path / "metadata.yaml").write_text(meta)
    return path, np.concatenate([p.decode() for p in pkts])


@pytest.mark.parametrize("with_metadata", [True, False])
@pytest.mark.parametrize("storage", STORAGES)
def test_split_bag_is_read_whole_and_says_so(tmp_path, storage, with_metadata):
    path, want = _split(tmp_path, storage)
    if not with_metadata:
        (path / "metadata.yaml").unlink()
    got, bag = events_of(path)
    np.testing.assert_array_equal(got, want)
    assert not any("only the first" in n for n in bag.report.notes), bag.report.notes
    if not with_metadata:
        assert "bag split into 3 files: all are read, in file-name order" in bag.report.notes


def _set_compression(meta: Path, mode: str, old_name: str, new_name: str) -> None:
    text = meta.read_text().replace(old_name, new_name)
    text = text.replace("compression_format: ''", "compression_format: zstd")
    text = text.replace("compression_mode: ''", f"compression_mode: {mode}")
    assert f"compression_mode: {mode}" in text and "compression_format: zstd" in text
    meta.write_text(text)


@pytest.mark.parametrize("storage", STORAGES)
def test_file_compressed_bag_is_read(tmp_path, storage):
    from backports import zstd

    path = synthetic_bag(tmp_path, storage)
    want = events_of(path)[0]
    f = next(p for p in path.iterdir() if p.suffix in (".mcap", ".db3"))
    (path / (f.name + ".zstd")).write_bytes(zstd.compress(f.read_bytes()))
    f.unlink()
    _set_compression(path / "metadata.yaml", "file", f.name, f.name + ".zstd")
    got, bag = events_of(path)
    np.testing.assert_array_equal(got, want)
    assert len(bag.labels) == 2
    assert "zstd compression (mode file) decompressed within bounds" in bag.report.notes


def test_message_compressed_bag_is_read(tmp_path):
    from backports import zstd

    path = synthetic_bag(tmp_path, "sqlite3")
    want = events_of(path)[0]
    db = next(path.glob("*.db3"))
    con = sqlite3.connect(db)
    rows = con.execute("SELECT id, data FROM messages").fetchall()
    con.executemany(
        "UPDATE messages SET data = ? WHERE id = ?", [(zstd.compress(d), i) for i, d in rows]
    )
    con.commit()
    con.close()
    _set_compression(path / "metadata.yaml", "message", db.name, db.name)
    got, bag = events_of(path)
    np.testing.assert_array_equal(got, want)
    assert len(bag.labels) == 2 and not bag.report.skipped
