"""The native SNN runtime at DVS input activities: event-driven against dense and against the
op-count limit, with plain PyTorch and lava-dl slayer as peers, all measured side by side in one
run on paper-sized SkA(6-k) spiking parts (2x128x128 input, k strided 3x3 convs).

    python bench/snn_sparse.py [--k 1 2 3] [--rates 0.001 0.01 0.05 0.2] [--repeats 7]
                               [--steps 16] [--calibrate] [--markdown docs/snn_runtime.md]

For each network and input activity (fraction of input pixels spiking per 10 ms step) it prints
the time per T-step window (median of interleaved repeats, so every runner sees the same load)
of:

* ``events``: the native runtime's event-driven kernels for every step (``synapses="events"``);
* ``auto``: the default (``load_snn(path)``): event-driven, steps busier than ``DENSE_ABOVE``
  take numpy's dense conv;
* ``dense numpy`` / ``dense torch``: the whole-window conv (numpy im2col or torch) + the numba
  LIF kernel, the runtime's earlier path (torch was its default);
* ``PyTorch``: plain PyTorch, float conv2d over the window's frames and a float CUBA LIF loop
  (not Loihi's arithmetic: the peer a PyTorch user would write);
* ``slayer``: lava-dl slayer's CUBA blocks' forward pass, the networks' own training model;
* ``limit``: the op-count limit, (synaptic ops + neuron updates) / 1e9 s, one simple operation
  per nanosecond on one core, with the counts the runtime reports (OpCounts).

Ratios are ``time / limit`` (CPU time of the thread, which the other users of a shared machine
inflate less than wall time; wall-time medians are printed beside them) and RTF = simulated time
(T x 10 ms) / wall time. ``exact``: events, auto and both dense paths give the same spikes and
OpCounts. torch runs with one thread (the limit is one core's). ``--calibrate`` adds the
per-step crossover of one 2x128x128 -> 16-channel conv: event-driven vs numpy/torch dense sums,
which is where ``DENSE_ABOVE`` comes from.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hsnn_perception.core.snn.lava_compat import import_slayer  # noqa: E402
from hsnn_perception.core.snn.netx import read_netx  # noqa: E402
from hsnn_perception.core.snn.runtime import DENSE_ABOVE, SnnRuntime  # noqa: E402

BIN_S = 0.010
CHANNELS = (16, 32, 32, 64)
NEURON = {"threshold": 1.0, "current_decay": 0.25, "voltage_decay": 0.03}
OPS_PER_S = 1e9


def build(k: int, path: Path, seed: int = 0) -> list[Any]:
    """The first k convs of SkA(6-k) (as bench/snn_runtime.py), exported to ``path``; returns
    the slayer blocks."""
    import h5py
    import torch

    slayer = import_slayer()
    torch.manual_seed(seed)
    blocks, c = [], 2
    for out in CHANNELS[:k]:
        blocks.append(
            slayer.block.cuba.Conv(NEURON, c, out, 3, stride=2, padding=1, weight_scale=2)
        )
        c = out
    with torch.no_grad():
        y = torch.zeros(1, 2, 128, 128, 2)
        for block in blocks:
            y = block(y)
    with h5py.File(path, "w") as h:
        layer = h.create_group("layer")
        for i, block in enumerate(blocks):
            block.export_hdf5(layer.create_group(f"{i}"))
    return blocks


class PlainTorch:
    """A PyTorch user's SNN: float conv2d of all frames at once, then a CUBA LIF loop per layer
    (same decays and thresholds as the netx file, float arithmetic)."""

    def __init__(self, path: Path) -> None:
        import torch

        self.torch = torch
        self.layers = []
        for layer in read_netx(path, (2, 128, 128)).layers:
            assert layer.weight is not None
            p = layer.neuron
            self.layers.append(
                (
                    torch.from_numpy(layer.weight.astype(np.float32)),
                    layer.stride,
                    layer.padding,
                    1 - p.i_decay / 4096,
                    1 - p.v_decay / 4096,
                    float(p.vth_mant),
                )
            )

    def __call__(self, x: np.ndarray) -> Any:
        torch = self.torch
        s = torch.from_numpy(x).float()
        with torch.no_grad():
            for w, stride, pad, ku, kv, vth in self.layers:
                a = torch.nn.functional.conv2d(s, w, stride=stride, padding=pad)
                u = torch.zeros_like(a[0])
                v = torch.zeros_like(a[0])
                out = torch.empty_like(a)
                for t in range(a.shape[0]):
                    u = u * ku + (a[t - 1] if t else 0)
                    v = v * kv + u
                    spk = v > vth
                    out[t] = spk
                    v = v.masked_fill(spk, 0.0)
                s = out
        return s


class Slayer:
    """lava-dl slayer's forward pass of the same blocks, (N, C, H, W, T) on the CPU."""

    def __init__(self, blocks: list[Any]) -> None:
        import torch

        self.torch = torch
        self.blocks = blocks

    def __call__(self, x: np.ndarray) -> Any:
        torch = self.torch
        y = torch.from_numpy(np.moveaxis(x, 0, -1)[None].astype(np.float32))
        with torch.no_grad():
            for block in self.blocks:
                y = block(y)
        return y


