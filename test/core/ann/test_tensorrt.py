"""Tests of the TensorRT backend's GPU-free parts: engine cache keys and decisions, availability
errors, and calibration inputs made from a model bundle by the real pipeline modules. The engine
build/run itself is tested only where tensorrt and a GPU exist (skipped otherwise)."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
import types
from pathlib import Path

import h5py
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from hsnn_perception.core.ann import tensorrt as tb
from hsnn_perception.core.ann.artifacts import (
    check_artifact,
    key_mismatches,
    sidecar_path,
    write_artifact,
)
from hsnn_perception.core.ann.backends import BackendError, BackendUnavailableError, create_backend
from hsnn_perception.core.ann.devices import GpuInfo
from hsnn_perception.core.events.synthetic import SyntheticGestures
from hsnn_perception.core.hybrid.accumulator import accumulate, frames_to_channels
from hsnn_perception.core.hybrid.bundle import ModelBundle

SHA_A = "a" * 64
SHA_B = "b" * 64


def base_key(**changes):
    args = {
        "onnx_sha256": SHA_A,
        "precision": "fp16",
        "input_shapes": {"frames": (1, 8, 16, 16)},
        "tensorrt_version": "10.13.3.9",
        "gpu_name": "NVIDIA H100 80GB HBM3",
        "compute_capability": "9.0",
        "int8_method": None,
        "calibration_sha256": None,
    }
    args.update(changes)
    return tb.engine_key(**args)


class Messages(list):
    def __call__(self, msg: str) -> None:
        self.append(msg)

    def text(self) -> str:
        return "\n".join(self)


def make_ann(path: Path, channels: int, height: int, width: int, classes: int = 11) -> None:
    """Conv -> ReLU -> global average pool -> dense classifier with random weights, as ONNX."""
    rng = np.random.default_rng(0)
    inits = {
        "w1": rng.normal(0, 0.3, (8, channels, 3, 3)).astype(np.float32),
        "w2": rng.normal(0, 1.0, (classes, 8)).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["frames", "w1"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "w2"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "ann",
        [helper.make_tensor_value_info("frames", TensorProto.FLOAT, [1, channels, height, width])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, classes])],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


# ---------------------------------------------------------------------------- engine keys


@pytest.mark.parametrize(
    ("component", "change"),
    [
        ("onnx_sha256", {"onnx_sha256": SHA_B}),
        ("precision", {"precision": "fp32"}),
        ("input_shapes", {"input_shapes": {"frames": (1, 8, 16, 32)}}),
        ("input_shapes", {"input_shapes": {"x": (1, 8, 16, 16)}}),
        ("tensorrt", {"tensorrt_version": "10.14.1.48"}),
        ("gpu_name", {"gpu_name": "Orin (nvgpu)"}),
        ("compute_capability", {"compute_capability": "8.7"}),
    ],
)
def test_each_key_component_changes_the_key(component, change):
    key = base_key()
    other = base_key(**change)
    assert other != key
    assert key_mismatches(key, other) == [component]


def test_int8_components_count_only_for_int8():
    # for fp16 the calibration does not matter, so it must not force a rebuild
    assert base_key(calibration_sha256=SHA_B) == base_key()
    assert base_key(int8_method="qdq") == base_key()
    int8 = base_key(precision="int8", int8_method="qdq", calibration_sha256=SHA_A)
    assert key_mismatches(int8, {**int8, "calibration_sha256": SHA_B}) == ["calibration_sha256"]
    implicit = base_key(precision="int8", int8_method="implicit", calibration_sha256=SHA_A)
    assert key_mismatches(int8, implicit) == ["int8_method"]


def test_key_is_json_round_trippable():
    key = base_key(precision="int8", int8_method="qdq", calibration_sha256=SHA_B)
    assert json.loads(json.dumps(key)) == key  # shapes become lists, so a sidecar compares equal
    assert key["input_shapes"] == {"frames": [1, 8, 16, 16]}
    assert key["format"] == tb.ENGINE_FORMAT


def test_engine_paths():
    paths = tb.EnginePaths.for_model(Path("/c"), Path("/m/ann.onnx"), "fp16")
    assert paths.engine == Path("/c/ann.fp16.engine")
    assert tb.EnginePaths.for_model(Path("/c"), Path("/m/ann.onnx"), "int8").engine.name == (
        "ann.int8-qdq.engine"
    )
    implicit = tb.EnginePaths.for_model(Path("/c"), Path("/m/ann.onnx"), "int8", "implicit")
    assert implicit.engine.name == "ann.int8-implicit.engine"
    assert implicit.calibration_cache == Path("/c/ann.int8-implicit.calib")


# ---------------------------------------------------------------------------- cache decisions


class Builder:
    """Stands in for the TensorRT build step: returns distinct bytes and counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> bytes:
        self.calls += 1
        return f"engine #{self.calls}".encode() * 10


