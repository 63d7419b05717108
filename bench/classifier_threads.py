"""CPU an idle-ish classifier burns: ONNX Runtime's default threads against the backend's, side by
side in one run.

    python bench/classifier_threads.py [--bundle models/default] [--rate 6] [--seconds 10]
                                       [--rounds 2]

A classifier stage infers a few windows per second and waits in between. Each row runs the
bundle's ANN on the CPU at ``--rate`` inferences/s for ``--seconds`` in a process of its own and
reports the CPU time that process used per second of wall time (100 % = one core), with the
median inference latency:

- ``ORT defaults``: an ``onnxruntime.InferenceSession`` with default ``SessionOptions`` (what the
  backend ran before issue 15: a thread pool as wide as the machine, spinning between runs);
- ``backend (1 thread)``: ``create_backend("onnxruntime", providers="cpu")`` as the node builds it
  (one intra-op thread, one inter-op thread, no spinning);
- ``backend (2 threads)``: the same with ``threads=2``.

Rows alternate over ``--rounds`` rounds (the machine's load drifts); the summary gives each row's
median over the rounds and its ratio to ``ORT defaults`` measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hsnn_perception.core.hybrid.bundle import BundleError, ModelBundle, default_bundle_path  # noqa: E402

ROWS = ("ORT defaults", "backend (1 thread)", "backend (2 threads)")


def _runner(row: str, ann: Path) -> tuple[object, str]:
    """``(infer, description)`` of a row: a callable taking one input batch."""
    if row == "ORT defaults":
        import onnxruntime as ort

        session = ort.InferenceSession(str(ann), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return (lambda x: session.run(None, {name: x})), "InferenceSession(default options)"
    from hsnn_perception.core.ann.backends import create_backend

    threads = 2 if "2 threads" in row else 1
    backend = create_backend("onnxruntime", ann, providers="cpu", threads=threads)
    return backend.infer, backend.name


def child(row: str, bundle_path: Path, rate: float, seconds: float) -> dict[str, object]:
    """One row in this process: warm up, then infer at ``rate`` for ``seconds``."""
    bundle = ModelBundle.load(bundle_path)
    assert bundle.ann_file is not None
    infer, name = _runner(row, bundle.ann_file)
    rng = np.random.default_rng(0)
    shape = tuple(1 if d is None else int(d) for d in bundle.ann_input_shape)
    inputs = [rng.poisson(1.0, shape).astype(np.float32) for _ in range(16)]
    for x in inputs:  # warm-up: first runs allocate
        infer(x)
    period = 1.0 / rate
    latencies = []
    cpu0, wall0 = os.times(), time.perf_counter()
    next_t = wall0
    k = 0
    while time.perf_counter() - wall0 < seconds:
        t = time.perf_counter()
        infer(inputs[k % len(inputs)])
        latencies.append(time.perf_counter() - t)
        k += 1
        next_t += period
        time.sleep(max(0.0, next_t - time.perf_counter()))
    cpu1, wall1 = os.times(), time.perf_counter()
    cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    return {
        "row": row,
        "name": name,
        "inferences": k,
        "cpu_percent": 100.0 * cpu / (wall1 - wall0),
        "median_ms": 1e3 * statistics.median(latencies),
        "threads": len(os.listdir("/proc/self/task")) if Path("/proc/self/task").is_dir() else -1,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=None, help="model bundle (models/default)")
    parser.add_argument("--rate", type=float, default=6.0, help="inferences per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per row")
    parser.add_argument("--rounds", type=int, default=2, help="times each row is measured")
    parser.add_argument("--child", choices=ROWS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    bundle_path = args.bundle or default_bundle_path()
    if args.child:
        print(json.dumps(child(args.child, bundle_path, args.rate, args.seconds)))
        return 0
    try:
        if ModelBundle.load(bundle_path).ann_file is None:
            print(f"error: bundle {bundle_path} has no ANN part", file=sys.stderr)
            return 2
    except BundleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"bundle {bundle_path}; {args.rate:g} inferences/s for {args.seconds:g} s per row, "
          f"{args.rounds} rounds; {os.cpu_count()} CPUs, load {load:.1f}")  # fmt: skip
    results: dict[str, list[dict[str, object]]] = {row: [] for row in ROWS}
    for r in range(args.rounds):
        for row in ROWS:
            cmd = [sys.executable, __file__, "--child", row, "--bundle", str(bundle_path),
                   "--rate", str(args.rate), "--seconds", str(args.seconds)]  # fmt: skip
            out = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if out.returncode != 0:
                print(f"error: row {row!r} failed:\n{out.stderr}", file=sys.stderr)
                return 1
            got = json.loads(out.stdout.strip().splitlines()[-1])
            results[row].append(got)
            print(f"  round {r + 1} {row:<20} CPU {got['cpu_percent']:5.1f} % of a core, "
                  f"median {got['median_ms']:.2f} ms, {got['threads']} threads "
                  f"({got['name']})")  # fmt: skip
    base = statistics.median(float(g["cpu_percent"]) for g in results[ROWS[0]])
    print(f"\n{'row':<22}{'CPU % of a core':>16}{'ratio':>8}{'median ms':>11}")
    for row in ROWS:
        cpu = statistics.median(float(g["cpu_percent"]) for g in results[row])
        ms = statistics.median(float(g["median_ms"]) for g in results[row])
        print(f"{row:<22}{cpu:>16.1f}{cpu / base if base else float('nan'):>8.2f}{ms:>11.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
