"""The installed command-line tools answer --help, and a bad argument gives a message and a
non-zero exit, never a traceback."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOLS = [
    "hsnn-train",
    "hsnn-compare",
    "hsnn-convert",
    "hsnn-eval",
    "hsnn-bag",
    "hsnn-demo",
    "hsnn-nir",
]


def run(script: str, *args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / script), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


@pytest.mark.parametrize("script", TOOLS)
def test_help(script):
    result = run(script, "--help")
    assert result.returncode == 0, result.stderr
    assert "usage" in result.stdout.lower()


@pytest.mark.parametrize("script", TOOLS)
def test_bad_option_is_a_message_not_a_traceback(script):
    result = run(script, "--no-such-option")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and result.stderr.strip()


def test_demo_with_a_missing_model_fails_cleanly(tmp_path):
    result = run("hsnn-demo", "--model", str(tmp_path / "nowhere"))
    assert result.returncode == 2
    assert "no model bundle" in result.stderr and "Traceback" not in result.stderr
