"""ANN-to-SNN conversion: the first ``k`` layers of a trained ANN bundle become Loihi spiking
layers (netx HDF5), the rest stays an ANN (ONNX); the result is an ordinary hybrid bundle.

Rate-coded conversion with data-based threshold balancing (Diehl et al., IJCNN 2015; Rueckauer
et al., Front. Neurosci. 2017, robust normalisation by an activation percentile), as used to put
trained ANNs on Loihi (Chandarana et al. 2022 compared such converted networks on Loihi with
the ANN on an NCS2). Works on the ONNX graph, so any bundle whose ANN is a chain of
``Conv``/``Gemm`` layers each followed by ``Relu`` (``Flatten`` between) can be converted; no torch.

The ANN must take spike counts over the whole window as input (a bundle with ``interval ==
timesteps``: ``hsnn-train --k 0 --interval 16``), because a spiking layer applies the same
weights at every timestep, which an ANN over time-stacked frames does not.

For converted layer ``l`` with ANN activation ``a_l = relu(W_l a_{l-1} + b_l)``:

* ``lambda_l`` = the ``percentile``-th percentile of the positive ``a_l`` over calibration
  windows; ``lambda_0 = T`` (the input is the count of binary spikes over ``T`` steps, i.e. ``T``
  times the input rate);
* normalised weights ``W_l lambda_{l-1} / lambda_l`` and bias ``b_l / lambda_l`` make the output
  rate (spikes per step) approximate ``a_l / lambda_l``, clipped to [0, 1];
* Loihi neurons: non-leaky integrate-and-fire (CUBA with ``iDecay`` 4096: the current is only
  this step's input; ``vDecay`` 0: no leak), threshold ``vThMant`` chosen so that the largest
  weight becomes 254, weights rounded to even integers in [-254, 254] (Loihi's 8-bit mixed-sign
  weights), bias rounded to an integer per step; reset to zero after a spike, as Loihi does;
* each spiking layer adds one timestep of synaptic latency, so the last layer's spikes count
  ``T - k`` useful steps: the remaining ANN gets the counts times ``lambda_k / (T - k)`` (a
  ``Mul`` node in front of it), with the accumulator interval ``I = T``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from hsnn_perception.core.errors import ModelError
from hsnn_perception.core.hybrid.bundle import BundleError, ModelBundle
from hsnn_perception.core.snn.quantise import (
    CURRENT_MAX,
    GAIN_PASSES,
    VTH_MAX,
    WEIGHT_MAX,
    even_weights,
    rate_gain,
    write_netx,
)

IF_NEURON = {"iDecay": 4096, "vDecay": 0}
SNN_FILE = "snn.net"
ANN_FILE = "ann.onnx"


class ConversionError(ModelError, ValueError):
    """The bundle cannot be converted (says why)."""


@dataclass
class AnnLayer:
    """One weighted layer of the ONNX chain and where it sits."""

    kind: str  # "conv" | "dense"
    weight: np.ndarray  # conv (out, in, kh, kw); dense (out, in)
    bias: np.ndarray
    relu_output: str | None  # tensor name after its Relu (None: no Relu follows)
    node_index: int  # index of its Relu (or of the layer node) in the graph
    flatten_before: bool = False
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1


@dataclass
class ConvertedLayer:
    kind: str
    out_shape: tuple[int, int, int]
    scale: float  # lambda_l
    vth: int
    max_abs_weight: int
    weight_sparsity: float
    rate_gains: list[float] = field(default_factory=list)  # measured / expected, per pass


@dataclass
class ConversionReport:
    source: str
    k: int
    percentile: float
    calibration_windows: int
    layers: list[ConvertedLayer] = field(default_factory=list)
    ann_input_scale: float = math.nan
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _attr(node: Any, name: str, default: Any) -> Any:
    import onnx

    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def parse_chain(model: Any) -> list[AnnLayer]:
    """The weighted layers of a Conv/Gemm + Relu chain, in order; ConversionError otherwise."""
    from onnx import numpy_helper

    graph = model.graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    layers: list[AnnLayer] = []
    current = graph.input[0].name
    flatten_pending = False
    nodes = list(graph.node)
    for i, node in enumerate(nodes):
        if not node.input or node.input[0] != current:
            raise ConversionError(
                f"node {i} ({node.op_type} {node.name!r}) does not continue a single chain; "
                "only a plain chain of Conv/Gemm/Relu/Flatten layers can be converted"
            )
        current = node.output[0]
        op = node.op_type
        if op in ("Conv", "Gemm"):
            try:
                weight = inits[node.input[1]].astype(np.float64)
                bias = (
                    inits[node.input[2]].astype(np.float64)
                    if len(node.input) > 2 and node.input[2]
                    else np.zeros(weight.shape[0])
                )
            except KeyError as exc:
                raise ConversionError(f"{op} {node.name!r}: weights are not constants") from exc
            layer = AnnLayer(
                kind="conv" if op == "Conv" else "dense",
                weight=weight,
                bias=bias,
                relu_output=None,
                node_index=i,
                flatten_before=flatten_pending,
            )
            flatten_pending = False
            if op == "Conv":
                pads = list(_attr(node, "pads", [0, 0, 0, 0]))
                if len(pads) != 4 or pads[0] != pads[2] or pads[1] != pads[3]:
                    raise ConversionError(f"Conv {node.name!r}: asymmetric padding {pads}")
                layer.stride = tuple(_attr(node, "strides", [1, 1]))
                layer.padding = (int(pads[0]), int(pads[1]))
                layer.dilation = tuple(_attr(node, "dilations", [1, 1]))
                layer.groups = int(_attr(node, "group", 1))
            else:
                if _attr(node, "transB", 0) != 1 or _attr(node, "transA", 0) != 0:
                    raise ConversionError(f"Gemm {node.name!r}: expected transB=1, transA=0")
                if _attr(node, "alpha", 1.0) != 1.0 or _attr(node, "beta", 1.0) != 1.0:
                    raise ConversionError(f"Gemm {node.name!r}: alpha and beta must be 1")
            layers.append(layer)
        elif op == "Relu":
            if not layers or layers[-1].relu_output is not None:
                raise ConversionError(f"Relu {node.name!r} does not follow a Conv or Gemm")
            layers[-1].relu_output = node.output[0]
            layers[-1].node_index = i
        elif op == "Flatten":
            if _attr(node, "axis", 1) != 1:
                raise ConversionError(f"Flatten {node.name!r}: axis must be 1")
            flatten_pending = True
        elif op in ("Dropout", "Identity"):
            continue  # inference no-ops (export normally drops them)
        else:
            raise ConversionError(
                f"node {i}: {op} cannot be converted (Conv, Gemm, Relu, Flatten only)"
            )
    return layers


def _with_outputs(model: Any, names: list[str]) -> bytes:
    """The model with ``names`` added as graph outputs (to read activations)."""
    import onnx

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    for name in names:
        copy.graph.output.append(
            onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)
        )
    return copy.SerializeToString()


def layer_activations(
    model: Any, input_name: str, x: np.ndarray, names: list[str], batch: int = 64
) -> list[np.ndarray]:
    """ANN activations ``names`` for inputs ``x`` (ONNX Runtime, CPU)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(
        _with_outputs(model, names), opts, providers=["CPUExecutionProvider"]
    )
    parts = [sess.run(names, {input_name: x[i : i + batch]}) for i in range(0, len(x), batch)]
    return [np.concatenate([p[j] for p in parts]) for j in range(len(names))]


