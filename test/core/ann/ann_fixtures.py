"""A small classifier built as ONNX here, its numpy reference and inputs, shared by the tests of
core/ann."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

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
