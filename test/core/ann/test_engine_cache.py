"""Tests of hsnn_perception.core.ann.engine_cache: TensorRT engine cache keys and decisions (build,
load, rebuild a stale or damaged engine), on real files without a GPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.ann.ann_fixtures import Messages
from hsnn_perception.core.ann.artifacts import (
    check_artifact,
    key_mismatches,
    sidecar_path,
    write_artifact,
)
from hsnn_perception.core.ann.backends import BackendError
from hsnn_perception.core.ann.engine_cache import (
    CALIBRATION_COMPONENTS,
    ENGINE_FORMAT,
    EnginePaths,
    engine_key,
    resolve_engine,
)

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
    return engine_key(**args)


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
    assert key["format"] == ENGINE_FORMAT


def test_engine_paths():
    paths = EnginePaths.for_model(Path("/c"), Path("/m/ann.onnx"), "fp16")
    assert paths.engine == Path("/c/ann.fp16.engine")
    assert EnginePaths.for_model(Path("/c"), Path("/m/ann.onnx"), "int8").engine.name == (
        "ann.int8-qdq.engine"
    )
    implicit = EnginePaths.for_model(Path("/c"), Path("/m/ann.onnx"), "int8", "implicit")
    assert implicit.engine.name == "ann.int8-implicit.engine"
    assert implicit.calibration_cache == Path("/c/ann.int8-implicit.calib")


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
    data, built = resolve_engine(path, base_key(), build, logger=messages)
    assert built and build.calls == 1 and path.read_bytes() == data
    assert "no cached" in messages.text() and "built ann.fp16.engine" in messages.text()
    meta = json.loads(sidecar_path(path).read_text())
    assert meta["key"] == base_key() and "build_seconds" in meta
    again, built = resolve_engine(path, base_key(), build, logger=messages)
    assert not built and again == data and build.calls == 1
    data3, built = resolve_engine(path, base_key(), build, force_rebuild=True, logger=messages)
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
    data, built = resolve_engine(path, base_key(), build, logger=messages)
    assert built and build.calls == 1 and data != b"foreign engine"
    assert named in messages.text()
    assert check_artifact(path, base_key())[0]  # the cache now holds the right one


def test_damaged_engine_is_rebuilt(tmp_path):
    path = tmp_path / "ann.fp32.engine"
    key = base_key(precision="fp32")
    resolve_engine(path, key, Builder())
    path.write_bytes(path.read_bytes()[:-3])  # truncated copy
    build, messages = Builder(), Messages()
    _, built = resolve_engine(path, key, build, logger=messages)
    assert built and "sha256" in messages.text()
    sidecar_path(path).unlink()
    _, built = resolve_engine(path, key, Builder(), logger=messages)
    assert built and "no sidecar" in messages.text()


def test_cached_int8_engine_reused_without_calibration_data(tmp_path):
    path = tmp_path / "ann.int8-qdq.engine"
    key = base_key(precision="int8", int8_method="qdq", calibration_sha256=SHA_A)
    resolve_engine(path, key, Builder())
    no_data = {**key, "calibration_sha256": None}
    _, built = resolve_engine(path, no_data, Builder(), ignore=CALIBRATION_COMPONENTS)
    assert not built
    _, built = resolve_engine(path, {**key, "calibration_sha256": SHA_B}, Builder())
    assert built


def test_empty_build_is_an_error(tmp_path):
    with pytest.raises(BackendError, match="no engine"):
        resolve_engine(tmp_path / "x.engine", base_key(), lambda: b"")
    assert not (tmp_path / "x.engine").exists()
