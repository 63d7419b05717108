"""ANN inputs made from a model bundle as the deployed pipeline makes them: the inputs INT8
calibration needs (TensorRT's and ONNX Runtime's QDQ), and the test inputs of the classifier
benchmark. Synthetic samples are binned and run through the bundle's SNN and accumulator by the
per-window chain of :mod:`hsnn_perception.core.hybrid.pipeline`, so INT8 ranges match what the
classifier will see.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from hsnn_perception.core.ann.backends import BackendError
from hsnn_perception.core.hybrid.bundle import ModelBundle


def bundle_ann_inputs(
    bundle: ModelBundle,
    indices: Iterable[int],
    seed: int = 0,
    *,
    snn_backend: str = "native",
) -> tuple[NDArray[Any], NDArray[Any]]:
    """ANN inputs and labels for synthetic samples ``indices``, made as the deployed pipeline does.

    Each sample of ``SyntheticGestures(sensor size, seed, sample_us = window)`` is binned into
    ``timesteps`` bins of ``bin_us`` (downsampled to the bundle's input size), then run through
    :meth:`HybridPipeline.features <hsnn_perception.core.hybrid.pipeline.HybridPipeline.features>`:
    binarised (a pixel spikes if it had an event), the SNN part (``snn_backend``; skipped for an
    ANN-only bundle), summed over ``interval`` steps and stacked on the channel axis. Returns
    ``(inputs (N, *ann_input_shape[1:]) float32, labels (N,) int64)``.
    """
    from hsnn_perception.core.events.binning import bin_events
    from hsnn_perception.core.events.synthetic import SyntheticGestures
    from hsnn_perception.core.hybrid.pipeline import BridgeStage, HybridPipeline, SnnStage

    if bundle.ann_file is None:
        raise BackendError(f"bundle {bundle.name} has no ANN part: nothing to calibrate")
    idx = [int(i) for i in indices]
    if not idx:
        raise BackendError("no sample indices given")
    gen = SyntheticGestures(
        height=bundle.sensor_height,
        width=bundle.sensor_width,
        seed=seed,
        sample_us=bundle.window_us,
    )
    downsample = (bundle.sensor_height // bundle.height, bundle.sensor_width // bundle.width)
    snn = None
    if bundle.snn_file is not None:
        from hsnn_perception.core.snn.runtime import load_snn

        snn = load_snn(bundle.snn_file, backend=snn_backend)
    # chip and cores only label energy figures, which features() does not make
    snn_stage = None if snn is None else SnnStage(snn, bundle.timesteps, chip="loihi", cores=0)
    pipeline = HybridPipeline(snn_stage, BridgeStage(bundle.interval), classifier=None)
    want = bundle.ann_input_shape[1:]
    inputs = np.empty((len(idx), *want), dtype=np.float32)
    labels = np.empty(len(idx), dtype=np.int64)
    try:
        for row, i in enumerate(idx):
            events, label = gen.sample(i)
            counts = bin_events(
                events,
                0,
                bundle.bin_us,
                bundle.timesteps,
                bundle.sensor_height,
                bundle.sensor_width,
                downsample=downsample,
            )
            frames = pipeline.features(counts)  # (1, F*C, H, W)
            if tuple(frames.shape[1:]) != tuple(want):
                raise BackendError(
                    f"bundle {bundle.name}: the pipeline gives ANN inputs of shape "
                    f"{tuple(frames.shape)}, the manifest says {bundle.ann_input_shape}"
                )
            inputs[row] = frames[0]
            labels[row] = label
    finally:
        if snn is not None:
            snn.close()
    return inputs, labels


def calibration_inputs(
    bundle: ModelBundle, n: int = 300, seed: int = 1, *, snn_backend: str = "native"
) -> NDArray[Any]:
    """``n`` calibration inputs ``(n, F*C, H, W)`` for the bundle's ANN (synthetic samples 0..n-1).

    The default ``seed`` (1) differs from the seed the test set is drawn from (0) so calibration
    never sees test samples; classes are balanced (sample i has class i % 11).
    """
    if n < 1:
        raise BackendError(f"the number of calibration samples must be >= 1, got {n}")
    inputs, _ = bundle_ann_inputs(bundle, range(n), seed, snn_backend=snn_backend)
    return inputs
