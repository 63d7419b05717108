"""DDS replay: a synthetic event bag played through the real nodes (driver source: rosbag) with the
shipped model, compared window by window with the offline evaluation of the same bag."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from hsnn_perception.core.io.bag.write import synthetic_to_bag
from hsnn_perception.evaluation.cli import EXIT_BAD_INPUT, eval_main
from hsnn_perception.evaluation.offline import OfflineSettings, evaluate_offline
from hsnn_perception.evaluation.records import ReplayResult
from hsnn_perception.evaluation.report import summarize, write_report
from hsnn_perception.tools.replay import lost_counts, offline_vs_dds, replay_dds

SAMPLES = 12
CHANCE = 1 / 11


@pytest.fixture(scope="module")
def bag(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("replay") / "syn12"
    synthetic_to_bag(path, SAMPLES, seed=5, storage="mcap")
    return path


@pytest.fixture(scope="module")
def offline(bag, default_bundle_dir) -> ReplayResult:
    return evaluate_offline(bag, default_bundle_dir, OfflineSettings(progress=False))


@pytest.mark.slow
def test_dds_replay_matches_offline_window_by_window(bag, offline, default_bundle_dir, tmp_path):
    # Half sensor pace: a busy shared host is less likely to starve a node into losing packets.
    result = replay_dds(bag, default_bundle_dir, speed=0.5, composed=False)
    assert result.mode == "dds" and result.settings["clock"].startswith("sim time")
    ids = [r.window_id for r in result.records]
    assert ids == list(range(SAMPLES)), f"a prediction for every window, got {ids}"
    summary = summarize(result)
    assert summary["labelled_windows"] == SAMPLES
    assert summary["accuracy"] >= 0.6, f"{summary['accuracy']} not far above chance {CHANCE:.2f}"
    assert not any("replay listener" in n for n in result.notes), result.notes
    # Same code on the same events: the same prediction and scores for every window whose SNN
    # did the same work. Events are best-effort: a window may only differ where losses were
    # measured (and reported), never silently.
    cmp = offline_vs_dds(offline, result)
    assert cmp["common"] == SAMPLES and not cmp["only_offline"] and not cmp["only_dds"]
    assert cmp["predictions_differ_same_snn_work"] == [], cmp
    lost = result.settings["driver_published_packets"] - result.settings["snn_received_packets"]
    if not result.dropped:
        assert lost == 0 and cmp["snn_work_differs"] == [] and cmp["predictions_differ"] == []
        assert cmp["max_score_diff"] is not None and cmp["max_score_diff"] < 1e-6, cmp
    else:  # what differs was measured: lost packets, late events (a window ended early) ...
        assert len(cmp["snn_work_differs"]) <= SAMPLES // 2, (cmp, result.dropped)
    if cmp["snn_work_differs"]:
        assert result.dropped, f"windows differ but no loss was reported: {cmp}"
    by_id = {r.window_id: r for r in offline.records}
    for r in result.records:
        o = by_id[r.window_id]
        if r.window_id not in cmp["snn_work_differs"]:
            assert r.energy["snn"].synaptic_ops == o.energy["snn"].synaptic_ops > 0
            assert r.energy["snn"].energy_j == pytest.approx(o.energy["snn"].energy_j)
        assert (r.t_start_us, r.t_end_us, r.label, r.n_events) == (
            o.t_start_us,
            o.t_end_us,
            o.label,
            o.n_events,
        )
        assert {"snn", "bridge", "classifier", "total"} <= set(r.energy)
        assert r.energy["snn"].source == "modelled" and r.energy["total"].energy_j > 0
        assert not math.isnan(r.end_to_end()) and r.end_to_end() > 0
    paths = write_report(result, tmp_path / "rep", plots=False)
    doc = json.loads(Path(paths["summary"]).read_text())
    assert doc["mode"] == "dds" and doc["windows"] == SAMPLES


@pytest.mark.slow
def test_cli_dds_as_fast_as_possible_loses_nothing(bag, offline, tmp_path, capsys):
    """Speed 0: the driver's flow control keeps the bag no more than a few windows ahead of the
    classifier, so best-effort transport loses nothing and the replay gives exactly the offline
    predictions, however busy the host."""
    out = tmp_path / "fast"
    argv = [str(bag), "--mode", "dds", "--speed", "0", "--composed", "--out", str(out)]
    assert eval_main([*argv, "--host-time", "--no-plots", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    result = ReplayResult.load(out / "result.json")
    assert result.mode == "dds" and result.settings["speed"] == 0.0
    assert result.settings["flow_control"] == "at most 4 windows in flight"
    assert result.settings["clock"] == "host"
    published = result.settings["driver_published_packets"]
    assert published == offline.bag_report["read"]["/events"], "the driver played the whole bag"
    assert result.settings["snn_received_packets"] == published
    assert result.dropped == {}, result.dropped
    # Every hop counted its losses, and none lost anything.
    assert len(result.lost) == 6 and not any(result.lost.values()), result.lost
    assert "dropped:" not in printed
    assert [r.window_id for r in result.records] == list(range(SAMPLES))
    cmp = offline_vs_dds(offline, result)
    assert cmp["snn_work_differs"] == [] and cmp["predictions_differ"] == [], cmp
    assert cmp["max_score_diff"] is not None and cmp["max_score_diff"] < 1e-6, cmp


@pytest.mark.parametrize(
    "case", ["not_a_bag", "negative_speed", "max_windows", "bad_backend", "flow_windows"]
)
def test_cli_dds_bad_input_is_exit_2(bag, tmp_path, case, capsys):
    junk = tmp_path / "junk.mcap"
    junk.write_bytes(b"\x00" * 32)
    argv, match = {
        "not_a_bag": ([str(junk)], "not a rosbag2"),
        "negative_speed": ([str(bag), "--speed", "-1"], "speed"),
        "max_windows": ([str(bag), "--max-windows", "2"], "--max-windows"),
        "bad_backend": ([str(bag), "--backend", "gpu"], "--backend"),
        "flow_windows": ([str(bag), "--flow-windows", "1"], "--flow-windows"),
    }[case]
    code = eval_main([*argv, "--mode", "dds", "--out", str(tmp_path / "o"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == EXIT_BAD_INPUT, err
    assert err.startswith("hsnn-eval: error:") and match in err and "\n" not in err


def test_lost_counts_read_each_hop_from_diagnostics():
    diagnostics = {
        "snn_feature": {"lost.packets": "3", "received.packets": "90"},
        "accumulator_bridge": {"lost.windows": "1"},
        "classifier": {"lost.windows": "0"},
    }
    lost = lost_counts(diagnostics)
    assert lost == {
        "event packets (seq gaps at the SNN node)": 3,
        "snn/spikes windows (window-id gaps at the bridge)": 1,
        "tensors windows (window-id gaps at the classifier)": 0,
    }  # the aggregator did not report: its hop is left out, not read as "nothing lost"


@pytest.fixture(scope="module")
def davis_bag(tmp_path_factory) -> Path:
    """Synthetic gestures at a DAVIS346's 346x260: no integer factor down to the 32x32 model."""
    path = tmp_path_factory.mktemp("replay") / "davis"
    synthetic_to_bag(path, 4, seed=3, storage="mcap", height=260, width=346)
    return path


