import json
from pathlib import Path

import pytest

from hsnn_perception.core.hybrid.bundle import BUNDLE_FORMAT, BundleError, ModelBundle


def write_bundle(root: Path, **changes) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "snn.net").write_bytes(b"hdf5 stand-in: the bundle only checks that it exists")
    (root / "ann.onnx").write_bytes(b"onnx")
    doc = {
        "format": BUNDLE_FORMAT,
        "name": "t",
        "sensor": {"height": 128, "width": 128},
        "input": {"channels": 2, "height": 32, "width": 32},
        "bin_us": 10000,
        "timesteps": 16,
        "interval": 4,
        "labels": [f"c{i}" for i in range(11)],
        "snn": {"file": "snn.net", "output_shape": [8, 8, 8]},
        "ann": {"file": "ann.onnx", "input_name": "frames", "output_name": "logits"},
    }
    doc.update(changes)
    (root / "manifest.json").write_text(json.dumps(doc))
    return root


def test_load_derives_shapes(tmp_path):
    bundle = ModelBundle.load(write_bundle(tmp_path / "b"))
    assert bundle.frames == 4
    assert bundle.window_us == 160_000
    assert bundle.feature_shape == (8, 8, 8)
    assert bundle.ann_input_shape == (1, 32, 8, 8)
    assert bundle.num_classes == 11


def test_manifest_round_trip(tmp_path):
    bundle = ModelBundle.load(write_bundle(tmp_path / "b"))
    bundle.save_manifest()
    assert ModelBundle.load(tmp_path / "b") == bundle


def test_ann_baseline_accumulates_input_spikes(tmp_path):
    bundle = ModelBundle.load(write_bundle(tmp_path / "b", snn=None))
    assert bundle.feature_shape == (2, 32, 32)
    assert bundle.ann_input_shape == (1, 8, 32, 32)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"interval": 3}, "does not divide"),
        ({"input": {"channels": 2, "height": 48, "width": 32}}, "integer downsampling"),
        ({"labels": []}, "no labels"),
        ({"labels": ["a", "\ud800"]}, "not valid UTF-8"),
        ({"labels": ["a\x00b"]}, "zero character"),
        ({"snn": None, "ann": None}, "SNN part, an ANN part or both"),
        ({"format": "other/1"}, "format"),
        ({"snn": {"file": "missing.net", "output_shape": [1, 1, 1]}}, "does not exist"),
        ({"timesteps": "many"}, "invalid field"),
    ],
)
def test_inconsistent_manifests_are_rejected(tmp_path, changes, message):
    with pytest.raises(BundleError, match=message):
        ModelBundle.load(write_bundle(tmp_path / "b", **changes))


def test_missing_and_corrupt_manifest(tmp_path):
    with pytest.raises(BundleError, match="no model bundle"):
        ModelBundle.load(tmp_path / "nothing")
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="cannot read"):
        ModelBundle.load(tmp_path)


def test_zero_sizes_are_refused(tmp_path, default_bundle_dir):
    import json
    import shutil

    from hsnn_perception.core.hybrid.bundle import BundleError, ModelBundle

    copy = tmp_path / "b"
    shutil.copytree(default_bundle_dir, copy)
    doc = json.loads((copy / "manifest.json").read_text())
    doc["sensor"] = {"height": 0, "width": 0}
    (copy / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(BundleError, match="sizes must be positive"):
        ModelBundle.load(copy)
