"""A model's operating range: how active its input and spiking layers are on the data it was
trained for, and whether a recording (real or not) keeps it there.

The reference is measured once per bundle on held-out synthetic gestures, through the path the
nodes run (binning on event time, binary input spikes, the native Loihi-exact runtime), and stored
in the manifest under ``metrics.reference_activity``. ``hsnn-eval``'s report then puts the
recording's per-window figures beside it (:func:`compare_with_reference`): an unlabelled real
recording has no accuracy, but an input or a layer firing far outside the training range says
the model's predictions there mean little.

    python -m hsnn_perception.evaluation.operating_range models/default [--samples 110]

Why the input activity of a recording comes from layer 1's synaptic ops: the evaluation records
keep each window's op counts, not its input spikes; layer 1's synaptic ops are its input spikes
times their fan-out (fixed for a convolution, but at the border), so their ratio to the reference's
is the ratio of input spikes.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

REFERENCE_KEY = "reference_activity"
# hsnn-train's synthetic splits are samples 0..n_train-1 and 1_000_000 on: these are neither.
DEFAULT_FIRST_INDEX = 50_000
# A recording's median per-window figure inside the reference's 10th..90th percentiles is "in
# range"; otherwise the report says how far outside, as a factor of the reference median.
LOW_Q, HIGH_Q = 10, 90


def _dist(values: Sequence[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    return {
        "mean": float(a.mean()),
        "p10": float(np.percentile(a, LOW_Q)),
        "p50": float(np.percentile(a, 50)),
        "p90": float(np.percentile(a, HIGH_Q)),
    }


def measure_reference(
    bundle_dir: str | Path,
    samples: int = 110,
    seed: int = 0,
    first_index: int = DEFAULT_FIRST_INDEX,
) -> dict[str, Any]:
    """Per-window input and per-layer activity of ``bundle_dir`` on held-out synthetic gestures."""
    from hsnn_perception.core.events.binning import bin_events
    from hsnn_perception.core.events.synthetic import SyntheticGestures
    from hsnn_perception.core.hybrid.bundle import ModelBundle
    from hsnn_perception.core.hybrid.pipeline import input_spikes

    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    bundle = ModelBundle.load(bundle_dir)
    if bundle.sensor_height % bundle.height or bundle.sensor_width % bundle.width:
        raise ValueError(
            f"{bundle.path}: input {bundle.height}x{bundle.width} does not divide its sensor "
            f"{bundle.sensor_height}x{bundle.sensor_width}; no synthetic reference can be binned"
        )
    factor = (bundle.sensor_height // bundle.height, bundle.sensor_width // bundle.width)
    gen = SyntheticGestures(bundle.sensor_height, bundle.sensor_width, seed=seed)
    snn = None
    if bundle.snn_file is not None:
        from hsnn_perception.core.snn.runtime import load_snn

        snn = load_snn(bundle.snn_file, backend="native")
    inputs: list[float] = []
    events: list[int] = []
    layers: dict[str, dict[str, list[float]]] = {}
    try:
        for i in range(first_index, first_index + samples):
            ev, _ = gen.sample(i)
            frames = bin_events(
                ev,
                0,
                bundle.bin_us,
                bundle.timesteps,
                bundle.sensor_height,
                bundle.sensor_width,
                downsample=factor,
            )
            spikes = input_spikes(frames)
            inputs.append(float(spikes.mean()))
            events.append(int(ev.size))
            if snn is None:
                continue
            _, ops = snn.run_window(spikes)
            if ops is None:  # the native runtime always counts; a backend that does not, cannot
                raise ValueError(f"{bundle.path}: the SNN runtime gave no op counts")
            for d in ops.per_layer:
                acc = layers.setdefault(str(d["layer"]), {"rate": [], "syn": []})
                acc["rate"].append(d["spikes"] / d["neuron_updates"] if d["neuron_updates"] else 0)
                acc["syn"].append(float(d["synaptic_ops"]))
    finally:
        if snn is not None:
            snn.close()
    return {
        "source": (
            f"synthetic gestures (core/events/synthetic.py), seed {seed}, held-out samples "
            f"{first_index}..{first_index + samples - 1}, {bundle.sensor_width}x"
            f"{bundle.sensor_height} sensor, native SNN runtime"
        ),
        "windows": samples,
        "events_per_window": _dist(events),
        "input_spikes_per_position_step": _dist(inputs),
        "layers": [
            {
                "layer": name,
                "rate_per_neuron_step": _dist(v["rate"]),
                "synaptic_ops_per_window": _dist(v["syn"]),
            }
            for name, v in layers.items()
        ],
    }


def write_reference(bundle_dir: str | Path, reference: dict[str, Any]) -> Path:
    """Store ``reference`` in the bundle's manifest (``metrics.reference_activity``)."""
    path = Path(bundle_dir) / "manifest.json"
    doc = json.loads(path.read_text())
    doc.setdefault("metrics", {})[REFERENCE_KEY] = reference
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path


