"""The type checker runs with the tests: mypy over hsnn_perception and hsnn_bridge, strict on
core/ (pyproject.toml [tool.mypy]). Its cache lives in build/mypy_cache, so after the first run
(about 40 s on two cores) a run takes seconds."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _mypy_config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]


@pytest.mark.timeout(300)
def test_mypy_finds_no_errors():
    result = subprocess.run(
        [sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True, timeout=280
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found" in result.stdout, result.stdout


def test_core_gets_every_check_of_mypys_strict_mode():
    """What ``mypy --strict`` turns on (as this mypy lists it) is on for hsnn_perception.core,
    per module where mypy allows it, else globally; so a new strict check of a newer mypy shows
    up here instead of being left out silently."""
    help_text = subprocess.run(
        [sys.executable, "-m", "mypy", "--help"], capture_output=True, text=True, check=True
    ).stdout
    block = help_text.split("\n  --strict ", 1)[1].split("\n  --", 1)[0]
    block = re.sub(r"-\s+", "-", block)  # flag names wrapped over lines
    flags = {f.replace("-", "_") for f in re.findall(r"--([a-z][a-z-]+)", block)}
    assert "disallow_untyped_defs" in flags and "warn_return_any" in flags, flags
    config = _mypy_config()
    (core,) = [o for o in config["overrides"] if o["module"] == ["hsnn_perception.core.*"]]
    missing = [f for f in sorted(flags) if core.get(f) is not True and config.get(f) is not True]
    assert not missing, f"strict checks not enabled for core/: {missing}"


def test_core_is_strict_whole_and_only_named_modules_outside_it_are_relaxed():
    """Every module under core/ gets the strict checks (no override relaxes or ignores any);
    outside core/, modules still being typed are named one by one, no wildcard."""
    for override in _mypy_config()["overrides"]:
        relaxes = override.get("ignore_errors") or override.get("disallow_untyped_defs") is False
        if not relaxes:
            continue
        for module in override["module"]:
            assert module.startswith(("hsnn_perception.", "hsnn_bridge.")), module
            assert not module.startswith("hsnn_perception.core"), module
            assert not module.endswith(".*"), module
