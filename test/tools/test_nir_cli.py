"""``hsnn-nir`` as a user runs it: export the shipped model, import the graph back into a bundle
that hsnn-eval's path runs, and a refused graph or bad file ends with one line and exit 1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

nir = pytest.importorskip(
    "nir", reason="nir is not installed (pip install -r requirements-nir.txt)"
)

ROOT = Path(__file__).resolve().parents[2]


def hsnn_nir(*args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "hsnn-nir"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_export_then_import_gives_a_bundle_that_classifies_like_the_original(
    tmp_path, default_bundle_dir
):
    from hsnn_perception.core.hybrid.bundle import ModelBundle
    from hsnn_perception.training.export import predict_bundle

    graph = tmp_path / "default.nir"
    done = hsnn_nir("export", str(default_bundle_dir), str(graph), "--dt", "0.001")
    assert done.returncode == 0, done.stderr
    assert "Loihi latency 2" in done.stdout and "CubaLIF" in done.stdout
    assert float(nir.read(str(graph)).metadata["dt"]) == 0.001
    out = tmp_path / "imported"
    done = hsnn_nir(
        "import",
        str(graph),
        str(out),
        "--ann",
        str(default_bundle_dir / "ann.onnx"),
        "--json",
        "--calibration",
        "8",
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["dt"] == 0.001 and report["dt_from"] == "metadata"
    assert [layer["method"] for layer in report["layers"]] == ["exact", "exact"]
    # With calibration windows (the default) each layer's agreement with the real-valued graph
    # is measured: Loihi's truncated decays keep it just below 1.
    assert all(0.99 < layer["float_agreement"] < 1 for layer in report["layers"])
    original, imported = ModelBundle.load(default_bundle_dir), ModelBundle.load(out)
    x = (np.random.default_rng(0).random((4, 16, 2, 32, 32)) < 0.08).astype(np.uint8)
    np.testing.assert_array_equal(
        predict_bundle(original, x).logits, predict_bundle(imported, x).logits
    )


def test_a_refused_graph_is_one_line_naming_the_node_and_exit_1(tmp_path):
    graph = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type=np.array([2, 8, 8])),
            "pool": nir.SumPool2d(
                kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])
            ),
            "output": nir.Output(output_type=np.array([2, 4, 4])),
        },
        edges=[("input", "pool"), ("pool", "output")],
        type_check=False,
    )
    nir.write(str(tmp_path / "pool.nir"), graph)
    done = hsnn_nir("import", str(tmp_path / "pool.nir"), str(tmp_path / "b"), "--calibration", "0")
    assert done.returncode == 1
    assert done.stderr.startswith("hsnn-nir: error: node 'pool' (SumPool2d): pooling")
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["import", "{tmp}/missing.nir", "{tmp}/b"], "missing.nir: no such file"),
        (["import", "{tmp}/junk.nir", "{tmp}/b"], "not a readable NIR graph"),
        (["export", "{tmp}/nowhere", "{tmp}/x.nir"], "no model bundle at"),
    ],
    ids=["missing", "not-nir", "no-bundle"],
)
def test_bad_files_are_one_line_and_exit_1(tmp_path, args, message):
    (tmp_path / "junk.nir").write_bytes(b"\x00" * 64)
    done = hsnn_nir(*[a.format(tmp=tmp_path) for a in args])
    assert done.returncode == 1 and message in done.stderr
    assert "Traceback" not in done.stderr


def test_bad_command_lines_are_usage_errors():
    assert hsnn_nir("export").returncode == 2
    done = hsnn_nir("export", "a", "b", "--dt", "-1")
    assert done.returncode == 2 and "--dt" in done.stderr and "Traceback" not in done.stderr
