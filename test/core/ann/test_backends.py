"""Tests of hsnn_perception.core.ann.backends: the interface every classifier backend kind shares,
built by create_backend (real onnxruntime on a small ONNX model built here), and the checks of
model files and inputs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from hsnn_perception.core.ann.backends import (
    BackendError,
    BackendUnavailableError,
    create_backend,
    validate_input,
)
from hsnn_perception.core.ann.onnxruntime import (
    OnnxRuntimeBackend,
)


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


def test_error_types():
    assert issubclass(BackendUnavailableError, BackendError)
    assert issubclass(BackendError, ValueError)
    assert OnnxRuntimeBackend.kind == "onnxruntime"


def test_importing_the_backends_loads_no_heavy_package():
    code = (
        "import sys, hsnn_perception.core.ann.backends, hsnn_perception.core.ann.onnxruntime, "
        "hsnn_perception.core.ann.precision, hsnn_perception.core.ann.artifacts, "
        "hsnn_perception.core.ann.devices, hsnn_perception.core.ann.tensorrt; "
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
