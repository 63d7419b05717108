"""Tests of hsnn_perception.core.io.rosbag with real rosbag2 files (rosbags), real dv-processing
AEDAT4 files and real rclpy serialization."""

from __future__ import annotations

import json
import math
import shutil
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest

from hsnn_perception.core.events.codecs import EVENT_DTYPE, make_events
from hsnn_perception.core.events.synthetic import SyntheticGestures
from hsnn_perception.core.io import rosbag as rb
from hsnn_perception.core.io.rosbag import BagError, BagRecorder, Label

STORAGES = ["mcap", "sqlite3"]
ROOT = Path(__file__).resolve().parents[3]


def _synthetic_bag(tmp_path: Path, storage: str, n: int = 2, seed: int = 3) -> Path:
    path = tmp_path / f"syn_{storage}"
    counts = rb.synthetic_to_bag(path, n, seed=seed, storage=storage, height=64, width=64)
    assert counts[rb.TOPIC_LABELS] == n
    return path


@pytest.mark.parametrize("storage", STORAGES)
def test_synthetic_bag_round_trip(tmp_path, storage):
    path = _synthetic_bag(tmp_path, storage)
    gen = SyntheticGestures(height=64, width=64, seed=3)
    expected = list(gen.stream(2))
    bag = rb.read_event_bag(path, require_labels=True)
    assert bag.report.clean, bag.report.summary()
    assert bag.labels == [Label(c, gen.labels[c], t0, t1) for _, c, t0, t1 in expected]
    events = np.concatenate([p.decode() for p in bag.packets()])
    want = np.concatenate([e for e, *_ in expected])
    assert events.dtype == EVENT_DTYPE
    np.testing.assert_array_equal(events, want)
    # label lookup by sensor time
    assert bag.label_at(expected[1][2]).class_id == expected[1][1]
    assert bag.label_at(expected[1][3] + 10**9) is None


@pytest.mark.parametrize("storage", STORAGES)
def test_bag_log_time_is_sensor_time_and_definitions_are_embedded(tmp_path, storage):
    from rosbags.rosbag2 import Reader

    path = _synthetic_bag(tmp_path, storage, n=1)
    store = rb.package_typestore()
    with Reader(path) as reader:
        conns = {c.topic: c for c in reader.connections}
        assert conns[rb.TOPIC_EVENTS].msgtype == rb.MSG_EVENT_PACKET
        assert "uint64 time_base" in conns[rb.TOPIC_EVENTS].msgdef.data
        assert "builtin_interfaces/Time start" in conns[rb.TOPIC_LABELS].msgdef.data
        assert conns[rb.TOPIC_EVENTS].digest == store.hash_rihs01(rb.MSG_EVENT_PACKET)
        n = 0
        for conn, ts, raw in reader.messages():
            msg = store.deserialize_cdr(raw, conn.msgtype)
            if conn.topic == rb.TOPIC_EVENTS:
                first_us = int(
                    rb.EventPacketData(
                        ts, msg.time_base, msg.encoding, 64, 64, msg.events.tobytes()
                    ).decode()["t"][0]
                )
                assert ts == first_us * 1000
                n += 1
            else:
                assert ts == rb.time_to_ns(msg.start)
        assert n > 0
    if storage == "sqlite3":
        db = next(path.glob("*.db3"))
        con = sqlite3.connect(db)
        defs = dict(
            con.execute(
                "SELECT topic_type, encoded_message_definition FROM message_definitions"
            ).fetchall()
        )
        con.close()
        assert "string encoding" in defs[rb.MSG_EVENT_PACKET]


def test_type_hashes_match_rosidl_build_when_present():
    built = ROOT / "install" / "share" / "hsnn_perception" / "msg"
    if not built.is_dir():
        pytest.skip("no colcon build of msg/ in this checkout")
    store = rb.package_typestore()
    for name in ("EventPacket", "GestureLabel", "TensorList", "Classification", "EnergyReport"):
        doc = json.loads((built / f"{name}.json").read_text())
        want = doc["type_hashes"][0]["hash_string"]
        assert store.hash_rihs01(f"hsnn_perception/msg/{name}") == want, name


