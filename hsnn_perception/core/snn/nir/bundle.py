"""A NIR file -> a model bundle the nodes, hsnn-eval and Lava run (``hsnn-nir import``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from hsnn_perception.core.snn.nir.fixed_point import ImportedLayer, layers_to_netx
from hsnn_perception.core.snn.nir.layers import DEFAULT_DT, NirError
from hsnn_perception.core.snn.nir.parse import graph_dt, nir_layers, read_graph


@dataclass
class ImportReport:
    source: str
    dt: float
    dt_from: str  # "metadata" | "argument"
    layers: list[ImportedLayer]
    calibration_windows: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _onnx_io(path: Path) -> tuple[str, str, list[Any]]:
    import onnx

    try:
        model = onnx.load(str(path))
    except Exception as exc:  # onnx raises protobuf's DecodeError and others
        raise NirError(f"--ann {path}: not a readable ONNX model ({exc})") from exc
    graph = model.graph
    inits = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in inits]
    if len(inputs) != 1 or not graph.output:
        raise NirError(f"--ann {path}: needs exactly one input and an output")
    dims = [d.dim_value or d.dim_param for d in inputs[0].type.tensor_type.shape.dim]
    return inputs[0].name, graph.output[0].name, dims


def import_graph(
    nir_file: str | Path,
    out: str | Path,
    template: Any,
    ann: str | Path | None = None,
    dt: float | None = None,
    name: str | None = None,
    labels: tuple[str, ...] | None = None,
    calibration: NDArray[Any] | None = None,
    log: Callable[[str], None] | None = None,
) -> tuple[Any, ImportReport]:
    """Import the NIR graph ``nir_file`` as a bundle in ``out`` (netx ``snn.net``, the ONNX
    ``ann`` copied as ``ann.onnx`` when given, ``manifest.json``).

    ``template`` (a ModelBundle) gives the sensor, binning, window, accumulator interval and
    (unless ``labels``) the class names. ``dt``: seconds per step, used when the graph's metadata
    has none. Without ``ann`` the class is the output neuron with the most spikes, so the last
    layer must have one neuron per label.
    """
    import shutil

    from hsnn_perception.core.hybrid.bundle import ModelBundle

    graph = read_graph(nir_file)
    meta_dt = graph_dt(graph)
    if meta_dt is not None:
        step, dt_from = meta_dt, "metadata"
    elif dt is not None:
        step, dt_from = float(dt), "argument"
    else:
        step, dt_from = DEFAULT_DT, "default"
    input_shape, layers = nir_layers(graph, step)
    c, h, w = input_shape
    if c != template.channels:
        raise NirError(
            f"the graph's input has {c} channels (shape {list(input_shape)}) but the template "
            f"bins events into {template.channels} (C, H, W): give it an Input of shape "
            f"[{template.channels}, H, W] (a Flatten before a dense layer, if it has one)"
        )
    if template.sensor_height % h or template.sensor_width % w:
        raise NirError(
            f"the graph's input {h}x{w} does not divide the template's sensor "
            f"{template.sensor_height}x{template.sensor_width}"
        )
    labels = tuple(labels) if labels else template.labels
    out_shape = layers[-1].out_shape
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    ann_file = None
    ann_names = ("frames", "logits")
    frames = template.timesteps // template.interval
    if ann is not None:
        ann = Path(ann)
        in_name, out_name, dims = _onnx_io(ann)
        want = [frames * out_shape[0], out_shape[1], out_shape[2]]
        if len(dims) != 4 or [d if isinstance(d, int) else None for d in dims[1:]] != want:
            raise NirError(
                f"--ann {ann}: its input {dims} does not take the accumulated SNN output "
                f"[N, {want[0]}, {want[1]}, {want[2]}] ({frames} frames of {list(out_shape)})"
            )
        ann_file = out_dir / "ann.onnx"
        if ann.resolve() != ann_file.resolve():
            shutil.copyfile(ann, ann_file)
        ann_names = (in_name, out_name)
    elif int(np.prod(out_shape)) != len(labels):
        raise NirError(
            f"without --ann the class is the output neuron with the most spikes, but the last "
            f"layer has {int(np.prod(out_shape))} neurons for {len(labels)} labels (give --ann "
            "or --labels)"
        )
    if calibration is not None and tuple(calibration.shape[2:]) != tuple(input_shape):
        if log:
            log(
                f"calibration windows {list(calibration.shape[2:])} do not fit the graph's "
                f"input {list(input_shape)}: no rate calibration"
            )
        calibration = None
    snn_file = out_dir / "snn.net"
    report_layers = layers_to_netx(input_shape, layers, snn_file, calibration, log)
    report = ImportReport(
        str(nir_file),
        step,
        dt_from,
        report_layers,
        0 if calibration is None else int(calibration.shape[0]),
    )
    stale = out_dir / "ann_int8.onnx"
    if stale.exists():
        stale.unlink()  # a previous bundle's part would contradict the manifest
    bundle = ModelBundle(
        path=out_dir,
        name=name or Path(nir_file).stem,
        sensor_height=template.sensor_height,
        sensor_width=template.sensor_width,
        channels=c,
        height=h,
        width=w,
        bin_us=template.bin_us,
        timesteps=template.timesteps,
        interval=template.interval,
        labels=labels,
        snn_file=snn_file,
        snn_output_shape=out_shape,
        ann_file=ann_file,
        ann_input_name=ann_names[0],
        ann_output_name=ann_names[1],
        recipe={
            "nir_import": {
                **report.to_dict(),
                "metadata": {k: _plain(v) for k, v in (graph.metadata or {}).items()},
                "template": str(template.path),
            }
        },
        metrics={},
    )
    bundle.validate()
    bundle.save_manifest()
    return ModelBundle.load(out_dir), report


def _plain(value: Any) -> Any:
    """A metadata value as JSON: bytes decoded, numpy scalars and arrays as Python values."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        return _plain(value.item()) if value.size == 1 else value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value if isinstance(value, str | int | float | bool) or value is None else str(value)
