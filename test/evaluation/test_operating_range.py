"""The report's operating-range section (evaluation/operating_range.py): a recording's input and
layer activity beside the reference the bundle's manifest stores (held-out synthetic gestures)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from hsnn_perception.core.io.bag.write import synthetic_to_bag
from hsnn_perception.evaluation.cli import eval_main
from hsnn_perception.evaluation.operating_range import (
    REFERENCE_KEY,
    compare_with_reference,
    measure_reference,
)
from hsnn_perception.tools.bag_cli import main as bag_main

RECORDINGS = Path(__file__).resolve().parents[2].parent / "shared" / "recordings"


def _report(bag: Path, bundle: Path, out: Path) -> dict:
    assert eval_main([str(bag), "--bundle", str(bundle), "--out", str(out), "--no-progress"]) == 0
    return json.loads((out / "report.json").read_text())


def test_the_shipped_model_stores_its_reference(default_bundle_dir):
    ref = json.loads((default_bundle_dir / "manifest.json").read_text())["metrics"][REFERENCE_KEY]
    assert ref["windows"] >= 100
    assert [d["layer"] for d in ref["layers"]] == ["1:conv", "2:conv"]  # S2A4
    inp = ref["input_spikes_per_position_step"]
    assert 0 < inp["p10"] <= inp["p50"] <= inp["p90"] < 0.5


def test_synthetic_gestures_of_another_seed_are_in_range(tmp_path, default_bundle_dir):
    bag = tmp_path / "syn"
    synthetic_to_bag(bag, 11, seed=7)
    cmp = _report(bag, default_bundle_dir, tmp_path / "r")["operating_range"]
    assert cmp["input"]["verdict"] == "in range", cmp
    assert [row["verdict"] for row in cmp["layers"]] == ["in range", "in range"], cmp
    assert "## Operating range" in (tmp_path / "r" / "report.md").read_text()


def test_silent_layers_are_reported_below_the_range(default_bundle_dir):
    ref = json.loads((default_bundle_dir / "manifest.json").read_text())["metrics"][REFERENCE_KEY]
    silent = [
        SimpleNamespace(
            layers=[
                {"layer": d["layer"], "spikes": 0, "neuron_updates": 100, "synaptic_ops": 10}
                for d in ref["layers"]
            ]
        )
    ]
    cmp = compare_with_reference(silent, ref)
    assert all(row["verdict"].startswith("below") for row in cmp["layers"])
    assert cmp["input"]["verdict"].startswith("below")
    assert compare_with_reference(silent, None) is None


def test_a_bundle_without_reference_reports_without_the_section(tmp_path, default_bundle_dir):
    bundle = tmp_path / "old"
    shutil.copytree(default_bundle_dir, bundle)
    doc = json.loads((bundle / "manifest.json").read_text())
    del doc["metrics"][REFERENCE_KEY]
    (bundle / "manifest.json").write_text(json.dumps(doc))
    bag = tmp_path / "syn"
    synthetic_to_bag(bag, 2, seed=7)
    assert _report(bag, bundle, tmp_path / "r")["operating_range"] is None
    assert "Operating range" not in (tmp_path / "r" / "report.md").read_text()


def test_reference_needs_at_least_one_sample(default_bundle_dir):
    with pytest.raises(ValueError, match="samples must be >= 1"):
        measure_reference(default_bundle_dir, samples=0)


@pytest.mark.parametrize(
    ("kind", "name"),
    [("raw", "evt3.raw"), ("aedat4", "davis346.aedat4")],
    ids=["prophesee-evk4-evt3", "davis346-aedat4"],
)
def test_a_real_recording_is_compared_with_the_reference(tmp_path, default_bundle_dir, kind, name):
    """Half a second of a real sensor's recording (mapped onto the model input), unlabelled:
    the report gives each layer's firing rate beside the synthetic reference, with a verdict."""
    recording = RECORDINGS / name
    if not recording.is_file():
        pytest.skip(f"no real recording at {recording} (the shared recordings are not here)")
    bag = tmp_path / "bag"
    assert bag_main(["convert", kind, str(recording), str(bag), "--max-us", "500000"]) == 0
    report = _report(bag, default_bundle_dir, tmp_path / "r")
    assert report["accuracy"] is None and report["windows"] >= 2
    # unlabelled: the predicted-class histogram covers every window
    assert sum(c["predicted"] for c in report["per_class"]) == report["windows"]
    cmp = report["operating_range"]
    assert [row["layer"] for row in cmp["layers"]] == ["1:conv", "2:conv"]
    for row in cmp["layers"]:
        assert row["rate_median"] is not None and row["verdict"] != "n/a"
    assert cmp["input"]["estimate"] > 0
    md = (tmp_path / "r" / "report.md").read_text()
    assert "spikes per neuron per step" in md and "reference p10" in md
