"""hsnn-demo (hsnn_perception/tools/demo.py): bad arguments and a broken model end at once with
one line and exit status 2, before any node is started (no DDS needed)."""

from __future__ import annotations

import shutil

import pytest

from hsnn_perception.core.hybrid.bundle import default_bundle_path
from hsnn_perception.tools.demo import main


@pytest.fixture(autouse=True)
def _isolated_dds(monkeypatch):
    # main() sets these with setdefault; keep them out of the test process's environment.
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    monkeypatch.setenv("ROS_DOMAIN_ID", "0")


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--samples", "0"], "argument --samples: must be"),
        (["--samples", "-1"], "argument --samples: must be"),
        (["--interval", "-1"], "argument --interval: must be"),
        (["--speed", "-1"], "argument --speed: must be"),
        (["--speed", "nan"], "argument --speed: must be"),
        (["--timeout", "-1"], "argument --timeout: must be"),
        (["--seed", "-1"], "argument --seed: must be"),
    ],
)
def test_bad_values_are_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize("case", ["interval", "namespace", "bad_snn", "bad_ann", "no_model"])
def test_bad_input_is_one_line_exit_2_before_the_nodes_start(case, tmp_path, capsys):
    # These used to start the nodes, then wait a minute for a stage that refused to configure
    # (interval, broken model), or end in an rclpy traceback (namespace).
    bundle = tmp_path / "model"
    shutil.copytree(default_bundle_path(), bundle)
    argv, match = {
        "interval": (["--interval", "3"], "does not divide"),
        "namespace": (["--namespace", "bad ns!"], "not a valid ROS namespace"),
        "bad_snn": (["--model", str(bundle)], "snn.net"),
        "bad_ann": (["--model", str(bundle)], "ann.onnx"),
        "no_model": (["--model", str(tmp_path / "none")], "no model bundle"),
    }[case]
    if case == "bad_snn":
        (bundle / "snn.net").write_bytes(b"garbage" * 10)
    if case == "bad_ann":
        (bundle / "ann.onnx").write_bytes(b"garbage" * 10)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("hsnn-demo: error:") and match in err
    assert err.count("\n") == 1 and "Traceback" not in err
