"""The shipped model's accuracy on held-out synthetic gestures, measured the way the nodes run it:
binning on event time, then the per-window pipeline (core/hybrid/pipeline.py, built as the offline
evaluator builds it) with the native Loihi-exact SNN runtime, the accumulator and ONNX Runtime."""

from __future__ import annotations

from hsnn_perception.core.hybrid.bundle import ModelBundle

# Training used samples 0..3299 of seed 0 and tested on 1_000_000..; these were never seen.
FIRST_HELD_OUT = 50_000
SAMPLES = 110  # 10 per class
MIN_ACCURACY = 0.88  # manifest: 0.936 on 1,100 samples; 110 samples vary by about 0.03


def test_default_model_accuracy_on_held_out_samples(default_bundle_dir, held_out_accuracy):
    bundle = ModelBundle.load(default_bundle_dir)
    accuracy = held_out_accuracy(bundle, FIRST_HELD_OUT, SAMPLES)
    print(
        f"default model: {accuracy:.3f} on {SAMPLES} held-out samples "
        f"(manifest: {bundle.metrics.get('test_accuracy')})"
    )
    assert accuracy >= MIN_ACCURACY
