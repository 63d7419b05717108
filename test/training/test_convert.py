"""ANN-to-SNN conversion (hsnn_perception.training.convert): a small ANN bundle written with the
onnx helpers, converted, and run through the project's Loihi-exact runtime (and Lava): the spike
rates must follow the ANN's activations, and the converted bundle's logits the ANN's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from hsnn_perception.core.hybrid.bundle import BUNDLE_FORMAT, ModelBundle
from hsnn_perception.core.snn.runtime import load_snn
from hsnn_perception.training.convert import (
    WEIGHT_MAX,
    ConversionError,
    convert_bundle,
    layer_activations,
    parse_chain,
)
from hsnn_perception.training.export import predict_bundle

T = 64  # long enough for rate coding to resolve activations
C, H, W = 2, 8, 8


def _ann(rng: np.random.Generator, extra: list | None = None) -> onnx.ModelProto:
    """conv 3x3/2 (6), relu, conv 3x3/1 (6), relu, flatten, gemm (8), relu, gemm (3)"""
    w1 = rng.normal(0.1, 0.25, (6, C, 3, 3)).astype(np.float32)
    w2 = rng.normal(0.05, 0.2, (6, 6, 3, 3)).astype(np.float32)
    w3 = rng.normal(0.0, 0.2, (8, 6 * 4 * 4)).astype(np.float32)
    w4 = rng.normal(0.0, 0.5, (3, 8)).astype(np.float32)
    inits = [
        numpy_helper.from_array(a, n)
        for a, n in (
            (w1, "w1"),
            (rng.normal(0, 0.1, 6).astype(np.float32), "b1"),
            (w2, "w2"),
            (rng.normal(0, 0.1, 6).astype(np.float32), "b2"),
            (w3, "w3"),
            (rng.normal(0, 0.1, 8).astype(np.float32), "b3"),
            (w4, "w4"),
            (np.zeros(3, np.float32), "b4"),
        )
    ]
    conv = {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}
    nodes = [
        helper.make_node("Conv", ["frames", "w1", "b1"], ["c1"], strides=[2, 2], **conv),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], strides=[1, 1], **conv),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Flatten", ["r2"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "w3", "b3"], ["g3"], transB=1),
        helper.make_node("Relu", ["g3"], ["r3"]),
        helper.make_node("Gemm", ["r3", "w4", "b4"], ["logits"], transB=1),
        *(extra or []),
    ]
    graph = helper.make_graph(
        nodes,
        "ann",
        [helper.make_tensor_value_info("frames", TensorProto.FLOAT, ["N", C, H, W])],
        [helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, ["N", 3])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


def _bundle(path: Path, model: onnx.ModelProto, interval: int = T) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path / "ann.onnx"))
    manifest = {
        "format": BUNDLE_FORMAT,
        "name": "tiny-A4",
        "sensor": {"height": H, "width": W},
        "input": {"channels": C, "height": H, "width": W},
        "bin_us": 1000,
        "timesteps": T,
        "interval": interval,
        "labels": ["a", "b", "c"],
        "snn": None,
        "ann": {"file": "ann.onnx", "input_name": "frames", "output_name": "logits"},
    }
    (path / "manifest.json").write_text(json.dumps(manifest))
    return path


def _regular_spikes(rates: np.ndarray) -> np.ndarray:
    """Spike trains (N, T, C, H, W) with each pixel firing regularly at its rate (spikes/step)."""
    t = np.arange(T + 1).reshape(1, -1, 1, 1, 1)
    ticks = np.floor(t * rates[:, None])
    return (np.diff(ticks, axis=1) > 0).astype(np.uint8)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    rng = np.random.default_rng(3)
    root = tmp_path_factory.mktemp("convert")
    src = _bundle(root / "ann", _ann(rng))
    spikes = _regular_spikes(rng.uniform(0, 0.6, (40, C, H, W)))
    return src, spikes, root


def test_spike_rates_follow_the_ann_activations(tiny):
    src, spikes, root = tiny
    bundle, report = convert_bundle(src, root / "s2", 2, spikes, percentile=99.0)
    assert (bundle.timesteps, bundle.interval, bundle.snn_output_shape) == (T, T, (6, 4, 4))
    assert [layer.kind for layer in report.layers] == ["conv", "conv"]
    assert all(0 < layer.max_abs_weight <= WEIGHT_MAX for layer in report.layers)
    # Layer 2's spike counts over T - 2 useful steps x lambda_2 against the ANN's activation.
    snn = load_snn(bundle.snn_file)
    out, _ = snn.run_with_counts(spikes)
    counts = out.sum(axis=1).reshape(len(spikes), 6, 4, 4).astype(np.float64)
    model = onnx.load(str(src / "ann.onnx"))
    (act,) = layer_activations(model, "frames", spikes.sum(axis=1).astype(np.float32), ["r2"])
    estimate = counts * report.ann_input_scale
    assert report.ann_input_scale == pytest.approx(report.layers[1].scale / (T - 2))
    assert np.corrcoef(estimate.ravel(), act.ravel())[0, 1] > 0.95
    clipped = np.minimum(act, report.layers[1].scale)
    assert estimate.sum() == pytest.approx(clipped.sum(), rel=0.05)  # no rate bias left
    assert np.abs(estimate - clipped).mean() < 0.2 * clipped.mean()
    assert all(len(layer.rate_gains) == 2 for layer in report.layers)
    assert report.layers[0].rate_gains[0] < 0.9 < report.layers[0].rate_gains[1]
    # End to end, the converted bundle (runtime + ONNX Runtime) against the ANN bundle.
    ann = predict_bundle(ModelBundle.load(src), spikes)
    hybrid = predict_bundle(bundle, spikes)
    assert np.corrcoef(hybrid.logits.ravel(), ann.logits.ravel())[0, 1] > 0.95
    assert (hybrid.predictions == ann.predictions).mean() >= 0.8
    doc = json.loads((root / "s2" / "manifest.json").read_text())
    assert doc["recipe"]["converted_from"]["name"] == "tiny-A4"
    assert doc["recipe"]["conversion"]["k"] == 2 and doc["name"] == "tiny-A4-converted-S2A2"


def test_dense_layers_convert_too(tiny):
    src, spikes, root = tiny
    bundle, report = convert_bundle(src, root / "s3", 3, spikes)
    assert [layer.kind for layer in report.layers] == ["conv", "conv", "dense"]
    assert bundle.snn_output_shape == (8, 1, 1)
    ann = predict_bundle(ModelBundle.load(src), spikes)
    hybrid = predict_bundle(bundle, spikes)
    assert np.corrcoef(hybrid.logits.ravel(), ann.logits.ravel())[0, 1] > 0.9


@pytest.mark.slow
def test_lava_runs_the_converted_network_like_the_runtime(tiny):
    """The file is one netx builds: Lava's fixed_pt simulation gives the same spikes."""
    src, spikes, root = tiny
    bundle, _ = convert_bundle(src, root / "lava", 2, spikes[:8])
    native = load_snn(bundle.snn_file)
    with load_snn(bundle.snn_file, backend="lava") as lava:
        for sample in spikes[:2]:
            got, counts = lava.run_window(sample)
            want, want_counts = native.run_window(sample)
            np.testing.assert_array_equal(got, want)
            assert counts == want_counts and want.sum() > 0


