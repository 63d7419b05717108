"""Tests of the TensorRT backend's GPU-free parts (availability errors, versions); the engine
build/run itself is tested only where tensorrt and a GPU exist (skipped otherwise)."""

from __future__ import annotations

import importlib.util
import sys
import types

import numpy as np
import pytest

from core.ann.ann_fixtures import Messages, make_ann
from hsnn_perception.core.ann import tensorrt as tb
from hsnn_perception.core.ann.backends import BackendError, BackendUnavailableError, create_backend
from hsnn_perception.core.ann.devices import GpuInfo


def test_tensorrt_major():
    assert tb.tensorrt_major("10.13.3.9") == 10
    assert tb.tensorrt_major("8.6.1.post1") == 8
    with pytest.raises(BackendError, match="version"):
        tb.tensorrt_major("ten")


HAVE_TRT = importlib.util.find_spec("tensorrt") is not None


def _gpu_present() -> bool:
    try:
        tb.tensorrt_requirements()
    except BackendUnavailableError:
        return False
    return True


@pytest.mark.skipif(HAVE_TRT, reason="tensorrt is installed here")
def test_tensorrt_backend_unavailable_names_what_is_missing(tmp_path):
    model = tmp_path / "ann.onnx"
    make_ann(model, 4, 8, 8)
    with pytest.raises(BackendUnavailableError) as err:
        create_backend("tensorrt", model, precision="fp16", cache_dir=tmp_path / "c")
    text = str(err.value)
    assert "backend 'tensorrt' needs the tensorrt Python package" in text
    assert "not found: the tensorrt Python package" in text
    assert "'onnxruntime'" in text  # what the node can use instead
    assert isinstance(err.value, ValueError)
    assert not (tmp_path / "c").exists()  # nothing half-built left behind


def test_bad_model_is_reported_before_availability(tmp_path):
    with pytest.raises(BackendError, match="does not exist") as err:
        create_backend("tensorrt", tmp_path / "missing.onnx")
    assert not isinstance(err.value, BackendUnavailableError)
    garbage = tmp_path / "ann.onnx"
    garbage.write_bytes(b"\x08\x07not onnx at all" * 7)
    with pytest.raises(BackendError, match="not a valid ONNX model"):
        create_backend("tensorrt", garbage)
    with pytest.raises(BackendError, match="int8_method"):
        create_backend("tensorrt", garbage, int8_method="minmax")


def test_each_missing_requirement_is_named(monkeypatch):
    """Isolate the check from this machine: fake the three probes one at a time."""
    fake_trt = types.ModuleType("tensorrt")
    fake_trt.__version__ = "10.13.3.9"
    gpu = GpuInfo(0, "NVIDIA H100", "9.0")

    monkeypatch.setitem(sys.modules, "tensorrt", fake_trt)
    monkeypatch.setattr(tb, "import_cudart", lambda: types.SimpleNamespace())
    monkeypatch.setattr(tb, "cuda_device_info", lambda index=0: gpu)
    trt, _, found = tb.tensorrt_requirements()
    assert trt is fake_trt and found == gpu

    monkeypatch.setattr(tb, "cuda_device_info", lambda index=0: None)
    with pytest.raises(BackendUnavailableError) as err:
        tb.tensorrt_requirements(2)
    assert "not found: an NVIDIA GPU (no CUDA device 2 found)" in str(err.value)
    assert "tensorrt Python package (" not in str(err.value)

    monkeypatch.setattr(tb, "cuda_device_info", lambda index=0: gpu)
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # makes `import tensorrt` fail

    def no_cuda():
        raise ImportError("No module named 'cuda'")

    monkeypatch.setattr(tb, "import_cudart", no_cuda)
    with pytest.raises(BackendUnavailableError) as err:
        tb.tensorrt_requirements()
    text = str(err.value)
    assert "the tensorrt Python package (" in text and "cuda-python" in text
    assert "NVIDIA GPU (" not in text


@pytest.mark.skipif(not HAVE_TRT, reason="tensorrt is not installed (no GPU machine)")
def test_engines_on_a_real_gpu(tmp_path):
    if not _gpu_present():
        pytest.skip("no CUDA device")
    model = tmp_path / "ann.onnx"
    make_ann(model, 8, 16, 16)
    rng = np.random.default_rng(0)
    data = rng.poisson(1.0, (200, 8, 16, 16)).astype(np.float32)
    cpu = create_backend("onnxruntime", model, providers="cpu", cache_dir=tmp_path / "c")
    ref = np.concatenate([cpu.infer(s) for s in data])
    for precision, min_agree in (("fp32", 0.99), ("fp16", 0.99), ("int8", 0.85)):
        messages = Messages()
        backend = create_backend(
            "tensorrt",
            model,
            precision=precision,
            cache_dir=tmp_path / "c",
            calibration_data=data,
            logger=messages,
        )
        assert backend.engine_built and backend.name.endswith(precision)
        got = np.concatenate([backend.infer(s) for s in data])
        assert float((got.argmax(1) == ref.argmax(1)).mean()) >= min_agree
        backend.close()
        again = create_backend(
            "tensorrt", model, precision=precision, cache_dir=tmp_path / "c", logger=messages
        )
        assert not again.engine_built
        np.testing.assert_array_equal(again.infer(data[0]), got[:1])
        again.close()
