"""Does a bundle run in real time here? Per 160 ms window: SNN (native runtime), bridge and ANN
(onnxruntime, 1 thread) times on held-out synthetic gestures, as wall time and as this process's
CPU time (``time.process_time``): on a shared machine the wall time includes waiting for a core,
the CPU time is what the window costs. Real-time factor = window length / time per window.

    python bench/realtime.py models/default models/synthetic-128 [--windows 40]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hsnn_perception.core.ann.backends import create_backend  # noqa: E402
from hsnn_perception.core.events.binning import bin_events  # noqa: E402
from hsnn_perception.core.events.synthetic import SyntheticGestures  # noqa: E402
from hsnn_perception.core.hybrid.bundle import ModelBundle  # noqa: E402
from hsnn_perception.core.hybrid.pipeline import input_spikes, snn_features  # noqa: E402
from hsnn_perception.core.snn.runtime import load_snn  # noqa: E402


def measure(path: Path, windows: int) -> dict:
    b = ModelBundle.load(path)
    gen = SyntheticGestures(b.sensor_height, b.sensor_width, seed=0)
    f = (b.sensor_height // b.height, b.sensor_width // b.width)
    frames = [
        bin_events(gen.sample(i)[0], 0, b.bin_us, b.timesteps, b.sensor_height, b.sensor_width, f)
        for i in range(70_000, 70_000 + windows)
    ]
    times: dict[str, list[tuple[float, float]]] = {"snn": [], "bridge": [], "ann": []}
    with (
        load_snn(b.snn_file, backend="native") as snn,
        create_backend("onnxruntime", b.ann_file, providers="cpu") as ann,
    ):
        snn.run_window(input_spikes(frames[0]))  # compile / warm up

        def timed(stage: str, fn, *args):  # noqa: ANN001, ANN202 - a bench helper
            w0, c0 = time.perf_counter(), time.process_time()
            value = fn(*args)
            times[stage].append((time.perf_counter() - w0, time.process_time() - c0))
            return value

        for fr in frames:
            out = timed("snn", snn.run_window, input_spikes(fr))[0]
            feats = timed("bridge", snn_features, out, b.interval)
            timed("ann", ann.infer, feats)
    row = {"bundle": str(path), "input": [b.channels, b.height, b.width], "windows": windows}
    wall = sum(np.asarray([t[0] for t in v]) for v in times.values())
    cpu = sum(np.asarray([t[1] for t in v]) for v in times.values())
    for stage, v in times.items():
        row[f"{stage}_wall_ms_p50"] = float(np.median([t[0] for t in v]) * 1e3)
        row[f"{stage}_cpu_ms_p50"] = float(np.median([t[1] for t in v]) * 1e3)
    row["total_wall_ms_p50"] = float(np.median(wall) * 1e3)
    row["total_cpu_ms_p50"] = float(np.median(cpu) * 1e3)
    row["realtime_factor_cpu"] = b.window_us / 1e3 / row["total_cpu_ms_p50"]
    row["realtime_factor_wall"] = b.window_us / 1e3 / row["total_wall_ms_p50"]
    return row


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("bundles", nargs="+", type=Path)
    p.add_argument("--windows", type=int, default=40)
    a = p.parse_args()
    rows = [measure(path, a.windows) for path in a.bundles]
    print(json.dumps({"load_average": os.getloadavg(), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