def timed(runners: dict[str, Callable[[], Any]], repeats: int) -> dict[str, dict[str, float]]:
    """Median wall and thread-CPU seconds of each runner, repeats interleaved across runners."""
    for fn in runners.values():
        fn()  # warm-up: compile or load kernels, allocator
    wall: dict[str, list[float]] = {name: [] for name in runners}
    cpu: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(repeats):
        for name, fn in runners.items():
            t0, c0 = time.perf_counter(), time.thread_time()
            fn()
            cpu[name].append(time.thread_time() - c0)
            wall[name].append(time.perf_counter() - t0)
    return {
        n: {"wall": statistics.median(wall[n]), "cpu": statistics.median(cpu[n])} for n in runners
    }


def network_rows(
    k: int, rates: list[float], steps: int, repeats: int, tmp: Path
) -> list[dict[str, Any]]:
    path = tmp / f"s{k}.net"
    blocks = build(k, path)
    net = read_netx(path, (2, 128, 128))
    natives = {
        "events": SnnRuntime(net, synapses="events"),
        "auto": SnnRuntime(net),
        "dense numpy": SnnRuntime(net, "numpy", synapses="dense"),
        "dense torch": SnnRuntime(net, "torch", synapses="dense"),
    }
    torch_peer, slayer_peer = PlainTorch(path), Slayer(blocks)
    rng = np.random.default_rng(k)
    rows = []
    for rate in rates:
        x = (rng.random((steps, 2, 128, 128)) < rate).astype(np.uint8)
        results = {name: rt.run_window(x) for name, rt in natives.items()}
        out, counts = results["dense torch"]
        exact = all(np.array_equal(o, out) and c == counts for o, c in results.values())
        runners: dict[str, Callable[[], Any]] = {
            name: (lambda rt=rt, x=x: rt.run_window(x)) for name, rt in natives.items()
        }
        runners["PyTorch"] = lambda x=x: torch_peer(x)
        runners["slayer"] = lambda x=x: slayer_peer(x)
        times = timed(runners, repeats)
        limit = (counts.synaptic_ops + counts.neuron_updates) / OPS_PER_S
        rows.append(
            {
                "net": f"S{k}A{6 - k}",
                "rate": rate,
                "limit": limit,
                "synops": counts.synaptic_ops,
                "updates": counts.neuron_updates,
                "times": times,
                "exact": exact,
                "steps": steps,
            }
        )
        print(f"done: S{k}A{6 - k} at {rate:g}", file=sys.stderr, flush=True)
    return rows


