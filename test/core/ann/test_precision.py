"""Tests of hsnn_perception.core.ann.precision: INT8 QDQ and FP16 copies made on the CPU, cached,
and run by real onnxruntime against the FP32 model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto

from core.ann.ann_fixtures import (
    SHAPE,
    Messages,
    event_frames,
    make_classifier,
    reference_logits,
)
from hsnn_perception.core.ann.artifacts import (
    check_artifact,
    sha256_array,
    sidecar_path,
)
from hsnn_perception.core.ann.backends import (
    BackendError,
    create_backend,
)
from hsnn_perception.core.ann.onnxruntime import (
    CPU_PROVIDER,
)
from hsnn_perception.core.ann.precision import (
    as_calibration_array,
    derived_model_key,
    is_quantized_onnx,
    prepare_precision_model,
)


def test_as_calibration_array_forms():
    x = event_frames(4)
    stacked = as_calibration_array(x, SHAPE)
    assert stacked.shape == (4, *SHAPE[1:]) and stacked.dtype == np.float32
    np.testing.assert_array_equal(as_calibration_array(list(x[:, None]), SHAPE), stacked)
    np.testing.assert_array_equal(as_calibration_array(iter(x), SHAPE), stacked)
    np.testing.assert_array_equal(as_calibration_array(x[:, None], SHAPE), stacked)
    with pytest.raises(BackendError, match="empty"):
        as_calibration_array([], SHAPE)
    with pytest.raises(BackendError, match="calibration_data has shape"):
        as_calibration_array(np.zeros((4, 8, 12)), SHAPE)
    with pytest.raises(BackendError, match="calibration sample 1"):
        as_calibration_array([x[0], x[1, :4]], SHAPE)
    bad = x.copy()
    bad[2, 0, 0, 0] = np.nan
    with pytest.raises(BackendError, match="NaN"):
        as_calibration_array(bad, SHAPE)
    with pytest.raises(BackendError, match="array or an iterable"):
        as_calibration_array(3.0, SHAPE)


def test_derived_model_key_and_array_hash():
    x = event_frames(3)
    assert sha256_array(x) == sha256_array(x.copy())
    assert sha256_array(x) != sha256_array(x[:2])
    y = x.copy()
    y[0, 0, 0, 0] += 1
    assert sha256_array(x) != sha256_array(y)
    assert sha256_array(x) != sha256_array(x.reshape(3, -1))  # same bytes, other shape
    a = derived_model_key("s" * 64, "fp16-keep-io")
    assert a == derived_model_key("s" * 64, "fp16-keep-io")
    assert a != derived_model_key("t" * 64, "fp16-keep-io")
    assert a != derived_model_key("s" * 64, "int8-qdq-entropy-symmetric")
    assert a["onnxruntime"] == ort.__version__


def test_int8_qdq_calibration_cache_and_accuracy(tmp_path):
    path = tmp_path / "ann.onnx"
    weights = make_classifier(path)
    cache = tmp_path / "cache"
    calib = event_frames(120, seed=2)
    test = event_frames(200, seed=3)
    messages = Messages()
    backend = create_backend(
        "onnxruntime", path, providers="cpu", precision="int8", cache_dir=cache,
        calibration_data=calib, logger=messages,
    )  # fmt: skip
    assert backend.name == "onnxruntime[CPUExecutionProvider] int8"
    assert backend.precision == "int8"
    assert "calibrating INT8 on 120 samples" in messages.text()
    qdq = backend.run_model_path
    assert qdq.parent == cache and qdq.is_file() and sidecar_path(qdq).is_file()
    assert is_quantized_onnx(onnx.load(str(qdq)))
    assert not is_quantized_onnx(onnx.load(str(path)))

    ref = reference_logits(test, weights)
    got = np.concatenate([backend.infer(sample) for sample in test])
    agreement = float((got.argmax(1) == ref.argmax(1)).mean())
    assert agreement >= 0.9, agreement
    spread = float(ref.max() - ref.min())
    assert float(np.abs(got - ref).max()) < 0.1 * spread

    # same model and data: the cached QDQ model is used, not remade
    messages.clear()
    again = create_backend(
        "onnxruntime", path, providers="cpu", precision="int8", cache_dir=cache,
        calibration_data=calib, logger=messages,
    )  # fmt: skip
    assert "using cached" in messages.text() and "calibrating" not in messages.text()
    np.testing.assert_array_equal(again.infer(test[0]), backend.infer(test[0]))
    # no calibration data: the cached calibration is reused
    messages.clear()
    create_backend("onnxruntime", path, precision="int8", cache_dir=cache, logger=messages)
    assert "reusing the cached calibration" in messages.text()
    # other calibration data, force_rebuild, or another model: remade
    for kwargs in (
        {"calibration_data": calib[:110]},
        {"calibration_data": calib, "force_rebuild": True},
    ):
        messages.clear()
        create_backend(
            "onnxruntime", path, precision="int8", cache_dir=cache, logger=messages, **kwargs
        )
        assert "calibrating INT8" in messages.text()
    make_classifier(path, seed=5)
    messages.clear()
    with pytest.raises(BackendError, match="needs calibration_data"):
        create_backend("onnxruntime", path, precision="int8", cache_dir=cache, logger=messages)
    create_backend(
        "onnxruntime",
        path,
        precision="int8",
        cache_dir=cache,
        calibration_data=calib,
        logger=messages,
    )
    assert "source_sha256" in messages.text()


def test_few_calibration_samples_are_warned_about(model, tmp_path):
    path, _ = model
    messages = Messages()
    create_backend(
        "onnxruntime", path, precision="int8", cache_dir=tmp_path, calibration_data=event_frames(8),
        logger=messages,
    )  # fmt: skip
    assert "only 8 calibration samples" in messages.text()


def test_already_quantized_model_is_used_as_is(model, tmp_path):
    path, _ = model
    qdq = prepare_precision_model(
        path, "int8", cache_dir=tmp_path / "c", input_name="frames", input_shape=SHAPE,
        calibration_data=event_frames(20), logger=Messages(),
    )  # fmt: skip
    messages = Messages()
    backend = create_backend(
        "onnxruntime", qdq, precision="int8", cache_dir=tmp_path / "d", logger=messages
    )
    assert backend.run_model_path == qdq
    assert "already quantized" in messages.text()
    assert not (tmp_path / "d").exists() or not list((tmp_path / "d").glob("*.int8.*"))


def test_fp16_copy_runs_close_to_fp32(model, tmp_path):
    path, weights = model
    messages = Messages()
    half = prepare_precision_model(
        path, "fp16", cache_dir=tmp_path, input_name="frames", input_shape=SHAPE, logger=messages
    )
    assert half != path and check_artifact(half, derived_model_key(_sha(path), "fp16-keep-io"))[0]
    model16 = onnx.load(str(half))
    types = {init.name: init.data_type for init in model16.graph.initializer}
    assert types["w1"] == TensorProto.FLOAT16
    assert model16.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT  # I/O stay fp32
    session = ort.InferenceSession(str(half), providers=[CPU_PROVIDER])
    x = event_frames(4)
    got = np.concatenate([session.run(None, {"frames": s[None]})[0] for s in x])
    np.testing.assert_allclose(got, reference_logits(x, weights), atol=2e-2)
    # the second call reuses the copy
    messages.clear()
    assert (
        prepare_precision_model(
            path,
            "fp16",
            cache_dir=tmp_path,
            input_name="frames",
            input_shape=SHAPE,
            logger=messages,
        )
        == half
    )
    assert "using cached" in messages.text()


def test_fp16_on_cpu_runs_fp32_and_says_so(model, tmp_path):
    path, _ = model
    messages = Messages()
    backend = create_backend(
        "onnxruntime", path, providers="cpu", precision="fp16", cache_dir=tmp_path, logger=messages
    )
    assert backend.precision == "fp32" and backend.name == "onnxruntime[CPUExecutionProvider]"
    assert "no fast path" in messages.text()


def test_fp32_precision_is_the_model_itself(model, tmp_path):
    path, _ = model
    assert (
        prepare_precision_model(
            path, "fp32", cache_dir=tmp_path, input_name="frames", input_shape=SHAPE
        )
        == path
    )
    with pytest.raises(BackendError, match="precision"):
        prepare_precision_model(
            path, "bf16", cache_dir=tmp_path, input_name="frames", input_shape=SHAPE
        )


def _sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()
