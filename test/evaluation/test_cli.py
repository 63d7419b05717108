"""hsnn-eval command line: reports on good input, one-line errors and exit status 2 on bad."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from eval_bundles import make_bundle

from hsnn_perception.core.io.bag.msgtypes import MSG_ENERGY_REPORT, TOPIC_ENERGY
from hsnn_perception.core.io.bag.write import (
    BagRecorder,
    packetize,
    synthetic_to_bag,
    write_event_bag,
)
from hsnn_perception.evaluation.cli import EXIT_BAD_INPUT, eval_main

ROOT = Path(__file__).resolve().parents[2]


def test_cli_writes_report(synthetic_bag, hybrid_bundle, tmp_path, capsys):
    out = tmp_path / "rep"
    argv = [str(synthetic_bag), "--bundle", str(hybrid_bundle), "--out", str(out)]
    code = eval_main([*argv, "--no-progress", "--ann-device", "jetson-orin-nano"])
    assert code == 0
    for name in ("report.md", "report.json", "result.json", "confusion.png", "latency.png"):
        assert (out / name).is_file()
    summary = json.loads((out / "report.json").read_text())
    assert summary["windows"] == 4 and summary["settings"]["ann_device"] == "jetson-orin-nano"
    assert "accuracy" in capsys.readouterr().out


def test_cli_takes_a_shipped_models_name(tmp_path):
    """`--bundle synthetic-128` as the launch files' `model:=synthetic-128`: the shipped folder of
    that name, not a path relative to the working directory."""
    bag = tmp_path / "syn128.mcap.bag"
    synthetic_to_bag(bag, 4, seed=5, storage="mcap", height=128, width=128)
    out = tmp_path / "rep"
    argv = [str(bag), "--bundle", "synthetic-128", "--out", str(out), "--no-plots"]
    assert eval_main([*argv, "--no-progress"]) == 0
    summary = json.loads((out / "report.json").read_text())
    assert summary["model"].startswith("synthetic128-"), summary["model"]
    assert summary["windows"] == 4


def test_cli_model_family(synthetic_bag, tmp_path, capsys):
    family = tmp_path / "family"
    make_bundle(family / "S1A1", "S1A1", seed=1)
    make_bundle(family / "A2", "A2", snn=False, seed=2)
    out = tmp_path / "fam"
    code = eval_main(
        [
            str(synthetic_bag),
            "--bundle",
            str(family),
            "--out",
            str(out),
            "--no-progress",
            "--no-plots",
        ]
    )
    assert code == 0
    table = (out / "family.md").read_text()
    assert "| S1A1 |" in table and "| A2 |" in table
    assert (out / "S1A1" / "report.md").is_file() and (out / "A2" / "report.md").is_file()


@pytest.mark.parametrize(
    "case",
    [
        "not_a_bag",
        "missing",
        "no_events",
        "no_bundle",
        "no_labels",
        "out_is_a_file",
        "dds_negative_timeout",
        "dds_bad_namespace",
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(case, synthetic_bag, hybrid_bundle, tmp_path, capsys):
    bag, bundle = synthetic_bag, hybrid_bundle
    extra: list[str] = []
    out = tmp_path / "o"
    if case == "not_a_bag":
        bag = tmp_path / "x.txt"
        bag.write_text("hello")
    elif case == "missing":
        bag = tmp_path / "nothing"
    elif case == "no_events":
        bag = tmp_path / "energy_only"
        with BagRecorder(bag) as rec:
            rec.write(TOPIC_ENERGY, MSG_ENERGY_REPORT, 1, {})
    elif case == "no_bundle":
        bundle = tmp_path / "empty_models"
        bundle.mkdir()
    elif case == "no_labels":
        from hsnn_perception.core.events.codecs import make_events

        bag = tmp_path / "nolabels"
        ev = make_events([0, 200_000], [1, 2], [1, 2], [0, 1])
        write_event_bag(bag, packetize(ev, 10_000, 64, 64))
        extra = ["--require-labels"]
    elif case == "out_is_a_file":  # refused before the evaluation runs, not after
        out.write_text("x")
    elif case == "dds_negative_timeout":  # used to run the replay and classify nothing
        extra = ["--mode", "dds", "--timeout", "-5"]
    elif case == "dds_bad_namespace":  # used to end in an rclpy traceback
        extra = ["--mode", "dds", "--namespace", "bad ns!"]
    code = eval_main(
        [str(bag), "--bundle", str(bundle), "--out", str(out), "--no-progress", *extra]
    )
    err = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT
    assert err.startswith("hsnn-eval: error:") and err.count("\n") == 1
    assert "Traceback" not in err
    if case != "out_is_a_file":
        assert not out.exists(), "no empty report directory left behind"


def test_cli_report_counts_messages_a_corrupt_bag_hid(synthetic_bag, hybrid_bundle, tmp_path):
    # Scrambled bytes in the MCAP: the reader silently returns fewer messages than the index lists.
    # The report used to say "nothing dropped or skipped" (and "the bag has no labels").
    bag = tmp_path / "corrupt"
    shutil.copytree(synthetic_bag, bag)
    f = next(bag.glob("*.mcap"))
    data = f.read_bytes()
    mid = len(data) // 2
    f.write_bytes(data[:mid] + data[mid : mid + 4000][::-1] + data[mid + 4000 :])
    out = tmp_path / "rep"
    argv = [str(bag), "--bundle", str(hybrid_bundle), "--out", str(out), "--no-progress"]
    assert eval_main([*argv, "--no-plots"]) == 0
    md = (out / "report.md").read_text()
    assert "nothing dropped or skipped" not in md
    assert "/events messages listed in the index but not readable" in md
    # Damage at the start of the file takes the first chunk, which holds the labels: the report
    # says they were there but unreadable, not that the bag has none.
    head = tmp_path / "head"
    shutil.copytree(synthetic_bag, head)
    f = next(head.glob("*.mcap"))
    data = f.read_bytes()
    f.write_bytes(data[:100] + data[100:4100][::-1] + data[4100:])
    argv = [str(head), "--bundle", str(hybrid_bundle), "--out", str(tmp_path / "rep2")]
    assert eval_main([*argv, "--no-plots", "--no-progress"]) == 0
    doc = json.loads((tmp_path / "rep2" / "report.json").read_text())
    assert any("label messages but none could be read (damaged)" in n for n in doc["notes"]), doc


def test_cli_error_names_the_model_and_is_one_line(synthetic_bag, tmp_path, capsys):
    # A manifest with fewer labels than the ANN has outputs: the message (numpy logits) used to
    # span several lines and did not say which model was at fault; now the bundle is checked
    # against its ANN before the evaluation starts.
    bundle = make_bundle(tmp_path / "short", "S1A1")
    doc = json.loads((bundle / "manifest.json").read_text())
    doc["labels"] = doc["labels"][:2]
    (bundle / "manifest.json").write_text(json.dumps(doc))
    argv = [str(synthetic_bag), "--bundle", str(bundle), "--out", str(tmp_path / "o")]
    assert eval_main([*argv, "--no-progress"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.startswith("hsnn-eval: error:") and str(bundle) in err and err.count("\n") == 1
    assert "gives 11 scores but the bundle has 2 labels" in err  # checked before any window


def test_cli_as_module_no_traceback(hybrid_bundle, tmp_path):
    junk = tmp_path / "junk.mcap"
    junk.write_bytes(b"\x89MCAP0\r\n" + b"\x00" * 10)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "hsnn_perception.evaluation.cli",
            str(junk),
            "--bundle",
            str(hybrid_bundle),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == EXIT_BAD_INPUT, proc.stderr
    assert "Traceback" not in proc.stderr and "hsnn-eval: error:" in proc.stderr
    assert "junk.mcap" in proc.stderr


def test_report_of_a_run_with_no_window_warns_nothing(tmp_path):
    # A DDS replay that classified nothing: the latency plot used to print matplotlib's
    # "No artists with labels found to put in legend" warning under the command's output.
    import warnings

    from hsnn_perception.evaluation.records import ReplayResult
    from hsnn_perception.evaluation.report import write_report

    result = ReplayResult(
        bag="b",
        bundle="m",
        mode="dds",
        labels=["a", "b"],
        dropped={"windows the bag spans with no classification (lost or timed out)": 2},
        bag_report={"notes": ["line one\n  line two"]},
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        paths = write_report(result, tmp_path / "rep")
    assert paths["latency"].is_file()
    md = paths["markdown"].read_text()
    assert "- line one line two" in md and "windows: 0" in md
