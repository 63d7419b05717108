"""hsnn-eval command line: reports on good input, one-line errors and exit status 2 on bad."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from eval_bundles import make_bundle

from hsnn_perception.core import rosbag_io as rb
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


@pytest.mark.parametrize("case", ["not_a_bag", "missing", "no_events", "no_bundle", "no_labels"])
def test_cli_bad_input_is_one_line_and_exit_2(case, synthetic_bag, hybrid_bundle, tmp_path, capsys):
    bag, bundle = synthetic_bag, hybrid_bundle
    extra: list[str] = []
    if case == "not_a_bag":
        bag = tmp_path / "x.txt"
        bag.write_text("hello")
    elif case == "missing":
        bag = tmp_path / "nothing"
    elif case == "no_events":
        bag = tmp_path / "energy_only"
        with rb.BagRecorder(bag) as rec:
            rec.write(rb.TOPIC_ENERGY, rb.MSG_ENERGY_REPORT, 1, {})
    elif case == "no_bundle":
        bundle = tmp_path / "empty_models"
        bundle.mkdir()
    elif case == "no_labels":
        from hsnn_perception.core.events import make_events

        bag = tmp_path / "nolabels"
        ev = make_events([0, 200_000], [1, 2], [1, 2], [0, 1])
        rb.write_event_bag(bag, rb.packetize(ev, 10_000, 64, 64))
        extra = ["--require-labels"]
    code = eval_main(
        [str(bag), "--bundle", str(bundle), "--out", str(tmp_path / "o"), "--no-progress", *extra]
    )
    err = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT
    assert err.startswith("hsnn-eval: error:") and err.count("\n") == 1
    assert "Traceback" not in err


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
