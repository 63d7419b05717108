"""Tests of the classifier backends on a small ONNX model built here, run by real onnxruntime."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from hsnn_perception.core.ann.backends import (
    CPU_PROVIDER,
    CUDA_PROVIDER,
    TENSORRT_PROVIDER,
    BackendError,
    BackendUnavailableError,
    OnnxRuntimeBackend,
    as_calibration_array,
    check_artifact,
    create_backend,
    derived_model_key,
    describe_device,
    is_quantized_onnx,
    key_mismatches,
    prepare_precision_model,
    resolve_providers,
    sha256_array,
    sidecar_path,
    validate_input,
    write_artifact,
)

SHAPE = (1, 8, 12, 12)
CLASSES = 11


def _weights(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    c = SHAPE[1]
    return {
        "w1": rng.normal(0.0, 0.3, (16, c, 3, 3)).astype(np.float32),
        "b1": rng.normal(0.0, 0.1, 16).astype(np.float32),
        "w2": rng.normal(0.0, 1.0, (CLASSES, 16)).astype(np.float32),
        "b2": rng.normal(0.0, 0.1, CLASSES).astype(np.float32),
    }


def make_classifier(path: Path, seed: int = 0, batch: int | str = 1) -> dict[str, np.ndarray]:
    """Conv3x3(pad 1) -> ReLU -> global average pool -> dense, as ONNX; returns the weights."""
    weights = _weights(seed)
    nodes = [
        helper.make_node("Conv", ["frames", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("GlobalAveragePool", ["r1"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "w2", "b2"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "classifier",
        [helper.make_tensor_value_info("frames", TensorProto.FLOAT, [batch, *SHAPE[1:]])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, CLASSES])],
        [numpy_helper.from_array(v, k) for k, v in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return weights


def reference_logits(x: np.ndarray, w: dict[str, np.ndarray]) -> np.ndarray:
    """The same network in plain numpy (cross-correlation, as ONNX Conv defines it)."""
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(2, 3))
    conv = np.einsum("bchwij,ocij->bohw", windows, w["w1"]) + w["b1"][None, :, None, None]
    pooled = np.maximum(conv, 0.0).mean(axis=(2, 3))
    return pooled @ w["w2"].T + w["b2"]


def event_frames(n: int, seed: int = 1) -> np.ndarray:
    """Inputs like accumulated spike counts: small non-negative integers."""
    rng = np.random.default_rng(seed)
    return rng.poisson(1.0, (n, *SHAPE[1:])).astype(np.float32)


class Messages(list):
    """A logger that keeps what it was told."""

    def __call__(self, msg: str) -> None:
        self.append(msg)

    def text(self) -> str:
        return "\n".join(self)


@pytest.fixture()
def model(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    path = tmp_path / "ann.onnx"
    return path, make_classifier(path)


# ---------------------------------------------------------------------------- ONNX Runtime


def test_onnxruntime_cpu_matches_numpy_reference(model, tmp_path):
    path, weights = model
    x = event_frames(6)
    with create_backend("onnxruntime", path, providers="cpu", cache_dir=tmp_path) as backend:
        assert backend.name == "onnxruntime[CPUExecutionProvider]"
        assert backend.device == "cpu"
        assert backend.input_name == "frames"
        assert backend.input_shape == SHAPE
        assert backend.output_name == "logits"
        for sample in x:
            got = backend.infer(sample[None])
            assert got.dtype == np.float32 and got.shape == (1, CLASSES)
            np.testing.assert_allclose(got, reference_logits(sample[None], weights), atol=1e-4)
        # the batch axis of 1 may be left out; integer counts are accepted and cast
        np.testing.assert_array_equal(backend.infer(x[0]), backend.infer(x[0:1]))
        np.testing.assert_array_equal(backend.infer(x[0].astype(np.uint16)), backend.infer(x[0:1]))
    assert backend.closed
    with pytest.raises(BackendError, match="closed"):
        backend.infer(x[0])


def test_dynamic_batch_model_takes_any_batch(tmp_path):
    path = tmp_path / "dyn.onnx"
    weights = make_classifier(path, batch="N")
    backend = create_backend("onnxruntime", path, providers="cpu", cache_dir=tmp_path)
    assert backend.input_shape == (None, *SHAPE[1:])
    x = event_frames(5)
    np.testing.assert_allclose(backend.infer(x), reference_logits(x, weights), atol=1e-4)


def test_auto_uses_what_this_onnxruntime_offers(model, tmp_path):
    path, _ = model
    messages = Messages()
    backend = create_backend(
        "onnxruntime", path, providers="auto", cache_dir=tmp_path, logger=messages
    )
    available = ort.get_available_providers()
    best = next(p for p in (TENSORRT_PROVIDER, CUDA_PROVIDER, CPU_PROVIDER) if p in available)
    assert backend.name == f"onnxruntime[{best}]"
    assert backend.providers[-1] == CPU_PROVIDER
    if best == CPU_PROVIDER:
        assert backend.device == "cpu"
        assert "not available" in messages.text()


def test_missing_gpu_provider_falls_back_to_cpu_with_reason(model, tmp_path):
    if CUDA_PROVIDER in ort.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider; the fallback cannot happen")
    path, weights = model
    messages = Messages()
    backend = create_backend(
        "onnxruntime", path, providers="cuda", cache_dir=tmp_path, logger=messages
    )
    assert backend.name == "onnxruntime[CPUExecutionProvider]"
    assert CUDA_PROVIDER in messages.text() and "falling back" in messages.text()
    x = event_frames(1)
    np.testing.assert_allclose(backend.infer(x), reference_logits(x, weights), atol=1e-4)


@pytest.mark.parametrize(
    ("requested", "available", "expected"),
    [
        (
            "auto",
            [TENSORRT_PROVIDER, CUDA_PROVIDER, CPU_PROVIDER],
            [TENSORRT_PROVIDER, CUDA_PROVIDER, CPU_PROVIDER],
        ),
        ("auto", [CUDA_PROVIDER, CPU_PROVIDER], [CUDA_PROVIDER, CPU_PROVIDER]),
        ("auto", ["AzureExecutionProvider", CPU_PROVIDER], [CPU_PROVIDER]),
        (
            "tensorrt",
            [TENSORRT_PROVIDER, CUDA_PROVIDER, CPU_PROVIDER],
            [TENSORRT_PROVIDER, CPU_PROVIDER],
        ),
        ("tensorrt", [CUDA_PROVIDER, CPU_PROVIDER], [CPU_PROVIDER]),
        (
            ("cuda", "cpu"),
            [TENSORRT_PROVIDER, CUDA_PROVIDER, CPU_PROVIDER],
            [CUDA_PROVIDER, CPU_PROVIDER],
        ),
        (("cpu", "cuda"), [CUDA_PROVIDER, CPU_PROVIDER], [CPU_PROVIDER, CUDA_PROVIDER]),
        (
            (CUDA_PROVIDER, "CUDA", "auto"),
            [TENSORRT_PROVIDER, CUDA_PROVIDER, CPU_PROVIDER],
            [CUDA_PROVIDER, TENSORRT_PROVIDER, CPU_PROVIDER],
        ),
    ],
)
def test_resolve_providers_order_and_fallback(requested, available, expected):
    messages = Messages()
    got = resolve_providers(requested, available, known=ort.get_all_providers(), logger=messages)
    assert got == expected
    dropped = [p for p in (TENSORRT_PROVIDER, CUDA_PROVIDER) if p not in available]
    asked = requested if isinstance(requested, tuple) else (requested,)
    if dropped and ("auto" in asked or "tensorrt" in asked):
        assert any(p in messages.text() for p in dropped)
    if got == [CPU_PROVIDER] and requested != "cpu":
        assert "not available" in messages.text()


def test_resolve_providers_with_the_real_provider_list():
    available = ort.get_available_providers()
    got = resolve_providers("auto", available, known=ort.get_all_providers(), logger=Messages())
    assert got[-1] == CPU_PROVIDER
    assert all(p in available for p in got)
    assert got == [p for p in (TENSORRT_PROVIDER, CUDA_PROVIDER, CPU_PROVIDER) if p in available]


@pytest.mark.parametrize("bad", ["gpu", "TensorRT-EP", (), ["cpu", 3]])
def test_resolve_providers_rejects_unknown_names(bad):
    with pytest.raises(BackendError) as err:
        resolve_providers(bad, [CPU_PROVIDER], known=ort.get_all_providers(), logger=Messages())
    assert isinstance(err.value, ValueError)


# ---------------------------------------------------------------------------- bad input


def test_missing_model_file(tmp_path):
    with pytest.raises(BackendError, match="does not exist"):
        create_backend("onnxruntime", tmp_path / "nope.onnx", cache_dir=tmp_path)
    with pytest.raises(BackendError, match="not a file"):
        create_backend("onnxruntime", tmp_path, cache_dir=tmp_path)


@pytest.mark.parametrize("content", [b"", b"garbage, not protobuf \x00\xff" * 20])
def test_corrupt_onnx_file(tmp_path, content):
    path = tmp_path / "ann.onnx"
    path.write_bytes(content)
    with pytest.raises(BackendError, match="not a valid ONNX model"):
        create_backend("onnxruntime", path, cache_dir=tmp_path)


def test_truncated_onnx_file(model, tmp_path):
    path, _ = model
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(BackendError, match=str(path.name)):
        create_backend("onnxruntime", path, cache_dir=tmp_path)


def test_bad_inputs_raise_clear_errors(model, tmp_path):
    path, _ = model
    backend = create_backend("onnxruntime", path, providers="cpu", cache_dir=tmp_path)
    good = event_frames(1)
    with pytest.raises(BackendError, match=r"shape \(1, 8, 12, 13\).*\(1, 8, 12, 12\)"):
        backend.infer(np.zeros((1, 8, 12, 13), np.float32))
    with pytest.raises(BackendError, match="shape"):
        backend.infer(np.zeros((2, *SHAPE[1:]), np.float32))  # the model has a fixed batch of 1
    with pytest.raises(BackendError, match="shape"):
        backend.infer(np.zeros(SHAPE[2:], np.float32))
    nan = good.copy()
    nan[0, 0, 0, :3] = np.nan
    with pytest.raises(BackendError, match="3 NaN and 0 infinite"):
        backend.infer(nan)
    inf = good.copy()
    inf[0, 1, 2, 3] = -np.inf
    with pytest.raises(BackendError, match="0 NaN and 1 infinite"):
        backend.infer(inf)
    with pytest.raises(BackendError, match="infinite"):
        backend.infer(np.full(SHAPE, 1e300))  # does not fit float32
    with pytest.raises(BackendError, match="dtype complex"):
        backend.infer(good.astype(np.complex64))
    with pytest.raises(BackendError, match="numpy array, got list"):
        backend.infer(good.tolist())
    # and it still works afterwards
    assert backend.infer(good).shape == (1, CLASSES)


def test_bad_options(model, tmp_path):
    path, _ = model
    with pytest.raises(BackendError, match="unknown classifier backend kind 'openvino'"):
        create_backend("openvino", path, cache_dir=tmp_path)
    with pytest.raises(BackendError, match="precision"):
        create_backend("onnxruntime", path, precision="int4", cache_dir=tmp_path)
    with pytest.raises(BackendError, match="no output 'probs'"):
        create_backend("onnxruntime", path, cache_dir=tmp_path, output_name="probs")
    with pytest.raises(BackendError, match="unknown onnxruntime provider 'gpu'"):
        create_backend("onnxruntime", path, providers="gpu", cache_dir=tmp_path)


def test_model_with_two_inputs_is_rejected(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["logits"])],
        "two",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, 4]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, 4]),
        ],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 4])],
    )
    path = tmp_path / "two.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with pytest.raises(BackendError, match="2 inputs"):
        create_backend("onnxruntime", path, cache_dir=tmp_path)


def test_validate_input_rejects_empty_and_object_arrays():
    with pytest.raises(BackendError, match="empty"):
        validate_input(np.zeros((0, 3), np.float32), (None, 3))
    with pytest.raises(BackendError, match="dtype object"):
        validate_input(np.array([[None, 1, 2]], dtype=object), (1, 3))


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


# ---------------------------------------------------------------------------- cached artifacts


def test_artifact_round_trip_and_rejections(tmp_path):
    path = tmp_path / "cache" / "thing.bin"
    key = {"a": 1, "b": "x", "c": None}
    ok, reason = check_artifact(path, key)
    assert not ok and "no cached" in reason
    write_artifact(path, b"payload", key, note="hello")
    assert path.read_bytes() == b"payload"
    meta = json.loads(sidecar_path(path).read_text())
    assert meta["key"] == key and meta["note"] == "hello" and meta["bytes"] == 7
    assert check_artifact(path, key)[0]
    for name, value in (("a", 2), ("b", "y"), ("c", "z")):
        ok, reason = check_artifact(path, {**key, name: value})
        assert not ok and f"{name}:" in reason
    assert not check_artifact(path, {**key, "d": 0})[0]  # a new key component also invalidates
    assert check_artifact(path, {**key, "c": "z"}, ignore=("c",))[0]
    path.write_bytes(b"pAyload")  # same size, other bytes
    ok, reason = check_artifact(path, key)
    assert not ok and "sha256" in reason
    write_artifact(path, b"payload", key)
    sidecar_path(path).write_text("{not json")
    ok, reason = check_artifact(path, key)
    assert not ok and "unreadable" in reason
    sidecar_path(path).unlink()
    ok, reason = check_artifact(path, key)
    assert not ok and "no sidecar" in reason
    assert not list(path.parent.glob(".*.tmp"))  # no temp files left behind


def test_key_mismatches_names_each_component():
    stored = {"x": 1, "y": [1, 2], "z": "a"}
    assert key_mismatches(stored, dict(stored)) == []
    assert key_mismatches(stored, {**stored, "y": [1, 3]}) == ["y"]
    assert key_mismatches(stored, {"x": 1, "y": [1, 2]}) == ["z"]
    assert key_mismatches(stored, {**stored, "z": "b"}, ignore=["z"]) == []


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


# ---------------------------------------------------------------------------- reduced precision


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


# ---------------------------------------------------------------------------- misc


def test_describe_device_cpu():
    assert describe_device(CPU_PROVIDER) == "cpu"


def test_error_types():
    assert issubclass(BackendUnavailableError, BackendError)
    assert issubclass(BackendError, ValueError)
    assert OnnxRuntimeBackend.kind == "onnxruntime"


def _sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_importing_the_backends_loads_no_heavy_package():
    code = (
        "import sys, hsnn_perception.core.ann.backends, "
        "hsnn_perception.core.ann.tensorrt; "
        "print(','.join(m for m in ('onnxruntime', 'onnx', 'torch', 'tensorrt', 'cuda') "
        "if m in sys.modules))"
    )
    root = Path(__file__).resolve().parents[3]
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=root, check=True,
        env={**os.environ, "PYTHONPATH": str(root)},
    )  # fmt: skip
    assert out.stdout.strip() == ""


def test_check_bundle_fit_names_what_does_not_fit(default_bundle_dir):
    from hsnn_perception.core.ann.backends import check_bundle_fit
    from hsnn_perception.core.hybrid.bundle import ModelBundle

    b = ModelBundle.load(default_bundle_dir)
    args = (b.ann_file, b.ann_input_name, b.ann_input_shape, b.ann_output_name)
    check_bundle_fit(*args, b.num_classes)  # the shipped model fits
    with pytest.raises(BackendError, match="gives 11 scores but the bundle has 3 labels"):
        check_bundle_fit(*args, 3)
    with pytest.raises(BackendError, match="no input 'spikes'.*ann.input_name"):
        check_bundle_fit(b.ann_file, "spikes", b.ann_input_shape, b.ann_output_name, 11)
    with pytest.raises(BackendError, match=r"is \(\?, 128, 8, 8\) but the accumulator gives"):
        check_bundle_fit(b.ann_file, b.ann_input_name, (1, 64, 8, 8), b.ann_output_name, 11)
    with pytest.raises(BackendError, match="no output 'scores'"):
        check_bundle_fit(b.ann_file, b.ann_input_name, b.ann_input_shape, "scores", 11)
