"""hsnn-bag: convert, info and errors in-process; record as a subprocess next to a real pipeline
over DDS, then the recorded MCAP read back with rosbags."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from hsnn_perception.core.events.codecs import make_events
from hsnn_perception.core.events.synthetic import SyntheticGestures
from hsnn_perception.core.io.bag.msgtypes import (
    MSG_EVENT_CAMERA_PACKET,
    MSG_EVENT_PACKET,
    STORAGES,
    TOPIC_EVENTS,
    EventPacketData,
    event_packet_message,
    package_typestore,
)
from hsnn_perception.core.io.bag.read import read_event_bag
from hsnn_perception.core.io.bag.write import BagRecorder, packetize, synthetic_to_bag
from hsnn_perception.core.sources.bag import bag_packets
from hsnn_perception.tools.bag_cli import EXIT_BAD_INPUT, RECORDABLE, main, record

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("storage", STORAGES)
def test_convert_synthetic_then_info(tmp_path, storage, capsys):
    out = tmp_path / "syn"
    argv = ["convert", "synthetic", str(out), "--samples", "3", "--seed", "2"]
    assert main([*argv, "--storage", storage, "--height", "64", "--width", "64"]) == 0
    assert "3 messages on /labels" in capsys.readouterr().out
    bag = read_event_bag(out, require_labels=True)
    gen = SyntheticGestures(height=64, width=64, seed=2)
    assert [lab.class_id for lab in bag.labels] == [c for _, c, *_ in gen.stream(3)]
    assert bag.report.storage == storage

    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "/events" in text and "/labels" in text and "3 spans" in text
    assert "skipped:   nothing" in text
    assert main(["info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["storage"] == storage
    assert info["topics"]["/labels"]["messages"] == 3
    assert info["topics"]["/events"]["messages"] == info["topics"]["/events"]["indexed"] > 0
    assert info["labels"]["count"] == 3 and info["labels"]["span_us"] == [0, 3 * 160_000]
    assert 0.3 < info["duration_s"] < 0.48  # log time = sensor time of the events


def test_info_reports_what_a_damaged_bag_lost(tmp_path, capsys):
    out = tmp_path / "cut"
    assert main(["convert", "synthetic", str(out), "--samples", "3"]) == 0
    full = read_event_bag(out).report.expected[TOPIC_EVENTS]
    f = next(out.glob("*.mcap"))
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    capsys.readouterr()
    assert main(["info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["recovered"] and info["skipped"]
    assert 0 < info["topics"]["/events"]["messages"] < full
    assert main(["info", str(out)]) == 0
    assert "recovered from damage" in capsys.readouterr().out


def _aedat4(path: Path, events: np.ndarray, size: tuple[int, int]) -> None:
    import dv_processing as dv

    store = dv.EventStore()
    for e in events:
        store.push_back(int(e["t"]), int(e["x"]), int(e["y"]), bool(e["p"]))
    writer = dv.io.MonoCameraWriter(str(path), dv.io.MonoCameraWriter.EventOnlyConfig("t", size))
    writer.writeEvents(store)
    del writer  # closes the file


def test_convert_aedat4_with_labels(tmp_path, capsys):
    rng = np.random.default_rng(1)
    n = 2000
    t = 1_000_000 + np.sort(rng.integers(0, 200_000, n))
    events = make_events(t, rng.integers(0, 32, n), rng.integers(0, 24, n), rng.integers(0, 2, n))
    src = tmp_path / "rec.aedat4"
    _aedat4(src, events, (32, 24))
    labels = tmp_path / "labels.csv"
    labels.write_text("class,start,end\n2,1000000,1100000\n1,1100000,1200000\n")
    out = tmp_path / "aed"
    argv = ["convert", "aedat4", str(src), str(out), "--labels", str(labels)]
    assert main([*argv, "--class-base", "1", "--names", "one,two", "--storage", "sqlite3"]) == 0
    stream, width, height = bag_packets(out)
    assert (width, height) == (32, 24)
    np.testing.assert_array_equal(np.concatenate([p.events for p in stream]), events)
    assert [(lab.class_id, lab.label) for lab in stream.labels] == [(1, "two"), (0, "one")]
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    assert "one: 1, two: 1" in capsys.readouterr().out
    assert "warning" not in capsys.readouterr().err
    # Labels of another recording (times in milliseconds, say): written, but said.
    elsewhere = tmp_path / "ms.csv"
    elsewhere.write_text("class,start,end\n2,1000,1100\n1,1100,1200\n1,1000000,1100000\n")
    argv = ["convert", "aedat4", str(src), str(tmp_path / "ms"), "--labels", str(elsewhere)]
    assert main([*argv, "--class-base", "1"]) == 0
    err = capsys.readouterr().err
    assert "warning: 2 label spans" in err and "outside the recording" in err


@pytest.mark.parametrize(
    "case",
    [
        "info_missing",
        "info_not_a_bag",
        "out_exists",
        "no_aedat",
        "no_labels",
        "bad_csv",
        "aedat_is_text",
        "aedat_without_events",
        "names_without_labels",
        "names_twice",
        "out_under_a_file",
        "record_bad_namespace",
    ],
)
def test_errors_are_one_line_exit_2(tmp_path, case, capsys):
    existing = tmp_path / "existing"
    existing.mkdir()
    aedat = tmp_path / "rec.aedat4"
    _aedat4(aedat, make_events([10, 20], [1, 2], [1, 2], [0, 1]), (8, 8))
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("1,100,50\n")  # ends before it starts
    good_csv = tmp_path / "good.csv"
    good_csv.write_text("0,0,100\n")
    junk = tmp_path / "junk.mcap"
    junk.write_bytes(b"junk" * 10)
    text_aedat = tmp_path / "notes.aedat4"  # dv-processing used to dump a C++ stack trace
    text_aedat.write_text("hello world\n")
    empty_aedat = tmp_path / "empty.aedat4"
    _aedat4(empty_aedat, make_events([], [], [], []), (8, 8))
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    aedat_argv = ["convert", "aedat4", str(aedat), str(tmp_path / "o")]
    argv, match = {
        "info_missing": (["info", str(tmp_path / "none")], "does not exist"),
        "info_not_a_bag": (["info", str(junk)], "not a rosbag2"),
        "out_exists": (["convert", "synthetic", str(existing)], "exists"),
        "no_aedat": (
            ["convert", "aedat4", str(tmp_path / "x.aedat4"), str(tmp_path / "o")],
            "no AEDAT4",
        ),
        "no_labels": (
            ["convert", "aedat4", str(aedat), str(tmp_path / "o"), "--labels", "nope.csv"],
            "no label file",
        ),
        "bad_csv": (
            ["convert", "aedat4", str(aedat), str(tmp_path / "o"), "--labels", str(bad_csv)],
            "not after start",
        ),
        "aedat_is_text": (
            ["convert", "aedat4", str(text_aedat), str(tmp_path / "o")],
            "cannot open",
        ),
        "aedat_without_events": (
            ["convert", "aedat4", str(empty_aedat), str(tmp_path / "o")],
            "holds no events",
        ),
        "names_without_labels": ([*aedat_argv, "--names", "a,b"], "give a label CSV"),
        "names_twice": (
            [*aedat_argv, "--labels", str(good_csv), "--names", "a,a"],
            "given twice",
        ),
        "out_under_a_file": (
            ["convert", "synthetic", str(a_file / "o"), "--samples", "1"],
            "Not a directory",
        ),
        "record_bad_namespace": (
            ["record", str(tmp_path / "o"), "--namespace", "bad ns!", "--duration", "1"],
            "not a valid ROS namespace",
        ),
    }[case]
    assert main(argv) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert err.startswith("hsnn-bag: error:") and match in err
    assert "\n" not in err and "Traceback" not in err and "Stacktrace" not in err
    assert not (tmp_path / "o").exists(), "nothing half-written"


def test_info_counts_what_a_corrupt_chunk_hid(tmp_path, capsys):
    # Bytes scrambled inside the MCAP: the reader returns fewer messages than the index lists and
    # skips nothing it can name. info used to say "skipped: nothing" for such a bag.
    out = tmp_path / "corrupt"
    synthetic_to_bag(out, 4, seed=5, height=64, width=64)
    f = next(out.glob("*.mcap"))
    data = f.read_bytes()
    mid = len(data) // 2
    f.write_bytes(data[:mid] + data[mid : mid + 4000][::-1] + data[mid + 4000 :])
    assert main(["info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    read = info["topics"]["/events"]["messages"]
    assert info["unread"]["/events"] == info["topics"]["/events"]["indexed"] - read > 0
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "skipped:   nothing" not in text
    assert f"{info['unread']['/events']} x /events message listed in the index" in text


def _stock_driver_bag(path: Path, storage: str) -> tuple[np.ndarray, np.ndarray]:
    """A bag as a stock driver's recording has it, written with rosbags: libcaer_cmp packets of
    type event_camera_msgs/msg/EventPacket on /event_camera/events (sqlite3: format 8, before
    Iron, no embedded definitions), next to this package's EventPacket on /events (EVT3 at
    another geometry). Returns the events of each topic."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    rng = np.random.default_rng(3)
    store = package_typestore()
    plugin = StoragePlugin.SQLITE3 if storage == "sqlite3" else StoragePlugin.MCAP
    writer = Writer(path, version=8 if storage == "sqlite3" else 9, storage_plugin=plugin)
    writer.open()
    written = {}
    for topic, msgtype, enc, (w, h) in (
        ("/event_camera/events", MSG_EVENT_CAMERA_PACKET, "libcaer_cmp", (346, 260)),
        ("/events", MSG_EVENT_PACKET, "evt3", (640, 480)),
    ):
        conn = writer.add_connection(topic, msgtype, typestore=store)
        n = 3000
        t = np.sort(rng.integers(7_000_000, 7_300_000, n))
        events = make_events(t, rng.integers(0, w, n), rng.integers(0, h, n), rng.integers(0, 2, n))
        for pkt in packetize(events, 10_000, w, h, enc):
            msg = event_packet_message(store, pkt)
            # The two EventPacket types have the same fields: the same CDR bytes.
            writer.write(conn, pkt.log_time_ns, store.serialize_cdr(msg, MSG_EVENT_PACKET))
        written[topic] = events
    writer.close()
    return written["/event_camera/events"], written["/events"]