def calibrate(repeats: int, steps: int, tmp: Path) -> list[str]:
    """Per-step cost of one 2x128x128 -> 16-channel conv layer: every step event-driven vs every
    step through the dense sums (numpy, torch), by input activity."""
    path = tmp / "s1.net"
    build(1, path)
    net = read_netx(path, (2, 128, 128))
    modes = {
        "events": SnnRuntime(net, synapses="events"),
        "numpy dense steps": SnnRuntime(net, "numpy", synapses="auto", dense_above=0.0),
        "torch dense steps": SnnRuntime(net, "torch", synapses="auto", dense_above=0.0),
    }
    lines = [
        "| input activity | " + " | ".join(f"{m} (ms CPU)" for m in modes) + " |",
        "|---|" + "---|" * len(modes),
    ]
    rng = np.random.default_rng(0)
    for rate in (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5):
        x = (rng.random((steps, 2, 128, 128)) < rate).astype(np.uint8)
        runners = {m: (lambda rt=rt, x=x: rt.run_window(x)) for m, rt in modes.items()}
        times = timed(runners, repeats)
        cols = " | ".join(f"{times[m]['cpu'] * 1e3:.2f}" for m in modes)
        lines.append(f"| {rate:g} | {cols} |")
    return lines


def table(rows: list[dict[str, Any]]) -> list[str]:
    names = ["events", "auto", "dense numpy", "dense torch", "PyTorch", "slayer"]
    head = (
        "| network | input activity | limit (ms) | "
        + " | ".join(f"{n} ms CPU (x limit)" for n in names)
        + " | events ms wall | events RTF | auto RTF | dense torch RTF | PyTorch RTF | "
        "slayer RTF | dense torch / events (CPU) | exact |"
    )
    lines = [head, "|" + "---|" * (3 + len(names) + 8)]
    for r in rows:
        t, lim = r["times"], r["limit"]
        sim = r["steps"] * BIN_S
        cols = " | ".join(f"{t[n]['cpu'] * 1e3:.2f} ({t[n]['cpu'] / lim:.1f}x)" for n in names)
        rtf = " | ".join(
            f"{sim / t[n]['wall']:.0f}" for n in ("events", "auto", "dense torch", "PyTorch")
        )
        lines.append(
            f"| {r['net']} | {r['rate'] * 100:g} % | {lim * 1e3:.2f} | {cols} "
            f"| {t['events']['wall'] * 1e3:.2f} | {rtf} | {sim / t['slayer']['wall']:.1f} "
            f"| {t['dense torch']['cpu'] / t['events']['cpu']:.1f}x | {r['exact']} |"
        )
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--k", type=int, nargs="+", default=[1, 2, 3], help="SkA(6-k) sizes")
    ap.add_argument("--rates", type=float, nargs="+", default=[0.001, 0.01, 0.05, 0.2])
    ap.add_argument("--steps", type=int, default=16, help="timesteps per window (10 ms each)")
    ap.add_argument("--repeats", type=int, default=7, help="timed runs per runner")
    ap.add_argument("--calibrate", action="store_true", help="also the dense/events crossover")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    load0 = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="snn_sparse_"))
    rows = []
    for k in args.k:
        rows += network_rows(k, args.rates, args.steps, args.repeats, tmp)
    print("\n".join(table(rows)))
    if args.calibrate:
        print()
        print("\n".join(calibrate(args.repeats, args.steps, tmp)))
        print(f"\nDENSE_ABOVE in the runtime: {DENSE_ABOVE}")
    print(
        f"\nMeasured {time.strftime('%Y-%m-%d')} on {platform.machine()}, "
        f"{len(os.sched_getaffinity(0))} CPUs, torch {torch.__version__} (1 thread); "
        f"T = {args.steps} steps of {BIN_S * 1e3:.0f} ms per window, median of {args.repeats} "
        f"interleaved runs; limit = (synaptic ops + neuron updates) / {OPS_PER_S:.0e} per s. "
        f"1-min load average {load0:.1f} at the start, {os.getloadavg()[0]:.1f} at the end."
    )


if __name__ == "__main__":
    main()