def test_resolve_engine_builds_then_loads(tmp_path):
    path = tmp_path / "cache" / "ann.fp16.engine"
    build, messages = Builder(), Messages()
    data, built = tb.resolve_engine(path, base_key(), build, logger=messages)
    assert built and build.calls == 1 and path.read_bytes() == data
    assert "no cached" in messages.text() and "built ann.fp16.engine" in messages.text()
    meta = json.loads(sidecar_path(path).read_text())
    assert meta["key"] == base_key() and "build_seconds" in meta
    again, built = tb.resolve_engine(path, base_key(), build, logger=messages)
    assert not built and again == data and build.calls == 1
    data3, built = tb.resolve_engine(path, base_key(), build, force_rebuild=True, logger=messages)
    assert built and build.calls == 2 and data3 != data
    assert "force_rebuild" in messages.text()


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"gpu_name": "Orin (nvgpu)", "compute_capability": "8.7"}, "compute_capability"),
        ({"tensorrt_version": "11.4.0.106"}, "tensorrt"),
        ({"onnx_sha256": SHA_B}, "onnx_sha256"),
        ({"input_shapes": {"frames": (1, 4, 16, 16)}}, "input_shapes"),
    ],
)
def test_foreign_or_stale_engine_is_rebuilt_not_loaded(tmp_path, change, named):
    path = tmp_path / "ann.fp16.engine"
    # an engine made elsewhere (another GPU / TensorRT / model) sits in the cache
    write_artifact(path, b"foreign engine", base_key(**change))
    build, messages = Builder(), Messages()
    data, built = tb.resolve_engine(path, base_key(), build, logger=messages)
    assert built and build.calls == 1 and data != b"foreign engine"
    assert named in messages.text()
    assert check_artifact(path, base_key())[0]  # the cache now holds the right one


def test_damaged_engine_is_rebuilt(tmp_path):
    path = tmp_path / "ann.fp32.engine"
    key = base_key(precision="fp32")
    tb.resolve_engine(path, key, Builder())
    path.write_bytes(path.read_bytes()[:-3])  # truncated copy
    build, messages = Builder(), Messages()
    _, built = tb.resolve_engine(path, key, build, logger=messages)
    assert built and "sha256" in messages.text()
    sidecar_path(path).unlink()
    _, built = tb.resolve_engine(path, key, Builder(), logger=messages)
    assert built and "no sidecar" in messages.text()


def test_cached_int8_engine_reused_without_calibration_data(tmp_path):
    path = tmp_path / "ann.int8-qdq.engine"
    key = base_key(precision="int8", int8_method="qdq", calibration_sha256=SHA_A)
    tb.resolve_engine(path, key, Builder())
    no_data = {**key, "calibration_sha256": None}
    _, built = tb.resolve_engine(path, no_data, Builder(), ignore=tb.CALIBRATION_COMPONENTS)
    assert not built
    _, built = tb.resolve_engine(path, {**key, "calibration_sha256": SHA_B}, Builder())
    assert built


def test_empty_build_is_an_error(tmp_path):
    with pytest.raises(BackendError, match="no engine"):
        tb.resolve_engine(tmp_path / "x.engine", base_key(), lambda: b"")
    assert not (tmp_path / "x.engine").exists()


def test_tensorrt_major():
    assert tb.tensorrt_major("10.13.3.9") == 10
    assert tb.tensorrt_major("8.6.1.post1") == 8
    with pytest.raises(BackendError, match="version"):
        tb.tensorrt_major("ten")


# ---------------------------------------------------------------------------- availability

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


# ---------------------------------------------------------------------------- calibration inputs


def write_bundle(root: Path, *, snn: bool) -> ModelBundle:
    """A small bundle: 64x64 sensor -> 16x16 input, T=8, I=4, optional one-conv SNN."""
    root.mkdir(parents=True, exist_ok=True)
    snn_shape = None
    if snn:
        rng = np.random.default_rng(3)
        with h5py.File(root / "snn.net", "w") as fh:
            layer = fh.create_group("layer")
            inp = layer.create_group("0")
            inp.create_dataset("type", data=np.bytes_("input"))
            inp.create_dataset("shape", data=np.array([2, 16, 16]))
            conv = layer.create_group("1")
            conv.create_dataset("type", data=np.bytes_("conv"))
            conv.create_dataset("weight", data=rng.integers(-10, 60, (4, 2, 3, 3)))
            conv.create_dataset("stride", data=np.array([2, 2]))
            conv.create_dataset("padding", data=np.array([1, 1]))
            neuron = conv.create_group("neuron")
            neuron.create_dataset("type", data=np.bytes_("CUBA"))
            neuron.create_dataset("iDecay", data=1024)
            neuron.create_dataset("vDecay", data=128)
            neuron.create_dataset("vThMant", data=80)
        snn_shape = [4, 8, 8]
    c, h, w = snn_shape or [2, 16, 16]
    make_ann(root / "ann.onnx", 2 * c, h, w)
    doc = {
        "format": "hsnn-bundle/1",
        "name": "test-bundle",
        "sensor": {"height": 64, "width": 64},
        "input": {"channels": 2, "height": 16, "width": 16},
        "bin_us": 10_000,
        "timesteps": 8,
        "interval": 4,
        "labels": [f"class{i}" for i in range(11)],
        "snn": {"file": "snn.net", "output_shape": snn_shape} if snn else None,
        "ann": {"file": "ann.onnx", "input_name": "frames", "output_name": "logits"},
    }
    (root / "manifest.json").write_text(json.dumps(doc))
    return ModelBundle.load(root)