@pytest.mark.slow
def test_cli_dds_maps_any_sensor_onto_the_model_input(davis_bag, default_bundle_dir, tmp_path):
    """346x260 events reach the 32x32 model through the SNN node's input mapping, over DDS as
    offline: the same windows, events and predictions (speed 0: lossless)."""
    offline = evaluate_offline(
        davis_bag,
        default_bundle_dir,
        OfflineSettings(progress=False, input_mapping="pad"),
    )
    out = tmp_path / "dds"
    argv = [str(davis_bag), "--mode", "dds", "--speed", "0", "--composed", "--host-time"]
    argv += ["--input-mapping", "pad", "--out", str(out), "--no-plots", "--no-progress"]
    assert eval_main(argv) == 0
    result = ReplayResult.load(out / "result.json")
    assert result.settings["sensor"] == "346x260" and result.settings["input_mapping"] == "pad"
    assert result.dropped == {}, result.dropped
    cmp = offline_vs_dds(offline, result)
    assert cmp["common"] == len(offline.records) >= 4 and not cmp["only_dds"], cmp
    assert cmp["snn_work_differs"] == [] and cmp["predictions_differ"] == [], cmp
    assert [r.n_events for r in result.records] == [r.n_events for r in offline.records]


@pytest.mark.parametrize(
    ("size", "extra", "match"),
    [
        (16, [], "sensor 16x16 cannot be mapped onto the model input 32x32 (input_mapping scale)"),
        (128, ["--input-roi", "100", "100", "50", "50"], "input_roi [100, 100, 50, 50]"),
    ],
    ids=["sensor_smaller_than_model", "roi_outside_sensor"],
)
def test_cli_dds_refuses_a_sensor_it_cannot_map_before_starting(
    tmp_path, size, extra, match, capsys, monkeypatch
):
    import hsnn_perception.tools.session as session

    def started(*_args, **_kw):
        raise AssertionError("the pipeline was started")

    monkeypatch.setattr(session, "run_session", started)
    bag = tmp_path / f"s{size}"
    synthetic_to_bag(bag, 1, seed=1, height=size, width=size)
    argv = [str(bag), "--mode", "dds", *extra, "--out", str(tmp_path / "o"), "--no-progress"]
    assert eval_main(argv) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert err.startswith("hsnn-eval: error:") and match in err, err
    assert "nothing was started" in err and "\n" not in err


@pytest.mark.slow
def test_cli_dds_plays_the_events_topic_it_is_given(tmp_path, default_bundle_dir):
    """A stock driver's recording (/event_camera/events, event_camera_msgs type, libcaer_cmp at
    346x260) beside another events topic: the driver node plays the topic named by
    --events-topic, so the DDS replay classifies the windows offline evaluation gives for it."""
    from test_bag_cli import _stock_driver_bag

    bag = tmp_path / "stock"
    stock, _ = _stock_driver_bag(bag, "sqlite3")
    topic = "/event_camera/events"
    offline = evaluate_offline(
        bag,
        default_bundle_dir,
        OfflineSettings(progress=False, measure=False, events_topic=topic),
    )
    assert offline.records and offline.settings["events_topic"] == topic
    out = tmp_path / "dds"
    argv = [str(bag), "--mode", "dds", "--events-topic", topic, "--speed", "0", "--composed"]
    assert eval_main([*argv, "--out", str(out), "--host-time", "--no-plots", "--no-progress"]) == 0
    result = ReplayResult.load(out / "result.json")
    assert result.settings["driver_published_packets"] == offline.bag_report["read"][topic]
    assert [r.t_start_us for r in result.records] == [r.t_start_us for r in offline.records]
    assert [r.prediction for r in result.records] == [r.prediction for r in offline.records]
    assert sum(r.n_events for r in result.records) == sum(r.n_events for r in offline.records)
    assert 0 < sum(r.n_events for r in result.records) <= stock.size
