"""The shipped model's NIR export run by third-party simulators (snnTorch, Norse), compared with
the native Loihi-exact runtime layer by layer and through the accumulator + ONNX classifier.

    python bench/nir_third_party.py [--bundle models/default] [--windows 220] [--write-docs]

The graph is written by ``hsnn-nir export`` (hsnn_perception.core.snn.nir.export.export_snn) and
read back with ``nir.read``; each library builds its own network from it with its own NIR
importer (``snntorch.import_nir.import_from_nir``, ``norse.torch.from_nir``) and runs it step
by step in float32. Loihi delivers a synapse's current one step after the spike and NIR
simulators in the same step, so layer ``k`` (``k`` synaptic layers deep) of the library is
compared with the native layer ``k`` steps later. The functions are also what
test/core/snn/test_nir_third_party.py runs.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

LIBRARIES = ("snntorch", "norse")
NEURONS = ("CubaLIF", "LIF", "IF")
DOC_BEGIN = "<!-- nir-bench:begin -->"
DOC_END = "<!-- nir-bench:end -->"


def load(library: str, graph: Any, dt: float) -> Any:
    """The library's own torch module for ``graph``, built by its own NIR importer."""
    if library == "snntorch":
        from snntorch.import_nir import import_from_nir

        with contextlib.redirect_stdout(io.StringIO()):  # it prints a line per node
            return import_from_nir(graph)
    if library == "norse":
        import norse.torch

        return norse.torch.from_nir(graph, dt=dt)
    raise ValueError(f"unknown library {library!r} (one of {', '.join(LIBRARIES)})")


def neuron_nodes(graph: Any) -> list[str]:
    """Names of the graph's neuron nodes, input to output."""
    from hsnn_perception.core.snn.nir.parse import node_chain

    _, order = node_chain(graph)
    return [name for name in order if type(graph.nodes[name]).__name__ in NEURONS]


def run_layers(library: str, graph: Any, spikes: np.ndarray, dt: float) -> list[np.ndarray]:
    """Each neuron node's spikes as ``library`` computes them: uint8 (B, T, neurons) for
    binary ``spikes`` (B, T, C, H, W), every sample from the reset state."""
    import torch

    module = load(library, graph, dt)
    names = neuron_nodes(graph)
    submodules = dict(module.named_modules())
    # Both importers turn NIR's Flatten (start_dim 0: NIR shapes have no batch axis) into
    # torch.nn.Flatten(0), which also flattens the batch: feed such graphs one sample at a time.
    has_flatten = any(type(n).__name__ == "Flatten" for n in graph.nodes.values())
    batch = 1 if has_flatten else len(spikes)
    x = torch.from_numpy(np.ascontiguousarray(spikes, dtype=np.float32))
    b, t = x.shape[:2]
    outs: dict[str, list[np.ndarray]] = {name: [] for name in names}
    record: dict[str, list[np.ndarray]] = {name: [] for name in names}
    current = {"batch": batch}  # samples in the running chunk (snnTorch may drop the axis)

    def hook(name: str) -> Any:
        def keep(_module: Any, _args: Any, output: Any) -> None:
            z = output[0] if isinstance(output, tuple) else output
            record[name].append(z.detach().reshape(current["batch"], -1).numpy() > 0)

        return keep

    handles = [submodules[name].register_forward_hook(hook(name)) for name in names]
    try:
        for start in range(0, b, batch):
            chunk = x[start : start + batch]
            current["batch"] = len(chunk)
            for name in names:
                record[name].clear()
            if library == "snntorch":
                import snntorch.utils

                snntorch.utils.reset(module)
            state = None
            with torch.no_grad():
                for step in range(t):
                    result = module(chunk[:, step], state)
                    state = result[1] if isinstance(result, tuple) else None
            for name in names:
                outs[name].append(np.stack(record[name], axis=1).astype(np.uint8))
    finally:
        for handle in handles:
            handle.remove()
    return [np.concatenate(outs[name]) for name in names]


def latencies(graph: Any) -> list[int]:
    """Loihi's delay of each neuron node behind a NIR simulator: the synapses up to it."""
    from hsnn_perception.core.snn.nir.parse import node_chain

    _, order = node_chain(graph)
    depth, out = 0, []
    for name in order:
        kind = type(graph.nodes[name]).__name__
        if kind in ("Conv2d", "Affine", "Linear"):
            depth += 1
        elif kind in NEURONS:
            out.append(depth)
    return out


def compare(native: np.ndarray, other: np.ndarray, lag: int) -> dict[str, Any]:
    """Native layer (B, T, n) against the library's, ``lag`` steps earlier."""
    t = native.shape[1]
    a = native[:, lag:].astype(np.int64)
    b = other[:, : t - lag].astype(np.int64)
    ra, rb = a.sum(axis=1).ravel(), b.sum(axis=1).ravel()
    corr = float(np.corrcoef(ra, rb)[0, 1]) if ra.std() > 0 and rb.std() > 0 else float("nan")
    return {
        "equal": float((a == b).mean()),
        "native_spikes": int(a.sum()),
        "spikes": int(b.sum()),
        "rate_correlation": corr,
    }