@pytest.mark.parametrize("storage", STORAGES)
def test_recorder_takes_rclpy_cdr_dicts_and_objects(tmp_path, storage):
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
    from rclpy.serialization import serialize_message

    ros_msg = DiagnosticArray()
    ros_msg.status = [
        DiagnosticStatus(
            level=b"\x01", name="snn", message="slow", values=[KeyValue(key="k", value="v")]
        )
    ]
    cdr = serialize_message(ros_msg)
    store = rb.package_typestore()
    path = tmp_path / "rec"
    with BagRecorder(path, storage) as rec:
        rec.write(rb.TOPIC_DIAGNOSTICS, "diagnostic_msgs/DiagnosticArray", 5_000, cdr)
        rec.write(
            rb.TOPIC_ENERGY,
            rb.MSG_ENERGY_REPORT,
            6_000,
            {"stage": "snn", "source": "unavailable", "energy_j": math.nan, "window_id": 7},
        )
        cls = store.types[rb.MSG_CLASSIFICATION](
            **{
                **{
                    n: rb._zero_value(store, d)
                    for n, d in store.fielddefs[rb.MSG_CLASSIFICATION][1]
                },
                "class_id": 4,
                "scores": np.array([0.25, 0.75], dtype=np.float32),
            }
        )
        rec.write(rb.TOPIC_CLASSIFICATION, rb.MSG_CLASSIFICATION, 7_000, cls)
    reader = rb.MessageReader(path)
    got = {m.topic: m for m in reader.messages(reader.report.topics)}
    diag = got[rb.TOPIC_DIAGNOSTICS]
    assert diag.log_time_ns == 5_000
    assert diag.msg.status[0].name == "snn" and diag.msg.status[0].values[0].value == "v"
    energy = got[rb.TOPIC_ENERGY].msg
    assert energy.stage == "snn" and math.isnan(energy.energy_j) and energy.window_id == 7
    assert got[rb.TOPIC_CLASSIFICATION].msg.class_id == 4
    np.testing.assert_allclose(got[rb.TOPIC_CLASSIFICATION].msg.scores, [0.25, 0.75])
    assert reader.report.clean


def test_recorder_rejects_bad_input(tmp_path):
    path = tmp_path / "bad"
    with BagRecorder(path) as rec:
        rec.write(rb.TOPIC_ENERGY, rb.MSG_ENERGY_REPORT, 1, {"stage": "x"})
        with pytest.raises(BagError, match="has type"):
            rec.write(rb.TOPIC_ENERGY, rb.MSG_CLASSIFICATION, 2, {})
        with pytest.raises(BagError, match="not CDR"):
            rec.write("/x", rb.MSG_ENERGY_REPORT, 2, b"junk")
        with pytest.raises(BagError, match="unknown message type"):
            rec.write("/y", "foo_msgs/msg/Bar", 2, {})
        with pytest.raises(BagError, match="no field"):
            rec.write(rb.TOPIC_ENERGY, rb.MSG_ENERGY_REPORT, 2, {"nope": 1})
        with pytest.raises(BagError, match="not a ROS message type"):
            rec.write("/z", "Bar", 2, {})
        with pytest.raises(BagError):
            rec.write(rb.TOPIC_ENERGY, rb.MSG_ENERGY_REPORT, 2, 3.5)
    with pytest.raises(BagError, match="exists"):
        BagRecorder(path)
    with pytest.raises(BagError, match="storage"):
        BagRecorder(tmp_path / "other", storage="rosbag1")


