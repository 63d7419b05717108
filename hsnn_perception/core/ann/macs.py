"""Multiply-accumulate count of one inference of an ONNX model, for energy models of the ANN part.

Counts Conv / ConvTranspose (output elements x input channels per group x kernel area), Gemm and
MatMul (M x N x K). Elementwise ops, pooling and activations are not counted: they are a small share
of a CNN's work and published per-MAC efficiencies do not cover them either.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hsnn_perception.core.errors import ClassifierError


class MacCountError(ClassifierError, ValueError):
    """The model's shapes cannot be inferred, so its MACs cannot be counted."""


def count_macs(model_path: str | Path, input_shape: tuple[int, ...] | None = None) -> int:
    import onnx
    from onnx import shape_inference

    try:
        model = onnx.load(str(model_path))
    except Exception as exc:
        raise MacCountError(f"cannot load ONNX model {model_path}: {exc}") from exc
    if input_shape is not None:
        graph_input = model.graph.input[0].type.tensor_type.shape
        for dim, size in zip(graph_input.dim, input_shape, strict=False):
            dim.ClearField("dim_param")
            dim.dim_value = int(size)
    try:
        inferred = shape_inference.infer_shapes(model)
    except Exception as exc:
        raise MacCountError(f"shape inference failed on {model_path}: {exc}") from exc
    shapes: dict[str, tuple[int, ...]] = {}
    for value in (
        list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)
    ):
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = tuple(int(d.dim_value) if d.dim_value > 0 else 1 for d in dims)
    for init in inferred.graph.initializer:
        shapes[init.name] = tuple(int(d) for d in init.dims)

    total = 0
    for node in inferred.graph.node:
        if node.op_type in ("Conv", "ConvTranspose"):
            out = shapes.get(node.output[0])
            weight = shapes.get(node.input[1])
            if out is None or weight is None:
                raise MacCountError(f"no shape for Conv node {node.name!r}")
            # weight (Cout, Cin/groups, kH, kW): each output element needs Cin/groups x kH x kW MACs
            per_output = int(np.prod(weight[1:]))
            if node.op_type == "ConvTranspose":
                total += (
                    int(np.prod(shapes[node.input[0]])) * int(weight[1]) * int(np.prod(weight[2:]))
                )
            else:
                total += int(np.prod(out)) * per_output
        elif node.op_type in ("Gemm", "MatMul"):
            a = shapes.get(node.input[0])
            out = shapes.get(node.output[0])
            if a is None or out is None:
                raise MacCountError(f"no shape for {node.op_type} node {node.name!r}")
            trans_a = any(att.name == "transA" and att.i for att in node.attribute)
            k = a[-2] if trans_a and len(a) >= 2 else a[-1]
            total += int(np.prod(out)) * int(k)
    return total