def to_loihi_timing(spikes: np.ndarray, lag: int) -> np.ndarray:
    """A NIR simulator's output (B, T, n) delayed by ``lag`` steps, as Loihi would emit it."""
    out = np.zeros_like(spikes)
    out[:, lag:] = spikes[:, : spikes.shape[1] - lag]
    return out


def classify(bundle: Any, output: np.ndarray) -> np.ndarray:
    """Classes from SNN output spikes (B, T, neurons) through the bundle's accumulator and
    classifier (what the nodes do after the SNN)."""
    from hsnn_perception.core.hybrid.accumulator import accumulate, frames_to_channels
    from hsnn_perception.training.export import onnx_session

    n = output.shape[0]
    out = output.reshape(n, bundle.timesteps, *bundle.feature_shape)
    feats = frames_to_channels(accumulate(out, bundle.interval, time_axis=1))
    feats = np.ascontiguousarray(feats, dtype=np.float32)
    if bundle.ann_file is None:
        return feats.reshape(n, bundle.frames, -1).sum(axis=1).argmax(axis=1)
    sess = onnx_session(bundle.ann_file)
    logits = sess.run([bundle.ann_output_name], {bundle.ann_input_name: feats})[0]
    return np.asarray(logits).argmax(axis=1)


def measure(bundle_dir: Path, windows: int, dt: float, seed: int = 0) -> dict[str, Any]:
    import nir

    from hsnn_perception.core.hybrid.bundle import ModelBundle
    from hsnn_perception.core.snn.nir.export import export_snn
    from hsnn_perception.core.snn.nir.fixed_point import layer_spikes
    from hsnn_perception.training.data import InputSpec, synthetic_spikeset
    from hsnn_perception.training.export import predict_bundle

    bundle = ModelBundle.load(bundle_dir)
    spec = InputSpec(
        bundle.sensor_height,
        bundle.sensor_width,
        bundle.height,
        bundle.width,
        bundle.bin_us,
        bundle.timesteps,
    )
    # The shipped recipe's test range (data.test_indices starts at 1,000,000).
    data = synthetic_spikeset(windows, spec, seed=seed, first_index=1_000_000)
    out = ROOT / "build" / "nir-bench"
    out.mkdir(parents=True, exist_ok=True)
    export_snn(bundle.snn_file, out / "model.nir", dt)
    graph = nir.read(str(out / "model.nir"))
    native = layer_spikes(bundle.snn_file, data.spikes)
    native_classes = predict_bundle(bundle, data.spikes).predictions
    lags = latencies(graph)
    result: dict[str, Any] = {
        "bundle": bundle.name,
        "windows": windows,
        "dt": dt,
        "native_accuracy": float((native_classes == data.labels).mean()),
        "libraries": {},
    }
    for library in LIBRARIES:
        start = time.perf_counter()
        layers = run_layers(library, graph, data.spikes, dt)
        seconds = time.perf_counter() - start
        classes = classify(bundle, to_loihi_timing(layers[-1], lags[-1]))
        result["libraries"][library] = {
            "version": _version(library),
            "layers": [
                {"layer": name, **compare(a, b, lag)}
                for name, a, b, lag in zip(neuron_nodes(graph), native, layers, lags, strict=True)
            ],
            "class_agreement": float((classes == native_classes).mean()),
            "accuracy": float((classes == data.labels).mean()),
            "seconds": round(seconds, 2),
        }
    return result


def _version(library: str) -> str:
    from importlib.metadata import version

    return version(library)


def markdown(result: dict[str, Any]) -> str:
    rows = [
        "| library | layer | (neuron, step) pairs equal | spikes (native / library) | "
        "rate correlation | class agreement | accuracy (native "
        f"{result['native_accuracy']:.3f}) |",
        "|---|---|---|---|---|---|---|",
    ]
    for library, entry in result["libraries"].items():
        for i, layer in enumerate(entry["layers"]):
            last = i == len(entry["layers"]) - 1
            rows.append(
                f"| {library} {entry['version']} | {layer['layer']} | {layer['equal']:.5f} | "
                f"{layer['native_spikes']} / {layer['spikes']} | "
                f"{layer['rate_correlation']:.4f} | "
                + (f"{entry['class_agreement']:.4f} | {entry['accuracy']:.3f} |" if last else "| |")
            )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    from hsnn_perception.core.snn.nir.layers import DEFAULT_DT

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, default=ROOT / "models" / "default")
    parser.add_argument("--windows", type=int, default=220)
    parser.add_argument("--dt", type=float, default=DEFAULT_DT)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write-docs", action="store_true", help="update docs/nir.md")
    args = parser.parse_args(argv)
    result = measure(args.bundle, args.windows, args.dt, args.seed)
    table = markdown(result)
    print(json.dumps(result, indent=1))
    print(table)
    if args.write_docs:
        doc = ROOT / "docs" / "nir.md"
        text = doc.read_text()
        head, rest = text.split(DOC_BEGIN, 1)
        _, tail = rest.split(DOC_END, 1)
        note = (
            f"\n\n`python bench/nir_third_party.py --windows {args.windows}`: "
            f"{args.windows} synthetic gesture windows (the shipped recipe's test range, seed "
            f"{args.seed}), bundle {result['bundle']}, dt {args.dt:g} s per step."
        )
        doc.write_text(f"{head}{DOC_BEGIN}\n{table}{note}\n{DOC_END}{tail}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
