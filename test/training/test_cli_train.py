"""Tests of the training command lines (hsnn_perception/training/cli.py): ``hsnn-train``.

(Named test_cli_train.py, not test_cli.py: test/evaluation/test_cli.py exists and pytest's default
import mode needs unique basenames in folders without __init__.py.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hsnn_perception.core.hybrid.bundle import ModelBundle
from hsnn_perception.training.cli import main, train_main
from hsnn_perception.training.data import InputSpec, synthetic_spikeset
from hsnn_perception.training.export import predict_bundle

ROOT = Path(__file__).resolve().parents[2]
TINY = [
    "--n-train", "22", "--n-test", "11", "--epochs", "1", "--max-steps", "2",
    "--sensor-height", "64", "--sensor-width", "64", "--height", "16", "--width", "16",
    "--channels", "4,8,8,8", "--hidden", "16", "--batch-size", "11", "--no-progress",
]  # fmt: skip


def test_train_writes_a_bundle_with_recipe_and_measured_accuracy(tmp_path, capsys):
    out = tmp_path / "bundle"
    argv = ["--out", str(out), "--k", "2", "--interval", "2", "--qat-epochs", "1"]
    argv += TINY + ["--cache-dir", str(tmp_path / "cache")]
    assert train_main(argv) == 0
    bundle = ModelBundle.load(out)
    assert bundle.interval == 2 and bundle.name == "synthetic-S2A4-I2"
    assert bundle.recipe["model"] == "S2A4" and "--qat-epochs 1" in bundle.recipe["command"]
    m = bundle.metrics
    assert m["test_samples"] == 11 and "snn_runtime" in m["measured_with"]
    # the stored accuracy is what the deployed path gives on the held-out samples
    test = synthetic_spikeset(11, InputSpec(64, 64, 16, 16), seed=0, first_index=1_000_000)
    run = predict_bundle(bundle, test.spikes)
    assert m["test_accuracy"] == pytest.approx(float(np.mean(run.predictions == test.labels)))
    assert m["torch_agreement"] == 1.0
    assert len(m["firing_rates_after"]) == 2
    assert (out / m["int8"]["file"]).is_file() and 0 <= m["int8"]["test_accuracy"] <= 1
    assert "test accuracy" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--k", "9"], "k (spiking layers) must be in 0..6"),
        (["--interval", "3"], "interval 3 does not divide the 16 timesteps"),
        (["--dataset", "dvsgesture"], "needs --data PATH"),
        (["--dataset", "dvsgesture", "--data", "/nonexistent"], "does not exist"),
        (["--height", "24"], "must divide the sensor"),
        (["--channels", "4,8"], "--channels needs 4 widths"),
        # checked before any data is rendered or trained on
        (["--hidden", "0"], "argument --hidden: must be >= 1"),  # was "channels must be ..."
        (["--n-train", "-5"], "argument --n-train: must be >= 1"),
        (["--lr", "nan"], "argument --lr: must be a finite number > 0"),
        (["--snn-backend", "foo"], "argument --snn-backend: invalid choice"),  # was after training
        (["--rate-target", "99:0:1"], "no effect without --rate-weight"),  # was silently ignored
        (["--rate-weight", "1"] + ["--rate-target", "99:0:1"] * 3, "one per spiking layer (2"),
        (["--dataset", "aedat4", "--data", str(ROOT / "README.md")], "is a file"),
    ],
)
def test_bad_arguments_end_with_a_message_not_a_traceback(argv, message, tmp_path, capsys):
    code = train_main(["--out", str(tmp_path / "b"), "--no-cache"] + TINY + argv)
    err = capsys.readouterr().err
    assert code != 0
    assert message in err and "Traceback" not in err


def test_usage_errors_from_argparse(capsys):
    assert train_main(["--k", "two"]) == 2
    assert "invalid int value" in capsys.readouterr().err
    assert main(["nonsense"]) == 2


def test_module_runs_as_a_command(tmp_path):
    # the documented form: python -m hsnn_perception.training.cli train ...
    proc = subprocess.run(
        [sys.executable, "-m", "hsnn_perception.training.cli", "train", "--rate-target", "x"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert proc.returncode == 2
    assert "percentile:low:high" in proc.stderr and "Traceback" not in proc.stderr


def test_rate_regularisation_options_reach_the_recipe(tmp_path):
    out = tmp_path / "b"
    argv = ["--out", str(out), "--k", "1", "--rate-target", "99:0.0:0.1", "--rate-weight", "2"]
    assert train_main(argv + TINY + ["--no-cache"]) == 0
    doc = json.loads((out / "manifest.json").read_text())
    assert doc["recipe"]["train"]["rate_targets"] == [{"percentile": 99.0, "low": 0.0, "high": 0.1}]
    assert doc["metrics"]["firing_rates_after"][0]["percentile"] == 99.0


def test_unusable_out_fails_before_training(tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    assert train_main(["--out", str(a_file), "--no-cache"] + TINY) == 1
    assert "is a file" in capsys.readouterr().err
    assert train_main(["--out", str(a_file / "b"), "--no-cache"] + TINY) == 1
    err = capsys.readouterr().err
    assert err.startswith("hsnn-train: error: cannot write to --out") and err.count("\n") == 1


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--ann-device", "foo"], "--ann-device 'foo': choose from"),  # used to give "-" energies
        (["--latency-runs", "0"], "--latency-runs must be >= 1"),
        (["--epochs", "-1"], "argument --epochs: must be >= 0"),
    ],
)
def test_compare_bad_arguments_fail_before_training(argv, message, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", "--out", str(out), "--ks", "2", "--no-cache"] + TINY + argv) != 0
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists(), "nothing written"