def expected_frames(events: np.ndarray, bundle: ModelBundle) -> np.ndarray:
    """ANN input of an ANN-only bundle computed independently: unique (bin, p, y, x) per frame."""
    fy = bundle.sensor_height // bundle.height
    fx = bundle.sensor_width // bundle.width
    t_bin = events["t"] // bundle.bin_us
    keep = t_bin < bundle.timesteps
    e, t_bin = events[keep], t_bin[keep]
    cells = np.unique(
        np.stack([t_bin, e["p"], e["y"] // fy, e["x"] // fx], axis=1).astype(np.int64), axis=0
    )
    out = np.zeros((bundle.frames, 2, bundle.height, bundle.width), np.float32)
    np.add.at(out, (cells[:, 0] // bundle.interval, cells[:, 1], cells[:, 2], cells[:, 3]), 1)
    return out.reshape(bundle.frames * 2, bundle.height, bundle.width)


def test_calibration_inputs_of_an_ann_only_bundle(tmp_path):
    bundle = write_bundle(tmp_path / "b", snn=False)
    x, labels = tb.bundle_ann_inputs(bundle, range(12), seed=4)
    assert x.shape == (12, *bundle.ann_input_shape[1:]) and x.dtype == np.float32
    np.testing.assert_array_equal(labels, np.arange(12) % 11)
    gen = SyntheticGestures(64, 64, seed=4, sample_us=bundle.window_us)
    for i in (0, 5, 11):
        events, label = gen.sample(i)
        assert label == labels[i]
        np.testing.assert_array_equal(x[i], expected_frames(events, bundle))
    assert x.max() <= bundle.interval and x.sum() > 0  # binary spikes summed over I steps
    calib = tb.calibration_inputs(bundle, 12)  # default seed 1: other samples than seed 4
    assert calib.shape == x.shape and not np.array_equal(calib, x)
    np.testing.assert_array_equal(calib, tb.calibration_inputs(bundle, 12))  # deterministic


def test_calibration_inputs_through_the_snn_runtime(tmp_path):
    pytest.importorskip("hsnn_perception.core.snn.runtime")
    from hsnn_perception.core.snn.runtime import load_snn

    bundle = write_bundle(tmp_path / "b", snn=True)
    x, labels = tb.bundle_ann_inputs(bundle, range(4), seed=0)
    assert x.shape == (4, 8, 8, 8)
    # the same chain by hand for one sample, with the runtime's own output
    snn = load_snn(bundle.snn_file, backend="native")
    events, _ = SyntheticGestures(64, 64, seed=0, sample_us=bundle.window_us).sample(2)
    spikes = np.zeros((8, 2, 16, 16), np.uint8)
    t = events["t"] // bundle.bin_us
    keep = t < 8
    spikes[t[keep], events["p"][keep], events["y"][keep] // 4, events["x"][keep] // 4] = 1
    out, _ = snn.run_window(spikes)
    want = frames_to_channels(accumulate(out[None], bundle.interval))[0]
    np.testing.assert_array_equal(x[2], want)
    assert x.sum() > 0, "the test SNN should spike on synthetic gestures"


def test_calibration_inputs_feed_int8_calibration(tmp_path):
    bundle = write_bundle(tmp_path / "b", snn=False)
    calib = tb.calibration_inputs(bundle, 30)
    messages = Messages()
    backend = create_backend(
        "onnxruntime",
        bundle.ann_file,
        providers="cpu",
        precision="int8",
        cache_dir=tmp_path / "cache",
        calibration_data=calib,
        logger=messages,
    )
    assert backend.precision == "int8" and "calibrating INT8 on 30 samples" in messages.text()
    assert backend.infer(calib[0]).shape == (1, 11)


def test_calibration_input_errors(tmp_path):
    bundle = write_bundle(tmp_path / "b", snn=False)
    with pytest.raises(BackendError, match=">= 1"):
        tb.calibration_inputs(bundle, 0)
    with pytest.raises(BackendError, match="no sample indices"):
        tb.bundle_ann_inputs(bundle, [])
    with pytest.raises(BackendError, match="no ANN part"):
        tb.calibration_inputs(dataclasses.replace(bundle, ann_file=None), 3)
    # a manifest whose SNN output shape disagrees with what the SNN produces
    with_snn = write_bundle(tmp_path / "s", snn=True)
    wrong = dataclasses.replace(with_snn, snn_output_shape=(4, 4, 4))
    with pytest.raises(BackendError, match="the manifest says"):
        tb.calibration_inputs(wrong, 1)


# ---------------------------------------------------------------------------- on a GPU only


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
