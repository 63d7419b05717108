"""Tests of hsnn_perception.core.ann.calibration: ANN inputs made from a model bundle by the real
pipeline modules, checked against the chain computed independently, and fed to INT8 calibration."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from core.ann.ann_fixtures import Messages, make_ann
from hsnn_perception.core.ann.backends import BackendError, create_backend
from hsnn_perception.core.ann.calibration import bundle_ann_inputs, calibration_inputs
from hsnn_perception.core.events.synthetic import SyntheticGestures
from hsnn_perception.core.hybrid.accumulator import accumulate, frames_to_channels
from hsnn_perception.core.hybrid.bundle import ModelBundle


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
    x, labels = bundle_ann_inputs(bundle, range(12), seed=4)
    assert x.shape == (12, *bundle.ann_input_shape[1:]) and x.dtype == np.float32
    np.testing.assert_array_equal(labels, np.arange(12) % 11)
    gen = SyntheticGestures(64, 64, seed=4, sample_us=bundle.window_us)
    for i in (0, 5, 11):
        events, label = gen.sample(i)
        assert label == labels[i]
        np.testing.assert_array_equal(x[i], expected_frames(events, bundle))
    assert x.max() <= bundle.interval and x.sum() > 0  # binary spikes summed over I steps
    calib = calibration_inputs(bundle, 12)  # default seed 1: other samples than seed 4
    assert calib.shape == x.shape and not np.array_equal(calib, x)
    np.testing.assert_array_equal(calib, calibration_inputs(bundle, 12))  # deterministic


def test_calibration_inputs_through_the_snn_runtime(tmp_path):
    pytest.importorskip("hsnn_perception.core.snn.runtime")
    from hsnn_perception.core.snn.runtime import load_snn

    bundle = write_bundle(tmp_path / "b", snn=True)
    x, labels = bundle_ann_inputs(bundle, range(4), seed=0)
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
    calib = calibration_inputs(bundle, 30)
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
        calibration_inputs(bundle, 0)
    with pytest.raises(BackendError, match="no sample indices"):
        bundle_ann_inputs(bundle, [])
    with pytest.raises(BackendError, match="no ANN part"):
        calibration_inputs(dataclasses.replace(bundle, ann_file=None), 3)
    # a manifest whose SNN output shape disagrees with what the SNN produces
    with_snn = write_bundle(tmp_path / "s", snn=True)
    wrong = dataclasses.replace(with_snn, snn_output_shape=(4, 4, 4))
    with pytest.raises(BackendError, match="the manifest says"):
        calibration_inputs(wrong, 1)