def _verdict(value: float | None, ref: dict[str, float]) -> str:
    if value is None:
        return "n/a"
    if ref["p10"] <= value <= ref["p90"]:
        return "in range"
    if ref["p50"] <= 0:
        return "above (the reference is silent)"
    factor = value / ref["p50"]
    if value < ref["p10"]:
        return f"below ({factor:.2g}x the reference median)"
    return f"above ({factor:.2g}x the reference median)"


def compare_with_reference(
    records: Sequence[Any], reference: dict[str, Any] | None
) -> dict[str, Any] | None:
    """The recording's median per-window activity beside the reference's range, per layer.

    ``records`` are evaluation records (``layers``: per-window op counts by layer, ``n_events``).
    None when the bundle has no reference (a manifest made before it existed).
    """
    if not reference:
        return None
    per_layer: dict[str, dict[str, list[float]]] = {}
    for r in records:
        for d in r.layers:
            acc = per_layer.setdefault(str(d["layer"]), {"rate": [], "syn": []})
            nu = int(d.get("neuron_updates", 0))
            acc["rate"].append(int(d.get("spikes", 0)) / nu if nu else 0.0)
            acc["syn"].append(float(d.get("synaptic_ops", 0)))
    rows = []
    ref_layers = {d["layer"]: d for d in reference.get("layers", [])}
    for name, ref in ref_layers.items():
        got = per_layer.get(name)
        rate = float(np.median(got["rate"])) if got else None
        rows.append(
            {
                "layer": name,
                "rate_median": rate,
                "reference": ref["rate_per_neuron_step"],
                "verdict": _verdict(rate, ref["rate_per_neuron_step"]),
            }
        )
    inp = reference["input_spikes_per_position_step"]
    input_row: dict[str, Any] = {"reference": inp, "estimate": None, "verdict": "n/a"}
    if ref_layers and per_layer:
        first = next(iter(ref_layers))
        ref_syn = ref_layers[first]["synaptic_ops_per_window"]["mean"]
        got_syn = per_layer.get(first, {}).get("syn")
        if got_syn and ref_syn > 0:
            est = inp["mean"] * float(np.median(got_syn)) / ref_syn
            input_row = {"reference": inp, "estimate": est, "verdict": _verdict(est, inp)}
    return {
        "source": reference.get("source", ""),
        "windows": len(records),
        "reference_windows": reference.get("windows"),
        "input": input_row,
        "layers": rows,
    }


def markdown_lines(cmp: dict[str, Any]) -> list[str]:
    """The report section for :func:`compare_with_reference`'s result."""

    def f(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.3g}"

    lines = [
        "## Operating range: this input against the model's reference data",
        "",
        f"Reference: {cmp['source']} ({cmp['reference_windows']} windows). Median per window "
        f"here ({cmp['windows']} windows) against the reference's {LOW_Q}th-{HIGH_Q}th "
        "percentiles; outside them the predictions are extrapolation.",
        "",
        "| what | here (median) | reference p10 | p50 | p90 | verdict |",
        "|---|---|---|---|---|---|",
    ]
    inp = cmp["input"]
    ref = inp["reference"]
    lines.append(
        f"| input spikes per position per step (estimated from layer 1's synaptic ops) | "
        f"{f(inp['estimate'])} | {f(ref['p10'])} | {f(ref['p50'])} | {f(ref['p90'])} | "
        f"{inp['verdict']} |"
    )
    for row in cmp["layers"]:
        ref = row["reference"]
        lines.append(
            f"| {row['layer']} spikes per neuron per step | {f(row['rate_median'])} | "
            f"{f(ref['p10'])} | {f(ref['p50'])} | {f(ref['p90'])} | {row['verdict']} |"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m hsnn_perception.evaluation.operating_range",
        description="Measure a bundle's reference activity on held-out synthetic gestures and "
        "store it in its manifest (hsnn-eval compares recordings with it).",
    )
    p.add_argument("bundle", type=Path)
    p.add_argument("--samples", type=int, default=110)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--first-index", type=int, default=DEFAULT_FIRST_INDEX)
    args = p.parse_args(argv)
    try:
        ref = measure_reference(args.bundle, args.samples, args.seed, args.first_index)
        path = write_reference(args.bundle, ref)
    except (ValueError, OSError) as exc:
        print(f"{p.prog}: error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {REFERENCE_KEY} ({ref['windows']} windows) into {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