def test_recorder_is_thread_safe(tmp_path):
    path = tmp_path / "threads"
    n_threads, per_thread = 4, 50
    with BagRecorder(path) as rec:

        def worker(k: int) -> None:
            for i in range(per_thread):
                rec.write(f"/t{k}", rb.MSG_ENERGY_REPORT, k * 1000 + i, {"window_id": i})

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(n_threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    reader = rb.MessageReader(path)
    msgs = list(reader.messages(reader.report.topics))
    assert len(msgs) == n_threads * per_thread
    for k in range(n_threads):
        ids = sorted(m.msg.window_id for m in msgs if m.topic == f"/t{k}")
        assert ids == list(range(per_thread))


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
    counts = rb.aedat4_to_bag(src, csv, out, storage, packet_us=10_000, class_base=1)
    assert counts[rb.TOPIC_LABELS] == 2
    bag = rb.read_event_bag(out, require_labels=True)
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
        rb.aedat4_to_bag(tmp_path / "none.aedat4", None, tmp_path / "o")
    junk = tmp_path / "junk.aedat4"
    junk.write_bytes(b"not an aedat file at all")
    with pytest.raises(BagError, match="AEDAT4"):
        rb.aedat4_to_bag(junk, None, tmp_path / "o")


def test_read_label_csv(tmp_path):
    f = tmp_path / "l.csv"
    f.write_text("# comment\nswipe_left,0,10\n1,10,20\n")
    labels = rb.read_label_csv(f, names=["swipe_left", "swipe_right"])
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
            assert len(rb.read_label_csv(f)) == 1
        else:
            with pytest.raises(BagError, match=match):
                rb.read_label_csv(f)
    with pytest.raises(BagError, match="cannot read"):
        rb.read_label_csv(tmp_path / "missing.csv")


def test_write_event_bag_checks_order_and_labels(tmp_path):
    ev = make_events([0, 50_000], [1, 2], [1, 2], [0, 1])
    pkts = rb.packetize(ev, 10_000, 8, 8)
    assert len(pkts) == 2
    with pytest.raises(BagError, match="time order"):
        rb.write_event_bag(tmp_path / "a", reversed(pkts))
    with pytest.raises(BagError, match="positive time range"):
        rb.write_event_bag(tmp_path / "b", pkts, [Label(0, "x", 10, 10)])
    with pytest.raises(BagError, match="encode"):
        rb.packetize(ev, 10_000, 2, 2)  # events beyond a 2x2 sensor


# ---- damaged and foreign bags ---------------------------------------------------------------


def _cut(path: Path, pattern: str, frac: float) -> None:
    f = next(path.glob(pattern))
    data = f.read_bytes()
    f.write_bytes(data[: int(len(data) * frac)])


def test_truncated_mcap_reads_what_is_there(tmp_path):
    path = _synthetic_bag(tmp_path, "mcap", n=3)
    full = rb.read_event_bag(path)
    n_full = sum(1 for _ in full.packets())
    _cut(path, "*.mcap", 0.6)
    bag = rb.read_event_bag(path)
    pkts = list(bag.packets())
    assert 0 < len(pkts) < n_full
    assert bag.report.recovered and not bag.report.clean
    assert any("truncated" in n for n in bag.report.notes)
    assert sum(bag.report.skipped.values()) > 0
    for p in pkts:  # what was recovered decodes
        assert p.decode().size > 0


def test_mcap_cut_in_its_header_is_an_error(tmp_path):
    path = _synthetic_bag(tmp_path, "mcap", n=1)
    _cut(path, "*.mcap", 0.0005)
    with pytest.raises(BagError, match="damaged"):
        rb.read_event_bag(path)


def test_truncated_sqlite_is_a_clear_error(tmp_path):
    path = _synthetic_bag(tmp_path, "sqlite3", n=2)
    _cut(path, "*.db3", 0.5)
    with pytest.raises(BagError, match="sqlite3"):
        rb.read_event_bag(path)


@pytest.mark.parametrize("storage,pattern", [("mcap", "*.mcap"), ("sqlite3", "*.db3")])
def test_missing_metadata_yaml_is_recovered(tmp_path, storage, pattern):
    path = _synthetic_bag(tmp_path, storage, n=1)
    (path / "metadata.yaml").unlink()
    bag = rb.read_event_bag(path)
    assert len(bag.labels) == 1 and sum(1 for _ in bag.packets()) > 0
    assert any("metadata.yaml" in n for n in bag.report.notes)
    # the storage file alone is also a bag
    alone = rb.read_event_bag(next(path.glob(pattern)))
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
            rb.read_event_bag(path)


def test_no_label_topic(tmp_path):
    ev = make_events([0, 5, 20_000], [1, 2, 3], [1, 2, 3], [0, 1, 1])
    path = tmp_path / "nolabels"
    rb.write_event_bag(path, rb.packetize(ev, 10_000, 8, 8))
    bag = rb.read_event_bag(path)
    assert bag.labels == [] and bag.label_at(0) is None
    assert any("/labels" in n for n in bag.report.notes)
    with pytest.raises(BagError, match="no labels"):
        rb.read_event_bag(path, require_labels=True)


def test_bag_without_events_topic(tmp_path):
    path = tmp_path / "only_energy"
    with BagRecorder(path) as rec:
        rec.write(rb.TOPIC_ENERGY, rb.MSG_ENERGY_REPORT, 1, {})
    with pytest.raises(BagError, match=r"no events topic .*topics: /energy \(hsnn_perception"):
        rb.read_event_bag(path)


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
    pkt = rb.packetize(ev, 10_000, 8, 8)[0]
    path = tmp_path / "foreign"
    with BagRecorder(path, typestore=store) as rec:
        msg = rb.event_packet_message(rb.package_typestore(), pkt)
        raw = rb.package_typestore().serialize_cdr(msg, rb.MSG_EVENT_PACKET)
        rec.write(rb.TOPIC_EVENTS, "event_camera_msgs/msg/EventPacket", pkt.log_time_ns, raw)
        rec.write("/vendor", "vendor_msgs/msg/Blob", 1, {"data": b"\x01\x02", "note": "x"})
    bag = rb.read_event_bag(path)
    np.testing.assert_array_equal(next(bag.packets()).decode(), ev)
    reader = rb.MessageReader(path)
    blob = next(reader.messages(["/vendor"]))
    assert blob.msg.note == "x"
    assert "vendor_msgs/msg/Blob" not in rb.package_typestore().fielddefs  # shared store intact

    wrong = tmp_path / "wrong"
    with BagRecorder(wrong, typestore=store) as rec:
        rec.write(rb.TOPIC_EVENTS, "vendor_msgs/msg/Blob", 1, {"data": b"\x01"})
    with pytest.raises(BagError, match="not an EventPacket"):
        rb.read_event_bag(wrong, events_topic=rb.TOPIC_EVENTS)
    with pytest.raises(BagError, match=r"no events topic .*/events \(vendor_msgs/msg/Blob\)"):
        rb.read_event_bag(wrong)


def test_type_without_definition_is_skipped_and_counted(tmp_path):
    path = _synthetic_bag(tmp_path, "sqlite3", n=1)
    db = next(path.glob("*.db3"))
    con = sqlite3.connect(db)
    con.execute("INSERT INTO topics VALUES(99, '/mystery', 'mystery_msgs/msg/X', 'cdr', '', '')")
    con.execute("INSERT INTO messages (topic_id, timestamp, data) VALUES(99, 1, x'00010000')")
    con.commit()
    con.close()
    (path / "metadata.yaml").unlink()  # the topic list now comes from the database
    reader = rb.MessageReader(path)
    assert list(reader.messages(["/mystery"])) == []
    assert reader.report.skipped["unknown type mystery_msgs/msg/X on /mystery"] == 1
    assert rb.read_event_bag(path).labels  # the rest of the bag is fine


def test_corrupt_message_is_skipped_and_counted(tmp_path):
    ev = make_events([0, 20_000], [1, 2], [1, 2], [0, 1])
    path = tmp_path / "corrupt"
    store = rb.package_typestore()
    with BagRecorder(path) as rec:
        pkts = rb.packetize(ev, 10_000, 8, 8)
        rec.write(rb.TOPIC_EVENTS, rb.MSG_EVENT_PACKET, 0, rb.event_packet_message(store, pkts[0]))
        rec.write(rb.TOPIC_EVENTS, rb.MSG_EVENT_PACKET, 10, b"\x00\x01\x00\x00\xff\xff")
        rec.write(
            rb.TOPIC_EVENTS,
            rb.MSG_EVENT_PACKET,
            20_000_000,
            rb.event_packet_message(store, pkts[1]),
        )
    bag = rb.read_event_bag(path)
    assert len(list(bag.packets())) == 2
    assert bag.report.skipped[f"undecodable {rb.MSG_EVENT_PACKET} on /events"] == 1


def test_copy_of_bag_reads_the_same(tmp_path):
    path = _synthetic_bag(tmp_path, "mcap", n=1)
    copy = tmp_path / "copy"
    shutil.copytree(path, copy)
    a = [p.payload for p in rb.read_event_bag(path).packets()]
    b = [p.payload for p in rb.read_event_bag(copy).packets()]
    assert a == b and a


def test_a_bag_of_another_version_is_decoded_with_its_own_definition(tmp_path):
    """EnergyReport gained host_stamp: a bag recorded with the older definition (embedded in it)
    still decodes, with that definition, and the report says so."""
    from rosbags.typesys import get_types_from_msg

    text = (ROOT / "msg" / "EnergyReport.msg").read_text()
    old_text = "\n".join(
        line for line in text.splitlines() if not line.startswith("builtin_interfaces/Time host")
    )
    old = rb.package_typestore().fielddefs["hsnn_perception/msg/EnergyReport"]
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
    reader = rb.MessageReader(path)
    (msg,) = list(reader.messages(["/energy"]))
    assert (msg.msg.stage, msg.msg.window_id, msg.msg.energy_j) == ("snn", 3, 1.5e-5)
    assert not hasattr(msg.msg, "host_stamp")
    assert any("recorded by another version" in n for n in reader.report.notes)
    # the package's shared store still has the current definition
    assert "host_stamp" in str(rb.package_typestore().fielddefs["hsnn_perception/msg/EnergyReport"])


def _copy_store_without_energy():
    from rosbags.typesys import get_typestore
    from rosbags.typesys.stores import Stores

    store = get_typestore(Stores.EMPTY)
    fielddefs = rb.package_typestore().fielddefs
    store.register({n: d for n, d in fielddefs.items() if not n.endswith("/EnergyReport")})
    return store


# Bags as users have them (issue 14): found by type, pre-Iron sqlite3, split, compressed ------


def _events_of(path: Path, **kw) -> tuple[np.ndarray, rb.EventBag]:
    bag = rb.read_event_bag(path, **kw)
    return np.concatenate([p.decode() for p in bag.packets()]), bag


def _packets(n: int = 6, seed: int = 1) -> list[rb.EventPacketData]:
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(0, n * 10_000, 400))
    ev = make_events(t, rng.integers(0, 64, 400), rng.integers(0, 48, 400), rng.integers(0, 2, 400))
    return rb.packetize(ev, 10_000, 64, 48)


