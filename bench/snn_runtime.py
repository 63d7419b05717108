"""Speed of the native Loihi-exact SNN runtime against Lava's CPU fixed_pt simulation, measured
side by side in one run, on the bundle's SNN and on paper-sized SkA(6-k) spiking parts.

    python bench/snn_runtime.py [--bundle PATH] [--k 1 2 3 4] [--lava-steps 4] [--write-docs]
                                [--engines numba numpy] [--repeats 7] [--threads 1]

Prints a markdown table: steps per second of the native runtime for one sample (``run_window``
over a whole T-step window) with each neuron engine (``numba``: compiled whole-window LIF kernel;
``numpy``: the earlier per-step vectorised numpy LIF), the real-time factor (simulated time / wall
time at 10 ms per step, > 1 is faster than real time), the speed-up of the first engine over the
others and over Lava, batched native throughput, and peak memory. The engines' repeats are
interleaved (A B A B ...) and the median is reported, so that both see the same machine load.
Every engine's output is checked bit-exact against the others and against Lava on the steps Lava
ran.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hsnn_perception.core.snn.lava_compat import import_slayer  # noqa: E402
from hsnn_perception.core.snn.runtime import load_snn, numba_available  # noqa: E402

BIN_S = 0.010  # 10 ms per timestep (the paper's DvsGesture bins)
# SkA(6-k) spiking parts: the first k of these strided 3x3 convs (stride 2 replaces pooling,
# which netx cannot deploy), on 2x128x128 DVS input; channels 16-32-32-64.
PAPER_CHANNELS = (16, 32, 32, 64)
NEURON = {"threshold": 1.0, "current_decay": 0.25, "voltage_decay": 0.03}
DOC = ROOT / "docs" / "snn_runtime.md"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def build_paper_net(k: int, path: Path, seed: int = 0) -> tuple[int, int, int]:
    """Export the first k convs of the SkA(6-k) stack with random weights; return input shape."""
    import h5py
    import torch

    slayer = import_slayer()
    torch.manual_seed(seed)
    blocks, c = [], 2
    for out in PAPER_CHANNELS[:k]:
        blocks.append(
            slayer.block.cuba.Conv(NEURON, c, out, 3, stride=2, padding=1, weight_scale=2)
        )
        c = out
    with torch.no_grad():  # one forward pass fixes the blocks' shapes for export
        y = torch.zeros(1, 2, 128, 128, 2)
        for block in blocks:
            y = block(y)
    with h5py.File(path, "w") as h:
        layer = h.create_group("layer")
        for i, block in enumerate(blocks):
            block.export_hdf5(layer.create_group(f"{i}"))
    return (2, 128, 128)


def build_small_net(path: Path) -> tuple[int, int, int]:
    """Stand-in for the bundle when none exists: 2x32x32 -> conv 8 (s2) -> dense 11."""
    import h5py
    import torch

    slayer = import_slayer()
    torch.manual_seed(1)
    blocks = [
        slayer.block.cuba.Conv(NEURON, 2, 8, 3, stride=2, padding=1, weight_scale=2),
        slayer.block.cuba.Flatten(),
        slayer.block.cuba.Dense(NEURON, 8 * 16 * 16, 11, weight_scale=2),
    ]
    with torch.no_grad():
        y = torch.zeros(1, 2, 32, 32, 2)
        for block in blocks:
            y = block(y)
    with h5py.File(path, "w") as h:
        layer = h.create_group("layer")
        for i, block in enumerate(blocks):
            block.export_hdf5(layer.create_group(f"{i}"))
    return (2, 32, 32)


def timed_native(
    path: Path, shape: tuple[int, ...], x: np.ndarray, batch: int, engines: list[str], repeats: int
) -> dict[str, dict]:
    """Each engine: median single-sample and batched steps/s over ``repeats`` runs, interleaved
    across engines so that load changes on the shared machine hit all of them alike."""
    snns = {e: load_snn(path, input_shape=shape, engine=e) for e in engines}
    res: dict[str, dict] = {}
    for e, snn in snns.items():
        snn.run_window(x)  # warm-up (lazy imports, numba compile or cache load, allocator)
        tracemalloc.start()
        out, _ = snn.run_window(x)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        res[e] = {"name": snn.backend_name, "peak_mib": peak / 2**20, "out": out}
        res[e].update(single=[], cpu=[], batched=[])
    xb = np.broadcast_to(x, (batch, *x.shape))
    for _ in range(repeats):
        for e, snn in snns.items():
            t0, c0 = time.perf_counter(), time.process_time()
            snn.run_window(x)
            res[e]["single"].append(time.perf_counter() - t0)
            res[e]["cpu"].append(time.process_time() - c0)
        for e, snn in snns.items():
            t0 = time.perf_counter()
            snn.run(xb)
            res[e]["batched"].append(time.perf_counter() - t0)
    for r in res.values():
        r["steps_s"] = x.shape[0] / float(np.median(r["single"]))
        r["best_steps_s"] = x.shape[0] / min(r["single"])
        r["cpu_steps_s"] = x.shape[0] / float(np.median(r["cpu"]))
        r["batch_steps_s"] = batch * x.shape[0] / float(np.median(r["batched"]))
    return res


def timed_lava(path: Path, shape: tuple[int, ...], x: np.ndarray) -> dict:
    with load_snn(path, backend="lava", input_shape=shape) as snn:
        t0 = time.perf_counter()
        snn.run_window(x)  # first window: build + compile + run
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        out, _ = snn.run_window(x)  # steady state: reset + run
        steady = time.perf_counter() - t0
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"steps_s": x.shape[0] / steady, "first_s": first, "child_mib": children, "out": out}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--bundle", type=Path, default=None, help="model bundle (default models/default)"
    )
    ap.add_argument("--k", type=int, nargs="*", default=[1, 2, 3, 4], help="SkA(6-k) sizes")
    ap.add_argument("--steps", type=int, default=16, help="native steps per window (T)")
    ap.add_argument("--lava-steps", type=int, default=4, help="Lava steps per measured window")
    ap.add_argument("--batch", type=int, default=8, help="samples for the batched native run")
    ap.add_argument("--rate", type=float, default=0.05, help="input spike probability per pixel")
    ap.add_argument("--no-lava", action="store_true", help="native only")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument(
        "--engines",
        nargs="+",
        default=None,
        help="native neuron engines, first one is the headline (default: numba numpy, "
        "or numpy alone without numba)",
    )
    ap.add_argument("--repeats", type=int, default=7, help="timed native runs per engine")
    ap.add_argument("--write-docs", action="store_true", help=f"put the table into {DOC}")
    args = ap.parse_args()

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    engines = args.engines or (["numba", "numpy"] if numba_available() else ["numpy"])
    load0 = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="snn_bench_"))
    cases: list[tuple[str, Path, tuple[int, ...]]] = []
    bundle_path = args.bundle or ROOT / "models" / "default"
    if (bundle_path / "manifest.json").is_file():
        from hsnn_perception.core.hybrid.bundle import ModelBundle

        bundle = ModelBundle.load(bundle_path)
        if bundle.snn_file is not None:
            shape = (bundle.channels, bundle.height, bundle.width)
            cases.append((f"bundle {bundle.name}", bundle.snn_file, shape))
    if not cases:
        cases.append(("small generated (no bundle)", tmp / "small.net", None))  # type: ignore[arg-type]
        cases[-1] = (cases[-1][0], cases[-1][1], build_small_net(cases[-1][1]))
    for k in args.k:
        path = tmp / f"s{k}.net"
        cases.append((f"S{k}A{6 - k} 2x128x128", path, build_paper_net(k, path)))

    rng = np.random.default_rng(0)
    rows = []
    for name, path, shape in cases:
        x = (rng.random((args.steps, *shape)) < args.rate).astype(np.uint8)
        res = timed_native(path, shape, x, args.batch, engines, args.repeats)
        nat = res[engines[0]]
        row = {"name": name, "native": nat, "others": [res[e] for e in engines[1:]]}
        exact = all(np.array_equal(r["out"], nat["out"]) for r in res.values())
        if not args.no_lava:
            lava = timed_lava(path, shape, x[: args.lava_steps])
            row["lava"] = lava
            exact = exact and bool(np.array_equal(lava["out"], nat["out"][: args.lava_steps]))
        row["exact"] = exact
        rows.append(row)
        print(f"done: {name}", file=sys.stderr, flush=True)

    others = "".join(
        f" {e} steps/s (1 sample) | {e} steps per CPU-s | {engines[0]} / {e} (wall, CPU) |"
        for e in engines[1:]
    )
    header = (
        f"| network | {engines[0]} steps/s (1 sample, median) | best | RTF | steps per CPU-s |"
        f"{others} "
        f"{engines[0]} steps/s (batch {args.batch}) | Lava steps/s | RTF Lava | "
        f"{engines[0]} / Lava | Lava compile+first (s) | peak MiB (tracemalloc) | bit-exact |"
    )
    lines = [header, "|" + "---|" * (12 + 3 * (len(engines) - 1))]
    for row in rows:
        nat = row["native"]
        lava = row.get("lava")
        cols = "".join(
            f"| {o['steps_s']:.0f} | {o['cpu_steps_s']:.0f} "
            f"| {nat['steps_s'] / o['steps_s']:.1f}x, {nat['cpu_steps_s'] / o['cpu_steps_s']:.1f}x "
            for o in row["others"]
        )
        lines.append(
            f"| {row['name']} | {nat['steps_s']:.0f} | {nat['best_steps_s']:.0f} "
            f"| {nat['steps_s'] * BIN_S:.1f} | {nat['cpu_steps_s']:.0f} {cols}"
            f"| {nat['batch_steps_s']:.0f} "
            + (
                f"| {lava['steps_s']:.2f} | {lava['steps_s'] * BIN_S:.3f} "
                f"| {nat['steps_s'] / lava['steps_s']:.0f}x | {lava['first_s']:.1f} "
                if lava
                else "| - | - | - | - "
            )
            + f"| {nat['peak_mib']:.1f} | {row.get('exact', '-')} |"
        )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child = max((r["lava"]["child_mib"] for r in rows if "lava" in r), default=0.0)
    try:
        import torch

        threads = f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    except ImportError:
        threads = "no torch"
    info = (
        f"Measured {time.strftime('%Y-%m-%d')} on {platform.processor() or platform.machine()}, "
        f"{_cpus()} CPUs, {threads}; native engines: {', '.join(engines)} (median of "
        f"{args.repeats} interleaved runs; best = fastest run; steps per CPU-s = steps / median "
        f"process CPU time, which load inflates less than wall time); T={args.steps} "
        f"native steps, {args.lava_steps} Lava steps (after one compile window), input spike "
        f"rate {args.rate}. Peak RSS: this process {rss:.0f} MiB, largest Lava worker "
        f"{child:.0f} MiB. RTF = simulated time / wall time at {BIN_S * 1000:.0f} ms per step. "
        f"1-min load average at the start: {load0:.1f}, at the end: {os.getloadavg()[0]:.1f} "
        "(shared machine)."
    )
    table = "\n".join(lines)
    print(table)
    print()
    print(info)
    if args.write_docs:
        text = DOC.read_text()
        block = f"{BEGIN}\n{table}\n\n{info}\n{END}"
        DOC.write_text(re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), block, text, flags=re.S))


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


if __name__ == "__main__":
    main()
