"""Shared test set-up: every test session gets its own DDS domain, on loopback only, so parallel
runs on one machine do not see each other's nodes."""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(1, 100)))
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def default_bundle_dir() -> Path:
    path = ROOT / "models" / "default"
    if not (path / "manifest.json").is_file():
        pytest.fail("the shipped default model models/default is missing")
    return path


@pytest.fixture(scope="session")
def held_out_accuracy():  # noqa: ANN201
    """``accuracy(bundle, first, samples)``: the share of synthetic gestures ``first`` ..
    ``first + samples - 1`` (seed 0) a shipped bundle classifies right, run the way the nodes run
    it: binned on event time to the model input, then the per-window pipeline with the native
    runtime and ONNX Runtime, built as the offline evaluator builds it."""
    import numpy as np

    from hsnn_perception.core.events.binning import bin_events
    from hsnn_perception.core.events.synthetic import SyntheticGestures
    from hsnn_perception.evaluation.offline import OfflineSettings, close_pipeline, open_pipeline

    def accuracy(bundle, first: int, samples: int) -> float:  # noqa: ANN001
        gen = SyntheticGestures(bundle.sensor_height, bundle.sensor_width, seed=0)
        factor = (bundle.sensor_height // bundle.height, bundle.sensor_width // bundle.width)
        chain = open_pipeline(bundle, OfflineSettings(measure=False, progress=False), None)
        correct = 0
        try:
            for i in range(first, first + samples):
                events, label = gen.sample(i)
                frames = bin_events(
                    events,
                    0,
                    bundle.bin_us,
                    bundle.timesteps,
                    bundle.sensor_height,
                    bundle.sensor_width,
                    downsample=factor,
                )
                correct += int(np.argmax(chain.window(frames).scores) == label)
        finally:
            close_pipeline(chain)
        return correct / samples

    return accuracy


@pytest.hookimpl(wrapper=True)
def pytest_pycollect_makemodule(module_path: Path, parent: pytest.Collector):  # noqa: ANN201
    """launch_testing's plugin imports every test module in this hook, inside its package's
    collection: a module-level ``pytest.importorskip`` (test_nir.py without nir) then skipped the
    whole package, every test of test/core/snn with it. Such a module becomes a plain Module
    again, whose own import skips it alone."""
    try:
        return (yield)
    except pytest.skip.Exception:
        return pytest.Module.from_parent(parent, path=module_path)