def _quantise(
    weight: np.ndarray, bias: np.ndarray, prev_scale: float, scale: float
) -> tuple[np.ndarray, np.ndarray, int]:
    w = weight * prev_scale / scale
    b = bias / scale
    peak = float(np.abs(w).max())
    if peak == 0:
        raise ConversionError("a layer has only zero weights")
    vth = int(min(VTH_MAX, max(1, math.floor(WEIGHT_MAX / peak))))
    w_int = even_weights(w * vth)
    b_int = np.round(b * vth)
    fan_in = float(np.abs(w_int).reshape(len(w_int), -1).sum(axis=1).max() + np.abs(b_int).max())
    if fan_in >= CURRENT_MAX:
        raise ConversionError(
            f"a neuron's largest input ({fan_in:.0f}) would overflow Loihi's 24-bit current"
        )
    return w_int, b_int, vth


def _ann_tail(
    model: Any, cut: str, input_name: str, shape: tuple[int, ...], scale: float, dense: bool
) -> Any:
    """The graph after tensor ``cut``, fed by a new input ``input_name`` (``(N, *shape)``) times
    ``scale``; ``dense``: ``cut`` is a dense layer's (N, F) output."""
    import onnx
    from onnx import helper

    graph = model.graph
    nodes = list(graph.node)
    start = next(i for i, n in enumerate(nodes) if cut in n.output) + 1
    tail = nodes[start:]
    used = {name for n in tail for name in n.input}
    inits = [i for i in graph.initializer if i.name in used]
    scale_name = f"{input_name}_to_activation_scale"
    inits.append(helper.make_tensor(scale_name, onnx.TensorProto.FLOAT, [], [float(scale)]))
    if dense:
        # A dense layer's activations are (N, F): the accumulator's frames are (N, F, 1, 1).
        scaled = f"{cut}_4d"
        head = [
            helper.make_node(
                "Mul", [input_name, scale_name], [scaled], name="counts_to_activations"
            ),
            helper.make_node("Flatten", [scaled], [cut], axis=1, name="frames_to_features"),
        ]
    else:
        head = [
            helper.make_node("Mul", [input_name, scale_name], [cut], name="counts_to_activations")
        ]
    first = graph.input[0].type.tensor_type.shape.dim[0]
    batch = first.dim_param or (first.dim_value if first.dim_value > 0 else "N")
    new_input = helper.make_tensor_value_info(input_name, onnx.TensorProto.FLOAT, [batch, *shape])
    out = helper.make_graph(
        [*head, *tail], "converted_ann_part", [new_input], list(graph.output), inits
    )
    tail_model = helper.make_model(out, opset_imports=list(model.opset_import))
    tail_model.ir_version = model.ir_version
    onnx.checker.check_model(tail_model)
    return tail_model


def convert_bundle(
    source: str | Path,
    out: str | Path,
    k: int,
    calibration: np.ndarray,
    percentile: float = 99.9,
    name: str | None = None,
    log: Callable[[str], None] | None = None,
) -> tuple[ModelBundle, ConversionReport]:
    """Convert the first ``k`` layers of ANN bundle ``source`` into a hybrid bundle in ``out``.

    ``calibration`` holds input spikes ``(N, T, C, H, W)`` of a few hundred windows (binary,
    as the nodes binarise them). Returns the new bundle and what the conversion chose.
    """
    import onnx

    bundle = ModelBundle.load(source)
    if bundle.snn_file is not None or bundle.ann_file is None:
        raise ConversionError(f"{bundle.path}: not an ANN bundle (it already has an SNN part)")
    if bundle.interval != bundle.timesteps:
        raise ConversionError(
            f"{bundle.path}: its ANN takes {bundle.frames} time-stacked frames (interval "
            f"{bundle.interval} of {bundle.timesteps} steps); conversion needs an ANN over spike "
            "counts of the whole window: train one with --k 0 --interval "
            f"{bundle.timesteps}"
        )
    if not 0 < percentile <= 100:
        raise ConversionError(f"percentile must be in (0, 100], got {percentile}")
    x = np.asarray(calibration)
    want = (bundle.timesteps, bundle.channels, bundle.height, bundle.width)
    if x.ndim != 5 or tuple(x.shape[1:]) != want or len(x) < 1:
        raise ConversionError(f"calibration spikes must be (N >= 1, {want}), got {x.shape}")
    try:
        model = onnx.load(str(bundle.ann_file))
    except Exception as exc:
        raise BundleError(f"cannot read {bundle.ann_file}: {exc}") from exc
    chain = parse_chain(model)
    if not 1 <= k < len(chain):
        raise ConversionError(
            f"k must be in 1..{len(chain) - 1} (the ANN has {len(chain)} weighted layers; the "
            "last one stays an ANN layer: its logits are the classifier's output)"
        )
    convert = chain[:k]
    missing = [i + 1 for i, layer in enumerate(convert) if layer.relu_output is None]
    if missing:
        raise ConversionError(f"layers {missing} have no Relu: they cannot be spiking layers")
    steps = bundle.timesteps
    counts = (x > 0).sum(axis=1).astype(np.float32)  # what the ANN baseline sees (I = T)
    names = [layer.relu_output for layer in convert]
    acts = layer_activations(model, bundle.ann_input_name, counts, names)
    report = ConversionReport(str(bundle.path), k, float(percentile), len(x))
    shape: tuple[int, int, int] = (bundle.channels, bundle.height, bundle.width)
    # An input layer without a neuron (as slayer exports it) fixes the input geometry.
    specs: list[tuple[str, dict[str, Any]]] = [("input", {"shape": np.array(shape)})]
    prev_scale = float(steps)
    for layer, act in zip(convert, acts, strict=True):
        positive = act[act > 0]
        scale = float(np.percentile(positive, percentile)) if positive.size else 0.0
        if not scale > 0:
            raise ConversionError(
                f"layer {len(report.layers) + 1} is never active on the calibration data"
            )
        w_int, b_int, vth = _quantise(layer.weight, layer.bias, prev_scale, scale)
        neuron = {"neuron/type": "CUBA", **{f"neuron/{k_}": v for k_, v in IF_NEURON.items()}}
        neuron.update({"neuron/vThMant": vth, "neuron/refDelay": 1, "neuron/gradedSpike": False})
        if layer.flatten_before:
            specs.append(("flatten", {"shape": np.array([int(np.prod(shape)), 1, 1])}))
        out_shape = act.shape[1:] if act.ndim == 4 else (act.shape[1], 1, 1)
        out_shape = tuple(int(d) for d in out_shape)
        if layer.kind == "conv":
            spec = {
                "shape": np.array(out_shape),
                "inChannels": shape[0],
                "outChannels": w_int.shape[0],
                "kernelSize": np.array(w_int.shape[2:]),
                "stride": np.array(layer.stride),
                "padding": np.array(layer.padding),
                "dilation": np.array(layer.dilation),
                "groups": layer.groups,
                "weight": w_int,
                "bias": b_int,
                **neuron,
            }
        else:
            spec = {
                "shape": np.array([out_shape[0]]),
                "inFeatures": w_int.shape[1],
                "outFeatures": w_int.shape[0],
                "weight": w_int,
                "bias": b_int,
                **neuron,
            }
        specs.append((layer.kind, spec))
        depth = len(report.layers) + 1
        expected = np.clip(act / scale, 0.0, 1.0)
        gains = []
        for _ in range(GAIN_PASSES):
            gain = rate_gain(specs, x, expected, steps - depth)
            gains.append(gain)
            if not gain > 0:
                raise ConversionError(f"layer {depth} never spikes on the calibration data")
            vth = int(min(VTH_MAX, max(1, round(vth * gain))))
            spec["neuron/vThMant"] = vth
        report.layers.append(
            ConvertedLayer(
                layer.kind,
                out_shape,
                scale,
                vth,
                int(np.abs(w_int).max()),
                float((w_int == 0).mean()),
                [round(g, 4) for g in gains],
            )
        )
        if log:
            log(
                f"layer {depth} ({layer.kind}): lambda {scale:.4g}, vth {vth} (rate gains "
                f"{', '.join(f'{g:.3f}' for g in gains)}), {(w_int == 0).mean():.0%} zero weights"
            )
        prev_scale, shape = scale, out_shape
    if steps - k < 1:
        raise ConversionError(f"{k} spiking layers leave no timestep of output in {steps}")
    report.ann_input_scale = prev_scale / (steps - k)

    out_dir = Path(out)
    if out_dir.resolve() == bundle.path.resolve():
        raise ConversionError("the output directory must not be the source bundle")
    out_dir.mkdir(parents=True, exist_ok=True)
    write_netx(out_dir / SNN_FILE, specs)
    tail = _ann_tail(
        model,
        convert[-1].relu_output,
        "frames",
        shape,
        report.ann_input_scale,
        convert[-1].kind == "dense",
    )
    onnx.save(tail, str(out_dir / ANN_FILE))
    for extra in ("ann_int8.onnx",):  # parts of the source that would contradict the manifest
        stale = out_dir / extra
        if stale.exists():
            stale.unlink()
    # The source's geometry, binning (interval = T), labels and output name; new parts, name and
    # recipe.
    converted = replace(
        bundle,
        path=out_dir,
        name=name or f"{bundle.name}-converted-S{k}A{len(chain) - k}",
        snn_file=out_dir / SNN_FILE,
        snn_output_shape=shape,
        ann_file=out_dir / ANN_FILE,
        ann_input_name="frames",
        recipe={
            "converted_from": {"bundle": str(bundle.path), "name": bundle.name},
            "conversion": {
                "method": "rate-coded ANN-to-SNN conversion, percentile threshold balancing "
                "(Diehl et al. 2015; Rueckauer et al. 2017), non-leaky IF Loihi neurons",
                **{k_: v for k_, v in report.to_dict().items() if k_ != "metrics"},
            },
            "source_recipe": bundle.recipe,
        },
        metrics={},
    )
    converted.validate()
    converted.save_manifest()
    return ModelBundle.load(out_dir), report
