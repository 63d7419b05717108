"""Tests of hsnn_perception.core.io.bag.write with real rosbag2 files (rosbags) and real rclpy
serialization: event bags, the recorder."""

from __future__ import annotations

import math
import sqlite3
import threading

import numpy as np
import pytest

from core.io.bag.bag_fixtures import STORAGES, events_of, synthetic_bag
from hsnn_perception.core.events.codecs import EVENT_DTYPE, make_events
from hsnn_perception.core.events.synthetic import SyntheticGestures
from hsnn_perception.core.io.bag.msgtypes import (
    MSG_CLASSIFICATION,
    MSG_ENERGY_REPORT,
    MSG_EVENT_PACKET,
    TOPIC_CLASSIFICATION,
    TOPIC_DIAGNOSTICS,
    TOPIC_ENERGY,
    TOPIC_EVENTS,
    TOPIC_LABELS,
    BagError,
    EventPacketData,
    Label,
    _zero_value,
    package_typestore,
    time_to_ns,
)
from hsnn_perception.core.io.bag.read import MessageReader, read_event_bag
from hsnn_perception.core.io.bag.write import (
    BagRecorder,
    packetize,
    synthetic_to_bag,
    write_event_bag,
)


@pytest.mark.parametrize("storage", STORAGES)
def test_synthetic_bag_round_trip(tmp_path, storage):
    path = synthetic_bag(tmp_path, storage)
    gen = SyntheticGestures(height=64, width=64, seed=3)
    expected = list(gen.stream(2))
    bag = read_event_bag(path, require_labels=True)
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

    path = synthetic_bag(tmp_path, storage, n=1)
    store = package_typestore()
    with Reader(path) as reader:
        conns = {c.topic: c for c in reader.connections}
        assert conns[TOPIC_EVENTS].msgtype == MSG_EVENT_PACKET
        assert "uint64 time_base" in conns[TOPIC_EVENTS].msgdef.data
        assert "builtin_interfaces/Time start" in conns[TOPIC_LABELS].msgdef.data
        assert conns[TOPIC_EVENTS].digest == store.hash_rihs01(MSG_EVENT_PACKET)
        n = 0
        for conn, ts, raw in reader.messages():
            msg = store.deserialize_cdr(raw, conn.msgtype)
            if conn.topic == TOPIC_EVENTS:
                first_us = int(
                    EventPacketData(
                        ts, msg.time_base, msg.encoding, 64, 64, msg.events.tobytes()
                    ).decode()["t"][0]
                )
                assert ts == first_us * 1000
                n += 1
            else:
                assert ts == time_to_ns(msg.start)
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
        assert "string encoding" in defs[MSG_EVENT_PACKET]


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
    store = package_typestore()
    path = tmp_path / "rec"
    with BagRecorder(path, storage) as rec:
        rec.write(TOPIC_DIAGNOSTICS, "diagnostic_msgs/DiagnosticArray", 5_000, cdr)
        rec.write(
            TOPIC_ENERGY,
            MSG_ENERGY_REPORT,
            6_000,
            {"stage": "snn", "source": "unavailable", "energy_j": math.nan, "window_id": 7},
        )
        cls = store.types[MSG_CLASSIFICATION](
            **{
                **{n: _zero_value(store, d) for n, d in store.fielddefs[MSG_CLASSIFICATION][1]},
                "class_id": 4,
                "scores": np.array([0.25, 0.75], dtype=np.float32),
            }
        )
        rec.write(TOPIC_CLASSIFICATION, MSG_CLASSIFICATION, 7_000, cls)
    reader = MessageReader(path)
    got = {m.topic: m for m in reader.messages(reader.report.topics)}
    diag = got[TOPIC_DIAGNOSTICS]
    assert diag.log_time_ns == 5_000
    assert diag.msg.status[0].name == "snn" and diag.msg.status[0].values[0].value == "v"
    energy = got[TOPIC_ENERGY].msg
    assert energy.stage == "snn" and math.isnan(energy.energy_j) and energy.window_id == 7
    assert got[TOPIC_CLASSIFICATION].msg.class_id == 4
    np.testing.assert_allclose(got[TOPIC_CLASSIFICATION].msg.scores, [0.25, 0.75])
    assert reader.report.clean


def test_recorder_rejects_bad_input(tmp_path):
    path = tmp_path / "bad"
    with BagRecorder(path) as rec:
        rec.write(TOPIC_ENERGY, MSG_ENERGY_REPORT, 1, {"stage": "x"})
        with pytest.raises(BagError, match="has type"):
            rec.write(TOPIC_ENERGY, MSG_CLASSIFICATION, 2, {})
        with pytest.raises(BagError, match="not CDR"):
            rec.write("/x", MSG_ENERGY_REPORT, 2, b"junk")
        with pytest.raises(BagError, match="unknown message type"):
            rec.write("/y", "foo_msgs/msg/Bar", 2, {})
        with pytest.raises(BagError, match="no field"):
            rec.write(TOPIC_ENERGY, MSG_ENERGY_REPORT, 2, {"nope": 1})
        with pytest.raises(BagError, match="not a ROS message type"):
            rec.write("/z", "Bar", 2, {})
        with pytest.raises(BagError):
            rec.write(TOPIC_ENERGY, MSG_ENERGY_REPORT, 2, 3.5)
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
                rec.write(f"/t{k}", MSG_ENERGY_REPORT, k * 1000 + i, {"window_id": i})

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(n_threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    reader = MessageReader(path)
    msgs = list(reader.messages(reader.report.topics))
    assert len(msgs) == n_threads * per_thread
    for k in range(n_threads):
        ids = sorted(m.msg.window_id for m in msgs if m.topic == f"/t{k}")
        assert ids == list(range(per_thread))


def test_write_event_bag_checks_order_and_labels(tmp_path):
    ev = make_events([0, 50_000], [1, 2], [1, 2], [0, 1])
    pkts = packetize(ev, 10_000, 8, 8)
    assert len(pkts) == 2
    with pytest.raises(BagError, match="time order"):
        write_event_bag(tmp_path / "a", reversed(pkts))
    with pytest.raises(BagError, match="positive time range"):
        write_event_bag(tmp_path / "b", pkts, [Label(0, "x", 10, 10)])
    with pytest.raises(BagError, match="encode"):
        packetize(ev, 10_000, 2, 2)  # events beyond a 2x2 sensor


def test_convert_writes_zstd_mcap_on_request(tmp_path):
    plain, packed = tmp_path / "plain", tmp_path / "packed"
    synthetic_to_bag(plain, 3, seed=2, height=64, width=64)
    synthetic_to_bag(packed, 3, seed=2, height=64, width=64, compression="zstd")
    data = next(packed.glob("*.mcap")).read_bytes()
    assert b"\x04\x00\x00\x00zstd" in data  # the chunk records' compression field
    assert len(data) < next(plain.glob("*.mcap")).stat().st_size
    np.testing.assert_array_equal(events_of(packed)[0], events_of(plain)[0])
    with pytest.raises(BagError, match="use mcap storage"):
        synthetic_to_bag(tmp_path / "x", 1, storage="sqlite3", compression="zstd")
