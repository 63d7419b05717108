"""Tests of the per-window pipeline (hsnn_perception.core.hybrid.pipeline): the stages against the
steps they chain, on the shipped model with the real native runtime and ONNX Runtime."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hsnn_perception.core.ann.backends import create_backend
from hsnn_perception.core.ann.readout import softmax
from hsnn_perception.core.energy.figure import SOURCE_MEASURED, SOURCE_MODELLED
from hsnn_perception.core.events.binning import bin_events
from hsnn_perception.core.events.synthetic import SyntheticGestures
from hsnn_perception.core.hybrid.accumulator import accumulate, frames_to_channels
from hsnn_perception.core.hybrid.bundle import ModelBundle
from hsnn_perception.core.hybrid.pipeline import (
    BridgeStage,
    ClassifierStage,
    HybridPipeline,
    InvalidLogitsError,
    SnnStage,
    input_spikes,
    snn_features,
    timed,
)
from hsnn_perception.core.snn.runtime import load_snn


class CountingMeter:
    """A PowerMeter that reports 2 J per stop: isolates timed()'s start/stop pairing."""

    available = True
    description = "counting test meter"

    def __init__(self) -> None:
        self.running = False
        self.stops = 0

    def start(self) -> None:
        assert not self.running, "started twice"
        self.running = True

    def stop(self) -> tuple[float, float]:
        assert self.running, "stopped before start"
        self.running = False
        self.stops += 1
        return 2.0, 1.0


def test_input_spikes_are_binary_per_pixel_and_bin():
    frames = np.array([[[[0, 1, 7]], [[3, 0, 0]]]], dtype=np.float32)  # (1, 2, 1, 3)
    spikes = input_spikes(frames)
    assert spikes.dtype == np.uint8
    np.testing.assert_array_equal(spikes, [[[[0, 1, 1]], [[1, 0, 0]]]])


def test_snn_features_are_the_accumulator_circuit():
    rng = np.random.default_rng(0)
    spikes = (rng.random((8, 3, 4, 5)) < 0.3).astype(np.uint8)
    feats = snn_features(spikes, 4)
    assert feats.shape == (1, 2 * 3, 4, 5) and feats.dtype == np.float32
    want = frames_to_channels(accumulate(spikes[np.newaxis], 4))
    np.testing.assert_array_equal(feats, want)
    # channel block f holds the counts of bins f*I .. f*I+I-1
    np.testing.assert_array_equal(feats[0, 3:6], spikes[4:8].sum(axis=0))


def test_timed_stops_the_meter_when_the_call_fails():
    meter = CountingMeter()

    def boom() -> None:
        raise ValueError("no")

    with pytest.raises(ValueError):
        timed(meter, boom)
    assert meter.stops == 1 and not meter.running
    t = timed(meter, lambda a: a + 1, 41)
    assert (t.value, t.energy_j, t.measured) == (42, 2.0, True)
    assert t.latency_s >= 0
    unmetered = timed(None, lambda: "x")
    assert math.isnan(unmetered.energy_j) and not unmetered.measured


@pytest.fixture(scope="module")
def default_windows(default_bundle_dir):
    bundle = ModelBundle.load(default_bundle_dir)
    gen = SyntheticGestures(bundle.sensor_height, bundle.sensor_width, seed=7)
    factor = (bundle.sensor_height // bundle.height, bundle.sensor_width // bundle.width)
    frames = []
    for i in range(3):
        events, _ = gen.sample(60_000 + i)
        frames.append(
            bin_events(
                events,
                0,
                bundle.bin_us,
                bundle.timesteps,
                bundle.sensor_height,
                bundle.sensor_width,
                downsample=factor,
            )
        )
    return bundle, frames


def test_pipeline_gives_what_the_steps_give_one_by_one(default_windows):
    bundle, windows = default_windows
    with (
        load_snn(bundle.snn_file, backend="native") as snn,
        create_backend("onnxruntime", bundle.ann_file, providers="cpu") as ann,
    ):
        pipeline = HybridPipeline(
            SnnStage(snn, bundle.timesteps, chip="loihi", cores=0),
            BridgeStage(bundle.interval),
            ClassifierStage(ann, bundle.num_classes, macs=1000),
        )
        for frames in windows:
            r = pipeline.window(frames)
            out, ops = snn.run_window((frames > 0).astype(np.uint8))
            x = frames_to_channels(accumulate(out[np.newaxis], bundle.interval))
            np.testing.assert_array_equal(r.output_spikes, out)
            np.testing.assert_array_equal(r.features, x)
            np.testing.assert_array_equal(pipeline.features(frames), x)
            np.testing.assert_allclose(r.scores, softmax(ann.infer(x).reshape(-1)), rtol=1e-6)
            assert r.ops.synaptic_ops == ops.synaptic_ops and r.ops.spikes == ops.spikes
            assert set(r.figures) == {"snn", "bridge", "classifier"} == set(r.latency_s)
            assert r.figures["snn"].source == SOURCE_MODELLED
            assert r.figures["snn"].synaptic_ops == ops.synaptic_ops
            assert r.figures["classifier"].macs == 1000


def test_bridge_stage_measures_with_a_meter_and_models_without():
    spikes = np.ones((4, 2, 3, 3), np.uint8)
    meter = CountingMeter()
    measured = BridgeStage(2, meter).run(spikes)
    assert measured.figure.source == SOURCE_MEASURED and measured.figure.energy_j == 2.0
    modelled = BridgeStage(2, None, energy_per_add_j=1e-12).run(spikes)
    assert modelled.figure.source == SOURCE_MODELLED
    assert modelled.figure.energy_j == pytest.approx(spikes.size * 1e-12)
    np.testing.assert_array_equal(measured.value, modelled.value)


class FixedLogits:
    """A classifier backend that returns given logits (isolates the logit checks)."""

    name = "fixed"
    device = "cpu"

    def __init__(self, logits: list[float]) -> None:
        self.logits = np.asarray(logits, np.float32)

    def infer(self, x: np.ndarray) -> np.ndarray:
        return self.logits


@pytest.mark.parametrize("logits", [[0.0, math.nan, 1.0], [0.0, 1.0], [math.inf, 0.0, 0.0]])
def test_classifier_stage_refuses_logits_that_are_not_scores(logits):
    stage = ClassifierStage(FixedLogits(logits), 3)
    with pytest.raises(InvalidLogitsError, match="invalid logits"):
        stage.run(np.zeros((1, 2, 2, 2), np.float32))


def test_without_snn_or_ann_the_input_spikes_reach_a_spike_count_readout():
    # An S0 model (no spiking layers) feeds the binarised frames to the accumulator; an SNN-only
    # model reads the class from output spike counts per class (here 2 classes x 1 pixel).
    frames = np.zeros((4, 2, 1, 1), np.float32)
    frames[:, 1] = 5  # class 1 fires every bin
    pipeline = HybridPipeline(None, BridgeStage(2), ClassifierStage(None, 2))
    r = pipeline.window(frames)
    np.testing.assert_array_equal(r.output_spikes, input_spikes(frames))
    assert int(np.argmax(r.scores)) == 1 and r.ops is None
    assert set(r.figures) == {"bridge", "classifier"}
    with pytest.raises(ValueError, match="no classifier"):
        HybridPipeline(None, BridgeStage(2), None).window(frames)
