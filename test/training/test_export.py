"""Tests of bundle export (hsnn_perception/training/export.py): a model trained for a couple of
steps is exported, loaded by the nodes' backends (native SNN runtime, onnxruntime) and must give
the same results as PyTorch."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from hsnn_perception.core.events.synthetic import GESTURE_LABELS
from hsnn_perception.core.hybrid.bundle import ModelBundle
from hsnn_perception.core.snn.runtime import load_snn
from hsnn_perception.training.data import InputSpec, synthetic_spikeset
from hsnn_perception.training.export import (
    ExportError,
    onnx_session,
    predict_bundle,
    write_bundle,
)
from hsnn_perception.training.models import ArchSpec
from hsnn_perception.training.train import TrainConfig, predict_torch, to_tensor, train_model

SPEC_IN = InputSpec(sensor_height=64, sensor_width=64, height=16, width=16)
SMALL = {"height": 16, "width": 16, "channels": (4, 8, 8, 8), "hidden": 16}


@pytest.fixture(scope="module")
def data():
    train = synthetic_spikeset(22, SPEC_IN, seed=5)
    test = synthetic_spikeset(22, SPEC_IN, seed=5, first_index=500)
    return train, test


def _trained(k, interval, data):
    train, test = data
    cfg = TrainConfig(epochs=1, batch_size=8, max_steps=2, seed=k)
    return train_model(ArchSpec(k=k, interval=interval, **SMALL), train, test, cfg, progress=False)


@pytest.mark.parametrize("k,interval", [(0, 4), (1, 2), (2, 4), (4, 8), (5, 4), (6, 2)])
def test_bundle_runs_in_the_nodes_backends_like_pytorch(k, interval, data, tmp_path):
    _, test = data
    res = _trained(k, interval, data)
    bundle = write_bundle(res.model, tmp_path, SPEC_IN, GESTURE_LABELS, f"t{k}", {"r": 1})
    loaded = ModelBundle.load(tmp_path)
    assert loaded.interval == interval and loaded.labels == GESTURE_LABELS
    assert (loaded.snn_file is None) == (k == 0) and (loaded.ann_file is None) == (k == 6)
    assert (loaded.sensor_height, loaded.height) == (64, 16)
    run = predict_bundle(bundle, test.spikes)
    model = res.model.eval()
    with torch.no_grad():
        logits, _ = model(to_tensor(test.spikes))
        feats, _ = model.features(to_tensor(test.spikes))
    # The SNN part is bit exact (same integer arithmetic), so the ANN sees identical input...
    np.testing.assert_array_equal(run.features, feats.numpy())
    # ...and onnxruntime agrees with torch up to float rounding.
    np.testing.assert_allclose(run.logits, logits.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(run.predictions, predict_torch(model, test))
    if k:
        assert run.snn_counts is not None and run.snn_counts[..., 0].sum() > 0


def test_snn_file_is_netx_layout_with_input_layer(data, tmp_path):
    res = _trained(2, 4, data)
    bundle = write_bundle(res.model, tmp_path, SPEC_IN, GESTURE_LABELS, "t")
    with h5py.File(bundle.snn_file) as f:
        kinds = [f["layer"][str(i)]["type"][0].decode() for i in range(len(f["layer"]))]
        assert kinds == ["input", "conv", "conv"]
        assert list(f["layer/0/shape"][()]) == [2, 16, 16]
    snn = load_snn(bundle.snn_file, backend="native")
    out, ops = snn.run_window(np.zeros((16, 2, 16, 16), np.uint8))
    assert out.shape == (16, 8, 4, 4) and bundle.snn_output_shape == (8, 4, 4)


def test_onnx_interface_is_frames_to_logits_with_dynamic_batch(data, tmp_path):
    res = _trained(3, 8, data)
    bundle = write_bundle(res.model, tmp_path, SPEC_IN, GESTURE_LABELS, "t")
    sess = onnx_session(bundle.ann_file)
    assert [i.name for i in sess.get_inputs()] == ["frames"]
    assert [o.name for o in sess.get_outputs()] == ["logits"]
    x = np.zeros((3, *bundle.ann_input_shape[1:]), np.float32)
    assert sess.run(None, {"frames": x})[0].shape == (3, 11)
    assert bundle.ann_input_shape == (1, 2 * 8, 2, 2)


def test_rewriting_a_bundle_removes_the_part_the_new_model_lacks(data, tmp_path):
    write_bundle(_trained(2, 4, data).model, tmp_path, SPEC_IN, GESTURE_LABELS, "hybrid")
    bundle = write_bundle(_trained(0, 4, data).model, tmp_path, SPEC_IN, GESTURE_LABELS, "ann")
    assert bundle.snn_file is None and not (tmp_path / "snn.net").exists()


def test_mismatches_are_reported(data, tmp_path):
    res = _trained(1, 4, data)
    with pytest.raises(ExportError, match="labels"):
        write_bundle(res.model, tmp_path, SPEC_IN, ("a", "b"), "t")
    with pytest.raises(ExportError, match="geometry"):
        write_bundle(res.model, tmp_path, InputSpec(), GESTURE_LABELS, "t")
    bundle = write_bundle(res.model, tmp_path, SPEC_IN, GESTURE_LABELS, "t")
    with pytest.raises(ExportError, match="input spikes"):
        predict_bundle(bundle, np.zeros((2, 8, 2, 16, 16), np.uint8))


@pytest.mark.slow
def test_exported_snn_runs_unchanged_in_lava(data, tmp_path):
    # Real Lava (CPU simulation, fixed_pt) on the exported file: the same spikes as the runtime.
    _, test = data
    res = _trained(2, 4, data)
    bundle = write_bundle(res.model, tmp_path, SPEC_IN, GESTURE_LABELS, "t")
    native = load_snn(bundle.snn_file, backend="native")
    with load_snn(bundle.snn_file, backend="lava") as lava:
        out_lava, _ = lava.run_window(test.spikes[0])
    out_native, _ = native.run_window(test.spikes[0])
    np.testing.assert_array_equal(out_lava, out_native)
    assert out_native.sum() > 0


@pytest.mark.slow
def test_predict_bundle_runs_on_lava_window_by_window(data, tmp_path):
    # Lava has no batch API: predict_bundle runs it window by window, as the SNN node does, and
    # gives the native runtime's logits (which it ran as one batch).
    _, test = data
    res = _trained(1, 2, data)
    bundle = write_bundle(res.model, tmp_path, SPEC_IN, GESTURE_LABELS, "t")
    native = predict_bundle(bundle, test.spikes[:2])
    on_lava = predict_bundle(bundle, test.spikes[:2], snn_backend="lava")
    np.testing.assert_allclose(on_lava.logits, native.logits, rtol=1e-6)
    np.testing.assert_array_equal(on_lava.features, native.features)
    assert on_lava.snn_counts is None and native.snn_counts is not None
