"""``hsnn-compare``: train the model family (k = 0..6 spiking layers, intervals I) and write the
paper's comparison: accuracy, and per-inference latency and energy of each part.

Per model and interval (one inference = one window of T bins):

* accuracy on the test set, measured through the bundle (SNN runtime + accumulator + onnxruntime);
* SNN part: synaptic ops, neuron updates and spikes counted by the project's runtime
  (``load_snn(..., backend="native")``), averaged over the test windows; its wall time on this CPU;
  Loihi latency and energy modelled by :mod:`hsnn_perception.core.energy.models`
  (``loihi_latency`` / ``loihi_energy``, Davies et al. 2018 per-operation figures);
* ANN part: MACs (``onnx_macs.count_macs``), onnxruntime latency on this CPU (median of batch-1
  runs), and energy modelled by ``ann_energy`` for the ``--ann-device`` profile (default Jetson
  Orin Nano), whose latency is modelled from MACs when the device is not this machine.

Outputs in ``--out``: ``results.csv``, ``results.md``, ``results.json``, ``accuracy.png``,
``energy.png``, ``latency.png`` and one bundle per model under ``bundles/``.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from hsnn_perception.training.cli import (
    add_data_args,
    add_train_args,
    arch_from,
    input_spec_from,
    load_data,
    train_config_from,
)

COLUMNS = (
    "model",
    "k",
    "interval",
    "accuracy",
    "accuracy_torch",
    "snn_synaptic_ops",
    "snn_neuron_updates",
    "snn_spikes",
    "snn_cpu_latency_ms",
    "snn_loihi_latency_ms",
    "snn_loihi_energy_uj",
    "ann_macs",
    "ann_cpu_latency_ms",
    "ann_energy_uj",
    "ann_energy_device",
    "total_energy_uj",
    "cpu_realtime_factor",
    "train_seconds",
)


def compare_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hsnn-compare",
        description="Train the SkA(6-k) family and compare accuracy, latency and energy.",
    )
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--ks", default="0,1,2,3,4,5,6", help="spiking-layer counts to train")
    p.add_argument("--intervals", default="2,4,8", help="accumulator intervals I")
    p.add_argument("--ann-device", default="jetson-orin-nano", help="energy profile of the ANN")
    p.add_argument("--latency-runs", type=int, default=30, help="timed runs per latency figure")
    add_data_args(p)
    add_train_args(p)
    return p


def _ints(text: str, what: str) -> list[int]:
    try:
        values = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError as exc:
        raise ValueError(f"{what} must be comma-separated integers, got {text!r}") from exc
    if not values:
        raise ValueError(f"{what} is empty")
    return values


def _median_ms(fn: Any, runs: int) -> float:
    fn()  # warm-up (allocations, lazy initialisation)
    times = []
    for _ in range(max(1, runs)):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


def measure_bundle(
    bundle: Any, test: Any, ann_device: str, latency_runs: int, snn_backend: str = "native"
) -> dict[str, Any]:
    """Accuracy, op counts, latencies and modelled energies of one bundle on ``test``."""
    from hsnn_perception.core.energy.models import ann_energy, loihi_energy, loihi_latency
    from hsnn_perception.training.export import onnx_session, predict_bundle

    run = predict_bundle(bundle, test.spikes, snn_backend=snn_backend)
    row: dict[str, Any] = {"accuracy": float(np.mean(run.predictions == test.labels))}
    sample = test.spikes[0]
    e_snn = e_ann = 0.0
    if bundle.snn_file is not None and run.snn_counts is not None:
        from hsnn_perception.core.snn.runtime import load_snn

        per = run.snn_counts.sum(axis=(1, 2)).mean(axis=0)  # (3,) mean per window
        syn, neu, spk = (int(round(v)) for v in per)
        snn = load_snn(bundle.snn_file, backend=snn_backend)
        row["snn_cpu_latency_ms"] = _median_ms(lambda: snn.run_window(sample), latency_runs // 3)
        lat = loihi_latency(bundle.timesteps, syn, neu)
        fig = loihi_energy(syn, neu, spk, lat)
        e_snn = fig.energy_j
        row.update(
            snn_synaptic_ops=syn,
            snn_neuron_updates=neu,
            snn_spikes=spk,
            snn_loihi_latency_ms=lat * 1e3,
            snn_loihi_energy_uj=fig.energy_j * 1e6,
        )
    if bundle.ann_file is not None:
        from hsnn_perception.core.ann.macs import count_macs

        macs = count_macs(bundle.ann_file, bundle.ann_input_shape)
        sess = onnx_session(bundle.ann_file)
        x = run.features[:1]
        row["ann_cpu_latency_ms"] = _median_ms(
            lambda: sess.run(None, {bundle.ann_input_name: x}), latency_runs
        )
        fig = ann_energy(macs, None, device=ann_device)
        e_ann = fig.energy_j
        row.update(
            ann_macs=int(macs),
            ann_energy_uj=fig.energy_j * 1e6 if fig.available else None,
            ann_energy_device=fig.device if fig.available else f"{ann_device} (unavailable)",
        )
    total = e_snn + e_ann
    row["total_energy_uj"] = total * 1e6 if not math.isnan(total) else None
    # Sensor time per window over the CPU time both parts take for it: > 1 keeps up in real time.
    cpu_ms = (row.get("snn_cpu_latency_ms") or 0.0) + (row.get("ann_cpu_latency_ms") or 0.0)
    row["cpu_realtime_factor"] = bundle.window_us / 1e3 / cpu_ms if cpu_ms > 0 else None
    return row


def write_table(rows: list[dict[str, Any]], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with (out / "results.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({c: r.get(c, "") for c in COLUMNS})
    (out / "results.json").write_text(json.dumps(rows, indent=2) + "\n")

    def fmt(v: Any) -> str:
        if v is None or v == "":
            return "-"
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    head = (
        "| model | I | accuracy | SNN syn. ops | SNN spikes | SNN CPU ms | SNN Loihi uJ "
        "| ANN MACs | ANN CPU ms | ANN uJ | total uJ | CPU RT factor |"
    )
    lines = [
        "# Hybrid SNN-ANN family: accuracy, latency and energy per inference",
        "",
        "Accuracy: test windows through the bundle (SNN runtime + accumulator + onnxruntime). "
        "SNN energy: modelled for Loihi from the runtime's op counts (Davies et al. 2018). "
        "ANN energy: modelled (device power x latency from MACs), see `ann_energy_device` in "
        "results.csv. CPU latencies were measured on the machine that ran this comparison; "
        "CPU RT factor = window length / (SNN + ANN CPU time per window), > 1 is real time.",
        "",
        head,
        "|" + "---|" * 12,
    ]
    for r in rows:
        cells = [
            r["model"],
            r["interval"],
            r.get("accuracy"),
            r.get("snn_synaptic_ops"),
            r.get("snn_spikes"),
            r.get("snn_cpu_latency_ms"),
            r.get("snn_loihi_energy_uj"),
            r.get("ann_macs"),
            r.get("ann_cpu_latency_ms"),
            r.get("ann_energy_uj"),
            r.get("total_energy_uj"),
            r.get("cpu_realtime_factor"),
        ]
        lines.append("| " + " | ".join(fmt(c) for c in cells) + " |")
    (out / "results.md").write_text("\n".join(lines) + "\n")


def write_plots(rows: list[dict[str, Any]], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    intervals = sorted({r["interval"] for r in rows})
    plots = (
        ("accuracy.png", "accuracy", "test accuracy"),
        ("energy.png", "total_energy_uj", "energy per inference (uJ, modelled)"),
        ("latency.png", None, "CPU latency per inference (ms)"),
    )
    for fname, key, ylabel in plots:
        fig, ax = plt.subplots(figsize=(6, 4))
        for interval in intervals:
            sel = sorted((r for r in rows if r["interval"] == interval), key=lambda r: r["k"])
            ks = [r["k"] for r in sel]
            if key is None:
                vals = [
                    (r.get("snn_cpu_latency_ms") or 0.0) + (r.get("ann_cpu_latency_ms") or 0.0)
                    for r in sel
                ]
            else:
                vals = [r.get(key) if r.get(key) is not None else np.nan for r in sel]
            ax.plot(ks, vals, marker="o", label=f"I = {interval}")
        ax.set_xlabel("spiking layers k (SkA(6-k); 0 = ANN, 6 = SNN)")
        ax.set_ylabel(ylabel)
        if key == "total_energy_uj":
            ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
        ax.legend()
        fig.tight_layout()
        path = out / fname
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths


def _record_metrics(path: Path, row: dict[str, Any], n_test: int) -> None:
    """Put the accuracy measured through the bundle into its manifest, as hsnn-train does."""
    doc = json.loads((path / "manifest.json").read_text())
    doc["metrics"] = {
        **doc.get("metrics", {}),
        "test_accuracy": row["accuracy"],
        "measured_with": "snn_runtime backend=native + onnxruntime CPU",
        "test_samples": n_test,
    }
    (path / "manifest.json").write_text(json.dumps(doc, indent=2) + "\n")


def run_compare(args: argparse.Namespace, log: Any = print) -> list[dict[str, Any]]:
    from hsnn_perception.training.export import write_bundle
    from hsnn_perception.training.train import train_model

    ks = _ints(args.ks, "--ks")
    intervals = _ints(args.intervals, "--intervals")
    if ks[0] < 0 or ks[-1] > 6:
        raise ValueError(f"--ks must be within 0..6, got {args.ks}")
    spec_in = input_spec_from(args)
    train, test, data_desc = load_data(args, spec_in)
    config = train_config_from(args)
    combos = [(k, i) for k in ks for i in intervals]
    # S6 and A6 do not depend on I in their SNN part, but the accumulator (and so the ANN input of
    # A6, and the frames summed for S6) does: every pair is trained.
    rows: list[dict[str, Any]] = []
    s6: Any = None  # S6 trained once: with no ANN its class scores do not depend on I
    if not args.no_progress:
        from tqdm import tqdm

        it: Any = tqdm(combos, desc="models", unit="model")
    else:
        it = combos
    for k, interval in it:
        arch = arch_from(args, k, interval, len(train.class_names))
        if k == 6 and s6 is not None:
            res = s6
            res.model.spec = arch  # the same weights; only the bundle's interval differs
        else:
            res = train_model(arch, train, test, config, progress=False, log=None)
            s6 = res if k == 6 else s6
        bdir = Path(args.out) / "bundles" / f"{arch.name}-I{interval}"
        recipe = {
            "command": "hsnn-compare " + " ".join(getattr(args, "argv", [])),
            "arch": arch.to_dict(),
            "train": config.to_dict(),
            "data": {**data_desc, "input": spec_in.to_dict()},
        }
        bundle = write_bundle(
            res.model,
            bdir,
            spec_in,
            train.class_names,
            f"{data_desc['dataset']}-{arch.name}-I{interval}",
            recipe,
            {"test_accuracy_torch": res.test_accuracy},
        )
        row = {
            "model": arch.name,
            "k": k,
            "interval": interval,
            "accuracy_torch": res.test_accuracy,
            "train_seconds": round(res.train_seconds, 1),
        }
        row.update(measure_bundle(bundle, test, args.ann_device, args.latency_runs))
        _record_metrics(bundle.path, row, len(test))
        rows.append(row)
        log(f"{arch.name} I={interval}: accuracy {row['accuracy']:.3f}")
        write_table(rows, Path(args.out))  # keep partial results if a long run is stopped
    write_plots(rows, Path(args.out))
    return rows