def test_what_cannot_be_converted_is_said(tiny, tmp_path):
    src, spikes, _ = tiny
    with pytest.raises(ConversionError, match="--interval 64"):
        convert_bundle(
            _bundle(tmp_path / "i4", onnx.load(str(src / "ann.onnx")), 4), tmp_path / "o", 1, spikes
        )
    with pytest.raises(ConversionError, match=r"k must be in 1\.\.3"):
        convert_bundle(src, tmp_path / "o", 4, spikes)
    with pytest.raises(ConversionError, match="calibration spikes must be"):
        convert_bundle(src, tmp_path / "o", 1, spikes[:, :10])
    with pytest.raises(ConversionError, match="percentile"):
        convert_bundle(src, tmp_path / "o", 1, spikes, percentile=0)
    with pytest.raises(ConversionError, match="must not be the source"):
        convert_bundle(src, src, 1, spikes)
    pooled = _ann(
        np.random.default_rng(3),
        [helper.make_node("MaxPool", ["logits"], ["pooled"], kernel_shape=[1])],
    )
    with pytest.raises(ConversionError, match="MaxPool cannot be converted"):
        parse_chain(pooled)
    hybrid, _ = convert_bundle(src, tmp_path / "h", 1, spikes[:4])
    with pytest.raises(ConversionError, match="not an ANN bundle"):
        convert_bundle(hybrid.path, tmp_path / "o2", 1, spikes)


def test_cli_converts_and_measures_both_models(tiny, tmp_path, capsys):
    from hsnn_perception.training.cli import main

    src, _, _ = tiny
    doc = json.loads((src / "manifest.json").read_text())
    doc["sensor"] = {"height": 64, "width": 64}  # synthetic gestures binned to the 8x8 input
    sensor = _bundle(tmp_path / "ann64", onnx.load(str(src / "ann.onnx")))
    (sensor / "manifest.json").write_text(json.dumps(doc))
    out = tmp_path / "conv"
    argv = ["convert", str(sensor), "--out", str(out), "--k", "2", "--n-train", "22"]
    argv += ["--n-test", "11", "--no-progress", "--cache-dir", str(tmp_path / "cache")]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    bundle = ModelBundle.load(out)
    m = bundle.metrics
    assert m["test_samples"] == 11 and m["calibration"]["windows"] == 22
    assert 0 <= m["test_accuracy"] <= 1 and 0 <= m["source_test_accuracy"] <= 1
    assert "layer 2 (conv): lambda" in printed and "source ANN" in printed
    assert bundle.recipe["command"].startswith("hsnn-convert ") and bundle.sensor_height == 64
    # a bad request is one line and exit status 1, no traceback
    assert main(["convert", str(out), "--out", str(tmp_path / "again"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("hsnn-convert: error:") and "not an ANN bundle" in err
