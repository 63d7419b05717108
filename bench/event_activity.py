"""Event activity per 10 ms bin: real recordings against the synthetic gesture set.

For each source, every ``--bin-us`` bin of sensor time is counted: events, and the fraction of
pixels with at least one event (either polarity), at the sensor's own geometry and after the SNN
node's mapping onto a ``--size`` x ``--size`` model input (``filters.SpatialMap``). This is what
the synthetic set's 128x128 statistics were matched against (docs/results/README_128.md).

    python bench/event_activity.py --bag BAG [--bag BAG2 ...] [--synthetic 110] [--json OUT]

Bags are read with the project's own reader (``core.io.bag.read.read_event_bag``); make them from
the recordings with ``hsnn-bag convert aedat4|raw FILE OUT``. Only bins that have at least one
event are counted for recordings (a paused camera says nothing about a gesture's statistics);
``--min-active`` drops near-empty bins too.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hsnn_perception.core.events.filters import SpatialMap  # noqa: E402
from hsnn_perception.training.data import bin_activity  # noqa: E402


def summarize(counts: np.ndarray, frac: np.ndarray, frac_model: np.ndarray) -> dict:
    def pct(a: np.ndarray) -> dict:
        return {
            "mean": float(a.mean()),
            "p10": float(np.percentile(a, 10)),
            "p50": float(np.percentile(a, 50)),
            "p90": float(np.percentile(a, 90)),
        }

    return {
        "bins": int(counts.size),
        "events_per_bin": pct(counts),
        "active_fraction_sensor": pct(frac),
        "active_fraction_model_input": pct(frac_model),
    }


def bag_events(path: Path) -> tuple[np.ndarray, int, int]:
    from hsnn_perception.core.io.bag.read import read_event_bag

    bag = read_event_bag(path)
    parts, geometry = [], None
    for pkt in bag.packets():
        ev = pkt.decode()
        geometry = geometry or (pkt.height, pkt.width)
        parts.append(ev)
    events = np.concatenate(parts) if parts else np.zeros(0)
    events = events[np.argsort(events["t"], kind="stable")]
    return events, geometry[0], geometry[1]


def measure(events: np.ndarray, h: int, w: int, size: int, bin_us: int, mapping: str, keep) -> dict:
    counts, frac = bin_activity(events, h, w, bin_us)
    mapped = SpatialMap((h, w), size, size, mapping)(events)
    _, frac_m = bin_activity(mapped, size, size, bin_us, t0=int(events["t"].min()))
    frac_m = np.pad(frac_m, (0, max(0, counts.size - frac_m.size)))[: counts.size]
    sel = keep(counts, frac)
    return summarize(counts[sel], frac[sel], frac_m[sel])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bag", type=Path, action="append", default=[], help="event bag (repeatable)")
    p.add_argument("--synthetic", type=int, default=0, help="synthetic samples to measure")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--first-index", type=int, default=50_000)
    p.add_argument("--size", type=int, default=128, help="model input side")
    p.add_argument("--mapping", default="crop", choices=("crop", "scale", "pad"))
    p.add_argument("--bin-us", type=int, default=10_000)
    p.add_argument("--min-active", type=float, default=0.0, help="drop bins below this fraction")
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args()
    out: dict = {"bin_us": a.bin_us, "size": a.size, "mapping": a.mapping}
    for bag in a.bag:
        ev, h, w = bag_events(bag)
        out[str(bag)] = {
            "sensor": [w, h],
            "events": int(ev.size),
            **measure(ev, h, w, a.size, a.bin_us, a.mapping, lambda c, f: f > a.min_active),
        }
    if a.synthetic:
        from hsnn_perception.core.events.synthetic import SyntheticGestures

        gen = SyntheticGestures(128, 128, seed=a.seed)
        rows = []
        for i in range(a.first_index, a.first_index + a.synthetic):
            ev, _ = gen.sample(i)
            counts, frac = bin_activity(ev, 128, 128, a.bin_us, t0=0)
            counts = np.pad(counts, (0, max(0, 16 - counts.size)))
            frac = np.pad(frac, (0, max(0, 16 - frac.size)))
            rows.append((counts, frac))
        counts = np.concatenate([r[0] for r in rows])
        frac = np.concatenate([r[1] for r in rows])
        out[f"synthetic seed {a.seed} samples {a.first_index}+{a.synthetic}"] = {
            "sensor": [128, 128],
            **summarize(counts, frac, frac),
        }
    text = json.dumps(out, indent=2)
    print(text)
    if a.json:
        a.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
