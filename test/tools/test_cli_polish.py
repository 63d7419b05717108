"""Command-line polish: every tool's --help shows the defaults, and a closed output pipe
(`hsnn-bag info BAG | head -1`) ends the tool quietly, checked with real subprocess pipes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hsnn_perception.evaluation.cli import build_parser as eval_parser
from hsnn_perception.tools.bag_cli import main as bag_main
from hsnn_perception.tools.errors import EXIT_CLOSED_PIPE
from hsnn_perception.training.cli import train_main

ROOT = Path(__file__).resolve().parents[2]


def _flat(text: str) -> str:
    return " ".join(text.split())  # argparse wraps lines at the terminal width


def test_help_shows_defaults(capsys):
    text = _flat(eval_parser().format_help())
    assert "--speed SPEED 1 = sensor pace" in text and "(default: 1.0)" in text
    assert "--chip {loihi,loihi2} (default: loihi)" in text
    assert "(default: models/default)" in text  # its own wording, not repeated
    with pytest.raises(SystemExit):
        bag_main(["convert", "synthetic", "--help"])
    text = _flat(capsys.readouterr().out)
    assert "--samples SAMPLES (default: 100)" in text  # an option without help text
    assert "--storage {mcap,sqlite3} (default: mcap)" in text
    assert train_main(["--help"]) == 0
    text = _flat(capsys.readouterr().out)
    assert "--epochs EPOCHS (default: 12)" in text
    assert "accumulator interval I (timesteps) (default: 4)" in text
    for shown in (text, _flat(eval_parser().format_help())):
        assert "(default: None)" not in shown and "(default: False)" not in shown


@pytest.fixture(scope="module")
def bag(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pipe") / "bag"
    assert bag_main(["convert", "synthetic", str(out), "--samples", "2"]) == 0
    return out


def _bag_info(bag: Path, stdout: int) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hsnn_perception.tools.bag_cli", "info", str(bag)],
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        timeout=120,
    )


def test_closed_pipe_ends_quietly(bag):
    # The reader is gone before the tool writes: its first write meets a closed pipe (EPIPE).
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = _bag_info(bag, write_end)
    finally:
        os.close(write_end)
    assert proc.returncode == EXIT_CLOSED_PIPE, proc.stderr
    assert proc.stderr == ""  # no traceback, no "Exception ignored", no error line


def test_info_piped_into_head(bag):
    proc = subprocess.run(
        f"{sys.executable} -m hsnn_perception.tools.bag_cli info {bag} | head -1",
        shell=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 0 and proc.stdout.count("\n") == 1 and proc.stdout.strip()
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr
