"""8-bit quantisation-aware training (QAT) of the ANN part, exported as an int8 QDQ ONNX model.

Simple fake quantisation (no torch.ao graph rewriting, which does not survive the TorchScript ONNX
exporter well for this small model): for every Conv2d / Linear of the ANN part

* weights: symmetric per-tensor int8, scale = max|w| / 127 (recomputed each step);
* inputs: unsigned per-tensor uint8 with zero point 0, since every input of these layers is
  non-negative (accumulated spike counts, or ReLU outputs); the scale is calibrated once on
  training data (99.99th percentile / 255) and then fixed.

``torch.fake_quantize_per_tensor_affine`` has a straight-through gradient and exports as
QuantizeLinear/DequantizeLinear pairs, which onnxruntime runs with int8 kernels. The SNN part is
frozen: its weights are already the 8-bit ones Loihi uses.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hsnn_perception.core.errors import ModelError
from hsnn_perception.training.data import SpikeSet

INT8_FILE = "ann_int8.onnx"
ACT_PERCENTILE = 99.99


class QuantizationError(ModelError, ValueError):
    """The model has no ANN part to quantise, or the data do not fit it."""


@dataclass
class QatResult:
    path: Path
    torch_accuracy: float
    act_scales: list[float]


def _features(model: Any, data: SpikeSet, batch_size: int = 64) -> Any:
    """Accumulator output (the ANN input) for all of ``data``, computed once."""
    import torch

    from hsnn_perception.training.train import to_tensor

    model.eval()
    feats = []
    with torch.no_grad():
        for i in range(0, len(data), batch_size):
            f, _ = model.features(to_tensor(data.spikes[i : i + batch_size]))
            feats.append(f)
    return torch.cat(feats)


def _fq_ann_class() -> type:
    import torch

    nn = torch.nn
    functional = torch.nn.functional

    class FakeQuantAnn(nn.Module):
        """The ANN part with 8-bit fake quantisation of weights and layer inputs."""

        def __init__(self, ann: Any, act_scales: list[float]) -> None:
            super().__init__()
            self.ann = ann
            self.act_scales = list(act_scales)

        @staticmethod
        def _qw(w: Any) -> Any:
            scale = float(w.detach().abs().max().clamp(min=1e-8)) / 127.0
            return torch.fake_quantize_per_tensor_affine(w, scale, 0, -128, 127)

        def forward(self, x: Any) -> Any:
            q = 0
            for layer in self.ann:
                if isinstance(layer, (nn.Conv2d, nn.Linear)):
                    x = torch.fake_quantize_per_tensor_affine(x, self.act_scales[q], 0, 0, 255)
                    q += 1
                    w = self._qw(layer.weight)
                    if isinstance(layer, nn.Conv2d):
                        x = functional.conv2d(
                            x, w, layer.bias, layer.stride, layer.padding, layer.dilation
                        )
                    else:
                        x = functional.linear(x, w, layer.bias)
                else:
                    x = layer(x)
            return x

    return FakeQuantAnn


def calibrate(ann: Any, feats: Any) -> list[float]:
    """Input scale of each Conv2d/Linear: the ACT_PERCENTILE-th percentile of its input / 255."""
    import torch

    scales: list[float] = []
    x = feats
    with torch.no_grad():
        for layer in ann:
            if isinstance(layer, (torch.nn.Conv2d, torch.nn.Linear)):
                v = x.flatten()
                if v.numel() > 1_000_000:  # torch.quantile has an input size limit
                    v = v[torch.randperm(v.numel())[:1_000_000]]
                hi = float(torch.quantile(v.float(), ACT_PERCENTILE / 100.0))
                scales.append(max(hi, 1e-3) / 255.0)
            x = layer(x)
    return scales


def export_qat_int8(
    result: Any,
    train: SpikeSet,
    test: SpikeSet,
    out_dir: Path,
    log: Callable[[str], None] | None = None,
) -> QatResult:
    """Fine-tune the ANN part of ``result.model`` with fake quantisation, export int8 QDQ ONNX."""
    import torch

    model = result.model
    config = result.config
    if model.ann is None:
        raise QuantizationError("an SNN baseline (k=6) has no ANN part to quantise")
    ftrain = _features(model, train)
    ftest = _features(model, test)
    ann = model.ann
    scales = calibrate(ann.eval(), ftrain)
    fq = _fq_ann_class()(ann, scales)
    opt = torch.optim.AdamW(ann.parameters(), lr=config.lr * 0.1, weight_decay=config.weight_decay)
    rng = np.random.default_rng(config.seed + 1)
    labels = torch.from_numpy(train.labels)
    for epoch in range(config.qat_epochs):
        fq.train()
        order = torch.from_numpy(rng.permutation(len(train)))
        for i in range(0, len(train), config.batch_size):
            idx = order[i : i + config.batch_size]
            loss = torch.nn.functional.cross_entropy(fq(ftrain[idx]), labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        if log:
            with torch.no_grad():
                acc = float((fq.eval()(ftest).argmax(1).numpy() == test.labels).mean())
            log(f"QAT epoch {epoch + 1}: fake-quant test accuracy {acc:.3f}")
    fq.eval()
    with torch.no_grad():
        torch_acc = float((fq(ftest).argmax(1).numpy() == test.labels).mean())
    path = Path(out_dir) / INT8_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            fq,
            (torch.zeros(model.spec.ann_input_shape),),
            str(path),
            input_names=["frames"],
            output_names=["logits"],
            dynamic_axes={"frames": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    fold_weight_quantizers(path)
    return QatResult(path=path, torch_accuracy=torch_acc, act_scales=scales)


def fold_weight_quantizers(path: Path) -> int:
    """Store weights as int8 initializers: ``QuantizeLinear(float W)`` -> precomputed int8 W.

    The exporter writes float weights followed by QuantizeLinear/DequantizeLinear; folding the
    QuantizeLinear makes the file ~4x smaller and is the standard QDQ form (int8 weight ->
    DequantizeLinear -> Conv/Gemm) that onnxruntime turns into integer kernels. Returns the number
    of weights folded.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    consts = {
        n.output[0]: numpy_helper.to_array(n.attribute[0].t)
        for n in graph.node
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"
    }

    def value(name: str) -> np.ndarray | None:
        if name in inits:
            return numpy_helper.to_array(inits[name])
        return consts.get(name)

    folded = 0
    keep = []
    for node in graph.node:
        if node.op_type == "QuantizeLinear" and node.input[0] in inits:
            w = numpy_helper.to_array(inits[node.input[0]])
            scale = value(node.input[1])
            zp = value(node.input[2]) if len(node.input) > 2 else np.zeros((), np.uint8)
            if scale is not None and zp is not None and scale.size == 1:
                lo, hi = np.iinfo(zp.dtype).min, np.iinfo(zp.dtype).max
                # ONNX QuantizeLinear: saturate(round_half_to_even(x / scale) + zero_point)
                q = np.clip(np.rint(w / scale) + zp.astype(np.int64), lo, hi).astype(zp.dtype)
                graph.initializer.append(numpy_helper.from_array(q, node.output[0]))
                folded += 1
                continue
        keep.append(node)
    if folded:
        del graph.node[:]
        graph.node.extend(keep)
        used = {i for n in graph.node for i in n.input}
        unused = [t for t in graph.initializer if t.name not in used]
        for t in unused:
            graph.initializer.remove(t)
        onnx.checker.check_model(model)
        onnx.save(model, str(path))
    return folded


def is_qdq(path: Path) -> bool:
    """True if the ONNX model at ``path`` holds QuantizeLinear/DequantizeLinear nodes."""
    import onnx

    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    return {"QuantizeLinear", "DequantizeLinear"} <= ops
