"""Tests of 8-bit QAT and int8 QDQ export of the ANN part (hsnn_perception/training/quantize.py)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from hsnn_perception.core.events.synthetic import GESTURE_LABELS
from hsnn_perception.training.data import InputSpec, synthetic_spikeset
from hsnn_perception.training.export import onnx_session, predict_bundle, write_bundle
from hsnn_perception.training.models import ArchSpec
from hsnn_perception.training.quantize import (
    QuantizationError,
    _features,
    export_qat_int8,
    is_qdq,
)
from hsnn_perception.training.train import TrainConfig, train_model

SPEC_IN = InputSpec(sensor_height=64, sensor_width=64, height=16, width=16)
SMALL = {"height": 16, "width": 16, "channels": (4, 8, 8, 8), "hidden": 16}


@pytest.fixture(scope="module")
def data():
    return (
        synthetic_spikeset(33, SPEC_IN, seed=6),
        synthetic_spikeset(22, SPEC_IN, seed=6, first_index=700),
    )


def _train(k, data, qat_epochs=1):
    cfg = TrainConfig(epochs=1, batch_size=8, max_steps=3, qat_epochs=qat_epochs)
    return train_model(ArchSpec(k=k, interval=4, **SMALL), *data, cfg, progress=False)


@pytest.mark.parametrize("k", [0, 2, 5])
def test_int8_qdq_model_runs_in_onnxruntime_close_to_fake_quant(k, data, tmp_path):
    train, test = data
    res = _train(k, data)
    bundle = write_bundle(res.model, tmp_path, SPEC_IN, GESTURE_LABELS, "t")
    float_run = predict_bundle(bundle, test.spikes)
    qat = export_qat_int8(res, train, test, tmp_path)
    assert is_qdq(qat.path)
    model = onnx.load(str(qat.path))
    int8_weights = [t for t in model.graph.initializer if numpy_helper.to_array(t).dtype == np.int8]
    n_layers = 6 - k
    assert len(int8_weights) == n_layers  # every Conv/Gemm weight is stored as int8
    assert len(qat.act_scales) == n_layers and min(qat.act_scales) > 0
    int8_run = predict_bundle(bundle, test.spikes, ann_file=qat.path)
    # The int8 model receives the same accumulator output as the float one.
    np.testing.assert_array_equal(int8_run.features, float_run.features)
    spread = float(np.ptp(float_run.logits)) or 1.0
    assert np.max(np.abs(int8_run.logits - float_run.logits)) < 0.25 * spread
    # onnxruntime's integer kernels follow the fake-quant arithmetic torch trained with.
    from hsnn_perception.training.quantize import _fq_ann_class

    fq = _fq_ann_class()(res.model.ann, qat.act_scales).eval()
    with torch.no_grad():
        ref = fq(_features(res.model, test)).numpy()
    np.testing.assert_allclose(int8_run.logits, ref, atol=0.02 * spread + 1e-3)


def _weight_bytes(path, dtype):
    arrays = [numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer]
    return sum(a.nbytes for a in arrays if a.ndim >= 2 and a.dtype == dtype)


def test_weights_are_stored_in_a_quarter_of_the_bytes(data, tmp_path):
    res = _train(1, data)
    bundle = write_bundle(res.model, tmp_path, SPEC_IN, GESTURE_LABELS, "t")
    qat = export_qat_int8(res, *data, tmp_path)
    float_bytes = _weight_bytes(bundle.ann_file, np.float32)
    assert float_bytes > 0
    assert _weight_bytes(qat.path, np.int8) * 4 == float_bytes
    assert _weight_bytes(qat.path, np.float32) == 0
    sess = onnx_session(qat.path)
    assert [i.name for i in sess.get_inputs()] == ["frames"]


def test_snn_only_model_cannot_be_quantised(data):
    res = _train(6, data, qat_epochs=1)
    with pytest.raises(QuantizationError, match="no ANN part"):
        export_qat_int8(res, *data, out_dir=None)