@pytest.mark.parametrize("storage", STORAGES)
def test_info_decodes_the_events_of_a_stock_driver_topic(tmp_path, storage, capsys):
    bag = tmp_path / "stock"
    stock, ours = _stock_driver_bag(bag, storage)
    assert main(["info", str(bag), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert sorted(info["events"]) == ["/event_camera/events", "/events"]
    ev = info["events"]["/event_camera/events"]
    assert ev["type"] == "event_camera_msgs/msg/EventPacket"
    assert ev["events"] == stock.size and ev["encodings"] == {"libcaer_cmp": ev["packets"]}
    assert ev["geometry"] == {"346x260": ev["packets"]} and ev["packets"] >= 30
    assert ev["sensor_time_us"] == [int(stock["t"][0]), int(stock["t"][-1])]
    assert ev["dropped"] == {} and ev["packets_rejected"] == {}
    assert info["events"]["/events"]["events"] == ours.size
    # --events-topic: that one only, in JSON and in text
    argv = ["info", str(bag), "--events-topic", "/event_camera/events"]
    assert main([*argv, "--json"]) == 0
    assert list(json.loads(capsys.readouterr().out)["events"]) == ["/event_camera/events"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert f"events:    /event_camera/events: {stock.size} events in" in text
    assert "libcaer_cmp 346x260" in text and "events:    /events:" not in text
    # a topic that is not there, or carries no event packets: one line, exit 2
    for topic in ("/camera/events", "/labels"):
        assert main(["info", str(bag), "--events-topic", topic]) == EXIT_BAD_INPUT
        err = capsys.readouterr().err.strip()
        assert err.startswith("hsnn-bag: error: --events-topic") and "\n" not in err
        assert "/event_camera/events (event_camera_msgs/msg/EventPacket)" in err


def _evt3_raw(path: Path, n: int = 200_000) -> np.ndarray:
    """A Prophesee-style EVT 3.0 .raw file (text header, then the words) of ``n`` events."""
    from hsnn_perception.core.events.codecs import encode_packet

    rng = np.random.default_rng(8)
    t = np.sort(rng.integers(0, 2_000_000, n))
    events = make_events(t, rng.integers(0, 640, n), rng.integers(0, 480, n), rng.integers(0, 2, n))
    _, payload = encode_packet(events, "evt3", 640, 480)
    path.write_bytes(b"% camera_integrator_name Prophesee\n% format EVT3;height=480;width=640\n")
    with path.open("ab") as f:
        f.write(payload)
    return events


def test_converters_report_the_fraction_of_their_input_covered(tmp_path):
    """Each converter tells its progress callback how far it got, rising to 1 (whole input) or
    to about 1 of --max-us (a part of it)."""
    from hsnn_perception.core.io.bag.convert import evt3_raw_to_bag
    from hsnn_perception.core.io.bag.write import synthetic_to_bag

    raw = tmp_path / "cam.raw"
    _evt3_raw(raw, 1_500_000)  # several reads of RAW_READ_BYTES

    def run(convert, *args, **kwargs) -> list[float]:  # noqa: ANN001
        seen: list[float] = []
        convert(*args, progress=seen.append, **kwargs)
        assert seen and seen == sorted(seen) and 0 <= seen[0] and seen[-1] <= 1, seen
        return seen

    whole = run(evt3_raw_to_bag, raw, tmp_path / "a")
    assert len(whole) >= 4 and whole[-1] == 1.0
    # of 2 s recorded, the first second: the read that passes its end reports 1
    partial = run(evt3_raw_to_bag, raw, tmp_path / "b", max_us=1_000_000)
    assert len(partial) >= 2 and partial[-2] < 1.0 and partial[-1] == 1.0
    assert run(synthetic_to_bag, tmp_path / "c", 3) == [1 / 3, 2 / 3, 1.0]


def test_convert_shows_progress_when_asked_and_is_quiet_in_a_pipe(tmp_path, capsys):
    raw = tmp_path / "cam.raw"
    events = _evt3_raw(raw)
    assert main(["convert", "raw", str(raw), str(tmp_path / "a"), "--progress"]) == 0
    captured = capsys.readouterr()
    bars = captured.err.replace("\r", "\n").splitlines()
    assert any(line.startswith("reading cam.raw: 100%") for line in bars), captured.err
    assert "messages on /events" in captured.out
    _, width, height = bag_packets(tmp_path / "a")
    assert (width, height) == (640, 480)
    assert sum(p.events.size for p in bag_packets(tmp_path / "a")[0]) == events.size
    # stderr is no terminal here: no bar unless asked for, so a log gets the result line only
    assert main(["convert", "raw", str(raw), str(tmp_path / "b")]) == 0
    assert capsys.readouterr().err == ""
    # synthetic gestures have no input file: the bytes written into the bag are shown
    argv = ["convert", "synthetic", str(tmp_path / "c"), "--samples", "2", "--progress"]
    assert main(argv) == 0
    assert "writing c:" in capsys.readouterr().err
    quiet = ["convert", "synthetic", str(tmp_path / "d"), "--samples", "2", "--no-progress"]
    assert main(quiet) == 0
    assert capsys.readouterr().err == ""


def test_bad_arguments_exit_2_without_traceback(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "hsnn_perception.tools.bag_cli",
            "convert",
            "synthetic",
            str(tmp_path / "o"),
            "--samples",
            "0",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode == 2 and "must be >= 1" in proc.stderr
    assert "Traceback" not in proc.stderr
    with pytest.raises(SystemExit):
        main(["record", str(tmp_path / "r"), "--duration", "1", "--windows", "2"])
    assert main(["record", str(tmp_path / "r"), "--topics", "nonsense"]) == EXIT_BAD_INPUT


def _start_recorder(out: Path, *args: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "hsnn_perception.tools.bag_cli", "record", str(out), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
        env=os.environ.copy(),
    )
    line = proc.stdout.readline()  # printed once the subscriptions exist
    assert line.startswith("recording into"), line + proc.stdout.read()
    return proc


def test_record_stops_on_sigint_and_closes_the_bag(tmp_path):
    out = tmp_path / "idle"
    proc = _start_recorder(out, "--namespace", f"idle_{random.randint(0, 10**6)}")
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, output
    assert "stopped (SIGINT)" in output and "Traceback" not in output
    assert (out / "metadata.yaml").is_file(), "the bag was closed properly"
    from rosbags.rosbag2 import Reader

    with Reader(out) as reader:
        assert reader.message_count == 0


@pytest.mark.slow
def test_record_a_running_pipeline(tmp_path, default_bundle_dir):
    from rosbags.rosbag2 import Reader

    from hsnn_perception.graph import pipeline
    from hsnn_perception.tools.session import STAGES, run_session

    samples, seed = 4, 21
    ns = f"rec_{random.randint(0, 10**6)}"
    out = tmp_path / "live"
    # In-process (the command line's signal handling is tested above), in its own rclpy context
    # next to run_session's; subscribed before the pipeline starts, so nothing is missed.
    ready = threading.Event()
    done: list = []
    thread = threading.Thread(
        target=lambda: done.append(
            record(out, namespace=ns, windows=samples, duration_s=120, on_ready=ready.set)
        )
    )
    thread.start()
    try:
        assert ready.wait(30), "the recorder did not come up"
        result = run_session(
            pipeline(model=str(default_bundle_dir), num_samples=samples, seed=seed),
            samples,
            namespace=ns,
            composed=True,
            timeout_s=90,
            log_dir=tmp_path,
        )
    finally:
        thread.join(timeout=150)
    assert done and done[0].stopped_by == f"{samples} windows", done
    assert [r.window_id for r in result.records] == list(range(samples))

    store = package_typestore()
    with Reader(out) as reader:
        conns = {c.topic: c for c in reader.connections}
        assert set(conns) == {"/" + t.lstrip("/") for t in RECORDABLE}
        counts = {t: c.msgcount for t, c in conns.items()}
        assert conns["/events"].msgtype == MSG_EVENT_PACKET
        assert "uint64 time_base" in conns["/events"].msgdef.data  # definitions embedded
        msgs: dict[str, list] = {t: [] for t in conns}
        for conn, _, raw in reader.messages():
            msgs[conn.topic].append(store.deserialize_cdr(raw, conn.msgtype))
    # one of each per window; three stage reports per window on /energy
    assert counts["/classification"] == samples
    assert counts["/snn/spikes"] == counts["/tensors"] == counts["/energy/total"] == samples
    assert counts["/energy"] == (len(STAGES) + 1) * samples  # + the driver's own reports
    assert counts["/labels"] == samples and counts["/diagnostics"] > 0
    assert sorted(m.window_id for m in msgs["/classification"]) == list(range(samples))
    preds = {r.window_id: r.prediction for r in result.records}
    assert {m.window_id: m.class_id for m in msgs["/classification"]} == preds
    # the recorded events are exactly the synthetic stream the driver played
    recorded = np.concatenate(
        [
            EventPacketData(
                0, m.time_base, m.encoding, m.width, m.height, m.events.tobytes()
            ).decode()
            for m in msgs["/events"]
        ]
    )
    gen = SyntheticGestures(height=128, width=128, seed=seed)
    np.testing.assert_array_equal(recorded, np.concatenate([e for e, *_ in gen.stream(samples)]))
    # and the recording is itself a replayable event bag with the same labels
    stream, width, height = bag_packets(out)
    assert (width, height) == (128, 128)
    assert [lab.class_id for lab in stream.labels] == [c for _, c, *_ in gen.stream(samples)]


RECORDINGS = ROOT.parent / "shared" / "recordings"


@pytest.mark.parametrize(
    ("kind", "name", "geometry"),
    [("raw", "evt3.raw", (1280, 720)), ("aedat4", "davis346.aedat4", (346, 260))],
    ids=["prophesee-evk4-evt3", "davis346-aedat4"],
)
def test_real_recordings_convert_and_evaluate(tmp_path, kind, name, geometry):
    """A real sensor's recording (the first second), through hsnn-bag convert and hsnn-eval with
    nothing but the paths: mapped onto the default model's input, windows predicted."""
    from hsnn_perception.evaluation.cli import eval_main

    recording = RECORDINGS / name
    if not recording.is_file():
        pytest.skip(f"no real recording at {recording} (the shared recordings are not here)")
    bag = tmp_path / "bag"
    argv = ["convert", kind, str(recording), str(bag), "--max-us", "1000000"]
    assert main([*argv, "--compression", "zstd"]) == 0
    _, width, height = bag_packets(bag)
    assert (width, height) == geometry
    assert eval_main([str(bag), "--out", str(tmp_path / "report"), "--no-progress"]) == 0
    result = json.loads((tmp_path / "report" / "result.json").read_text())
    predicted = [r["prediction"] for r in result["records"]]
    assert len(predicted) >= 5 and all(p is not None for p in predicted), predicted


def test_a_stock_driver_bag_evaluates_with_no_flags(tmp_path):
    """A bag as metavision_driver records it: event_camera_msgs/msg/EventPacket on
    /event_camera/events, raw EVT3 at 1280x720 (the real EVK4 recording; the CDR bytes of both
    EventPacket types are the same, only the type name differs). hsnn-eval gets only the path."""
    from rosbags.rosbag2 import Reader

    from hsnn_perception.evaluation.cli import eval_main

    recording = RECORDINGS / "evt3.raw"
    if not recording.is_file():
        pytest.skip(f"no real recording at {recording} (the shared recordings are not here)")
    ours = tmp_path / "ours"
    assert main(["convert", "raw", str(recording), str(ours), "--max-us", "800000"]) == 0
    stock = tmp_path / "stock"
    with Reader(ours) as reader, BagRecorder(stock, "mcap", package_typestore()) as rec:
        for _, log_ns, raw in reader.messages():
            rec.write("/event_camera/events", MSG_EVENT_CAMERA_PACKET, log_ns, raw)
    with Reader(stock) as reader:
        assert [(c.topic, c.msgtype) for c in reader.connections] == [
            ("/event_camera/events", "event_camera_msgs/msg/EventPacket")
        ]
    assert eval_main([str(stock), "--out", str(tmp_path / "report"), "--no-progress"]) == 0
    result = json.loads((tmp_path / "report" / "result.json").read_text())
    assert len(result["records"]) >= 4
    assert all(r["prediction"] is not None for r in result["records"])


def test_convert_a_dvsgesture_recording_and_evaluate_it(tmp_path, capsys):
    """The published DvsGesture layout (AEDAT 3.1 + _labels.csv, classes from 1) -> a bag with
    `--dvsgesture` and nothing else -> hsnn-eval with the shipped model: every labelled gesture
    window is scored under DvsGesture's class names."""
    from hsnn_perception.evaluation.cli import eval_main
    from hsnn_perception.training.dvsgesture import DVSGESTURE_LABELS, write_dvsgesture_folder

    gen = SyntheticGestures(seed=4)
    chunks, spans, t = [], [], 1_000_000
    for c in (0, 3, 7):
        ev, _ = gen.sample(c, class_id=c)
        ev["t"] += t
        chunks.append(ev)
        spans.append((c, t, t + 160_000))
        t += 400_000
    root = write_dvsgesture_folder(
        tmp_path / "DvsGesture", {"user01_led.aedat": (np.concatenate(chunks), spans)}, test=[]
    )
    bag = tmp_path / "bag"
    argv = ["convert", "aedat31", str(root / "user01_led.aedat"), str(bag), "--dvsgesture"]
    assert main(argv) == 0, capsys.readouterr().err
    labels = read_event_bag(bag, require_labels=True).labels
    assert [(lab.class_id, lab.label) for lab in labels] == [
        (c, DVSGESTURE_LABELS[c]) for c in (0, 3, 7)
    ]
    out = tmp_path / "report"
    assert eval_main([str(bag), "--out", str(out), "--no-progress", "--no-plots"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["labelled_windows"] == 3, report