def _write_typed(path: Path, topic_types: dict[str, str], pkts, version: int = 9) -> None:
    """``pkts`` written on each topic of ``topic_types`` (name -> event packet type)."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    store = rb.package_typestore()
    storage = StoragePlugin.SQLITE3 if version == 8 else StoragePlugin.MCAP
    writer = Writer(path, version=version, storage_plugin=storage)
    writer.open()
    conns = {t: writer.add_connection(t, typ, typestore=store) for t, typ in topic_types.items()}
    for pkt in pkts:
        msg = rb.event_packet_message(store, pkt)
        raw = store.serialize_cdr(msg, rb.MSG_EVENT_PACKET)  # same fields: same bytes
        for conn in conns.values():
            writer.write(conn, pkt.log_time_ns, raw)
    writer.close()


def test_events_topic_is_found_by_type_or_named(tmp_path):
    pkts = _packets()
    want = np.concatenate([p.decode() for p in pkts])
    one = tmp_path / "one"
    _write_typed(one, {"/event_camera/events": rb.MSG_EVENT_CAMERA_PACKET}, pkts)
    got, bag = _events_of(one)
    assert bag.events_topic == "/event_camera/events"
    np.testing.assert_array_equal(got, want)
    two = tmp_path / "two"
    both = {"/cam_a/events": rb.MSG_EVENT_CAMERA_PACKET, "/cam_b/events": rb.MSG_EVENT_PACKET}
    _write_typed(two, both, pkts)
    with pytest.raises(BagError, match=r"2 event topics \(/cam_a/events, /cam_b/events\)"):
        rb.read_event_bag(two)
    np.testing.assert_array_equal(_events_of(two, events_topic="/cam_b/events")[0], want)
    with pytest.raises(BagError, match="has no /nope topic"):
        rb.read_event_bag(two, events_topic="/nope")


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
@pytest.mark.parametrize("msgtype", [rb.MSG_EVENT_PACKET, rb.MSG_EVENT_CAMERA_PACKET])
def test_pre_iron_sqlite_bag_reads_known_types_without_definitions(
    tmp_path, msgtype, with_metadata
):
    pkts = _packets()
    path = tmp_path / "humble"
    _write_typed(path, {"/event_camera/events": msgtype}, pkts, version=8)
    _pre_iron(path)
    con = sqlite3.connect(next(path.glob("*.db3")))
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master")}
    con.close()
    assert "message_definitions" not in tables
    if not with_metadata:
        (path / "metadata.yaml").unlink()
    got, bag = _events_of(path)
    np.testing.assert_array_equal(got, np.concatenate([p.decode() for p in pkts]))
    assert bag.report.read["/event_camera/events"] == len(pkts)
    assert not bag.report.recovered and not bag.report.skipped, bag.report.summary()
    assert not any("damaged" in n or "unknown" in n for n in bag.report.notes), bag.report.notes


def _split(tmp_path: Path, storage: str) -> tuple[Path, np.ndarray]:
    """A bag in three files (rosbag2's NAME_0, NAME_1, NAME_2), as a recorder that splits by size
    writes it, with its metadata.yaml listing all three."""
    pkts = _packets(9)
    parts = [pkts[0:3], pkts[3:6], pkts[6:9]]
    path = tmp_path / "split"
    path.mkdir()
    infos = []
    for i, part in enumerate(parts):
        rb.write_event_bag(tmp_path / f"part{i}", part, storage=storage)
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
    got, bag = _events_of(path)
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

    path = _synthetic_bag(tmp_path, storage)
    want = _events_of(path)[0]
    f = next(p for p in path.iterdir() if p.suffix in (".mcap", ".db3"))
    (path / (f.name + ".zstd")).write_bytes(zstd.compress(f.read_bytes()))
    f.unlink()
    _set_compression(path / "metadata.yaml", "file", f.name, f.name + ".zstd")
    got, bag = _events_of(path)
    np.testing.assert_array_equal(got, want)
    assert len(bag.labels) == 2
    assert "zstd compression (mode file) decompressed within bounds" in bag.report.notes


def test_message_compressed_bag_is_read(tmp_path):
    from backports import zstd

    path = _synthetic_bag(tmp_path, "sqlite3")
    want = _events_of(path)[0]
    db = next(path.glob("*.db3"))
    con = sqlite3.connect(db)
    rows = con.execute("SELECT id, data FROM messages").fetchall()
    con.executemany(
        "UPDATE messages SET data = ? WHERE id = ?", [(zstd.compress(d), i) for i, d in rows]
    )
    con.commit()
    con.close()
    _set_compression(path / "metadata.yaml", "message", db.name, db.name)
    got, bag = _events_of(path)
    np.testing.assert_array_equal(got, want)
    assert len(bag.labels) == 2 and not bag.report.skipped


def test_convert_writes_zstd_mcap_on_request(tmp_path):
    plain, packed = tmp_path / "plain", tmp_path / "packed"
    rb.synthetic_to_bag(plain, 3, seed=2, height=64, width=64)
    rb.synthetic_to_bag(packed, 3, seed=2, height=64, width=64, compression="zstd")
    data = next(packed.glob("*.mcap")).read_bytes()
    assert b"\x04\x00\x00\x00zstd" in data  # the chunk records' compression field
    assert len(data) < next(plain.glob("*.mcap")).stat().st_size
    np.testing.assert_array_equal(_events_of(packed)[0], _events_of(plain)[0])
    with pytest.raises(BagError, match="use mcap storage"):
        rb.synthetic_to_bag(tmp_path / "x", 1, storage="sqlite3", compression="zstd")
