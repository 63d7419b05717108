"""Builders of a small real model bundle: a netx HDF5 SNN (the layout lava-dl's export_hdf5 writes,
read by the project's runtime) and an ONNX ANN (run by ONNX Runtime)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from hsnn_perception.core.events.synthetic import GESTURE_LABELS

SENSOR = 64
INPUT = 16  # 4x downsampling
T, INTERVAL = 16, 4
SNN_OUT = (4, 8, 8)


def write_netx(path: Path, seed: int = 0) -> None:
    """Input (2,16,16) -> strided conv 2->4 (3x3, stride 2, pad 1) -> CUBA LIF (4,8,8)."""
    import h5py

    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as f:
        layer = f.create_group("layer")
        inp = layer.create_group("0")
        inp["type"] = np.bytes_("input")
        inp["shape"] = np.array([2, INPUT, INPUT])
        conv = layer.create_group("1")
        conv["type"] = np.bytes_("conv")
        conv["shape"] = np.array(SNN_OUT)
        conv["weight"] = rng.integers(-40, 120, size=(4, 2, 3, 3))
        conv["stride"] = np.array([2, 2])
        conv["padding"] = np.array([1, 1])
        conv["dilation"] = np.array([1, 1])
        conv["groups"] = np.array(1)
        neuron = conv.create_group("neuron")
        neuron["type"] = np.bytes_("CUBA")
        neuron["iDecay"] = np.array(1024)
        neuron["vDecay"] = np.array(256)
        neuron["vThMant"] = np.array(80)


def write_onnx(path: Path, in_channels: int, h: int, w: int, seed: int = 0) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    n_in = in_channels * h * w
    weight = rng.standard_normal((len(GESTURE_LABELS), n_in)).astype(np.float32) * 0.1
    bias = rng.standard_normal(len(GESTURE_LABELS)).astype(np.float32) * 0.01
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["frames"], ["flat"]),
            helper.make_node("Gemm", ["flat", "w", "b"], ["logits"], transB=1),
        ],
        "tiny",
        [helper.make_tensor_value_info("frames", TensorProto.FLOAT, [1, in_channels, h, w])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, len(GESTURE_LABELS)])],
        [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def make_bundle(root: Path, name: str, snn: bool = True, ann: bool = True, seed: int = 0) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    feature = SNN_OUT if snn else (2, INPUT, INPUT)
    if snn:
        write_netx(root / "snn.net", seed)
    if ann:
        c, h, w = feature
        write_onnx(root / "ann.onnx", (T // INTERVAL) * c, h, w, seed)
    manifest = {
        "format": "hsnn-bundle/1",
        "name": name,
        "sensor": {"height": SENSOR, "width": SENSOR},
        "input": {"channels": 2, "height": INPUT, "width": INPUT},
        "bin_us": 10_000,
        "timesteps": T,
        "interval": INTERVAL,
        "labels": list(GESTURE_LABELS),
        "snn": {"file": "snn.net", "output_shape": list(SNN_OUT)} if snn else None,
        "ann": {"file": "ann.onnx", "input_name": "frames", "output_name": "logits"}
        if ann
        else None,
        "recipe": {"test": True},
        "metrics": {},
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root
