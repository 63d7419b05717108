"""Export a trained hybrid model as a deployable bundle, and run a bundle the way the nodes do.

* SNN part -> netx HDF5 (``snn.net``): a ``layer`` group whose ``0`` is an input layer holding only
  the input shape, followed by each slayer block's own ``export_hdf5`` (so weights are quantised
  exactly as slayer quantised them in training).
* ANN part -> ONNX (``ann.onnx``, input ``frames``, output ``logits``, dynamic batch axis), with
  torch's TorchScript-based exporter (``dynamo=False``: the dynamo exporter needs onnxscript, which
  is not installed) at opset 17, which onnxruntime 1.32 runs.
* ``manifest.json`` through :class:`hsnn_perception.core.hybrid.bundle.ModelBundle`.

:func:`predict_bundle` runs a bundle on input spikes with the project's SNN runtime
(``load_snn(..., backend="native")``), the shared accumulator and onnxruntime: the path the
nodes take, used to measure the accuracy stored in the manifest.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hsnn_perception.core.errors import ModelError
from hsnn_perception.core.hybrid.accumulator import accumulate, frames_to_channels
from hsnn_perception.core.hybrid.bundle import ModelBundle
from hsnn_perception.training.data import InputSpec
from hsnn_perception.training.models import ArchSpec

SNN_FILE = "snn.net"
ANN_FILE = "ann.onnx"
ONNX_OPSET = 17


class ExportError(ModelError, ValueError):
    """A model cannot be exported or a bundle cannot be run as asked."""


def export_snn(model: Any, path: Path) -> Path:
    """Write the SNN part of ``model`` (k >= 1) as netx HDF5."""
    import h5py

    spec: ArchSpec = model.spec
    if spec.k == 0:
        raise ExportError("an ANN baseline (k=0) has no SNN part to export")
    import torch

    # slayer sets each neuron's shape on its first forward pass and export_hdf5 writes it:
    # a model fresh from load_state_dict needs one (tiny) pass first.
    with torch.no_grad():
        model.run_snn(torch.zeros(1, spec.in_channels, spec.height, spec.width, 2))
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        layers = f.create_group("layer")
        inp = layers.create_group("0")
        # An input layer without a neuron only declares the input shape (slayer order C, H, W);
        # netx and the runtime then pass the binary input spikes straight to the first synapse.
        inp.create_dataset("type", (1,), "S10", [b"input"])
        inp.create_dataset("shape", data=np.array([spec.in_channels, spec.height, spec.width]))
        for i, block in enumerate(model.snn):
            block.export_hdf5(layers.create_group(str(i + 1)))
    return path


def export_ann(model: Any, path: Path, opset: int = ONNX_OPSET) -> Path:
    """Write the ANN part of ``model`` (k <= 5) as ONNX: ``frames (B, F*C, h, w) -> logits``."""
    import torch

    spec: ArchSpec = model.spec
    if model.ann is None:
        raise ExportError("an SNN baseline (k=6) has no ANN part to export")
    path.parent.mkdir(parents=True, exist_ok=True)
    ann = model.ann.eval()
    dummy = torch.zeros(spec.ann_input_shape)
    with warnings.catch_warnings():
        # The legacy exporter warns that it is deprecated; it is the one that needs no onnxscript.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            ann,
            (dummy,),
            str(path),
            input_names=["frames"],
            output_names=["logits"],
            dynamic_axes={"frames": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=opset,
            dynamo=False,
        )
    return path


def write_bundle(
    model: Any,
    out_dir: str | Path,
    input_spec: InputSpec,
    labels: tuple[str, ...],
    name: str,
    recipe: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    ann_file: Path | None = None,
) -> ModelBundle:
    """Export both parts and the manifest into ``out_dir``; returns the loaded bundle.

    ``ann_file`` overrides the exported ANN (e.g. an int8 QDQ model already in ``out_dir``).
    """
    spec: ArchSpec = model.spec
    if len(labels) != spec.num_classes:
        raise ExportError(f"{len(labels)} labels for a model with {spec.num_classes} classes")
    if (input_spec.height, input_spec.width, input_spec.timesteps) != (
        spec.height,
        spec.width,
        spec.timesteps,
    ):
        raise ExportError("the input spec does not match the model's input geometry")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    snn_path = export_snn(model, out / SNN_FILE) if spec.k > 0 else None
    if spec.k < 6:
        ann_path = ann_file or export_ann(model, out / ANN_FILE)
    else:
        ann_path = None
    for stale, keep in ((out / SNN_FILE, snn_path), (out / ANN_FILE, ann_path)):
        if keep is None and stale.exists():
            stale.unlink()  # a previous bundle's part would contradict the manifest
    bundle = ModelBundle(
        path=out,
        name=name,
        sensor_height=input_spec.sensor_height,
        sensor_width=input_spec.sensor_width,
        channels=spec.in_channels,
        height=spec.height,
        width=spec.width,
        bin_us=input_spec.bin_us,
        timesteps=spec.timesteps,
        interval=spec.interval,
        labels=tuple(labels),
        snn_file=snn_path,
        snn_output_shape=tuple(spec.feature_shape) if snn_path else None,
        ann_file=ann_path,
        recipe=dict(recipe or {}),
        metrics=dict(metrics or {}),
    )
    bundle.validate()
    bundle.save_manifest()
    return ModelBundle.load(out)


@dataclass
class BundleRun:
    """Result of running a bundle on a batch of windows."""

    logits: np.ndarray  # (N, classes): ANN logits, or output spike counts for an SNN-only model
    features: np.ndarray  # (N, F*C, h, w) float32, what the ANN part received
    snn_counts: np.ndarray | None  # (N, T, layers, 3) runtime op counts, None without SNN

    @property
    def predictions(self) -> np.ndarray:
        return self.logits.argmax(axis=1)


def onnx_session(path: Path, threads: int = 1) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def predict_bundle(
    bundle: ModelBundle,
    spikes: np.ndarray,
    snn_backend: str = "native",
    batch_size: int = 64,
    ann_file: Path | None = None,
) -> BundleRun:
    """Run ``bundle`` on input spikes ``(N, T, C, H, W)`` like the nodes do."""
    x = np.asarray(spikes)
    want = (bundle.timesteps, bundle.channels, bundle.height, bundle.width)
    if x.ndim != 5 or tuple(x.shape[1:]) != want:
        raise ExportError(f"input spikes must be (N, {want}), got {x.shape}")
    counts = None
    if bundle.snn_file is not None:
        from hsnn_perception.core.snn.runtime import load_snn

        snn = load_snn(bundle.snn_file, backend=snn_backend)
        try:
            run_batch = getattr(snn, "run_with_counts", None)
            if run_batch is not None:  # the native runtime runs a batch at once
                out, counts = run_batch(x.astype(np.uint8))
            else:  # any other SnnBackend (Lava): window by window, as the SNN node runs it
                out = np.stack([snn.run_window(s)[0] for s in x.astype(np.uint8)])
        finally:
            snn.close()
        out = out.reshape(x.shape[0], bundle.timesteps, *bundle.feature_shape)
    else:
        out = x
    feats = frames_to_channels(accumulate(out, bundle.interval, time_axis=1))
    feats = np.ascontiguousarray(feats, dtype=np.float32)
    ann_path = ann_file or bundle.ann_file
    if ann_path is None:
        n = feats.shape[0]
        logits = feats.reshape(n, bundle.frames, -1).sum(axis=1)
    else:
        sess = onnx_session(ann_path)
        logits = np.concatenate(
            [
                sess.run(
                    [bundle.ann_output_name], {bundle.ann_input_name: feats[i : i + batch_size]}
                )[0]
                for i in range(0, feats.shape[0], batch_size)
            ]
        )
    return BundleRun(logits=np.asarray(logits), features=feats, snn_counts=counts)
