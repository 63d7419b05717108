"""Decode + window against dv-processing's C++ accumulator on the same events, in one run: the
event front end of the SNN node (payload -> events -> T-bin windows at the model's input) with
the numpy windower, the compiled one, and the compiled mono decoder.

    python bench/binning.py [--seconds 0.2] [--rate 20e6] [--repeats 5]

Events are synthetic (uniform pixels, sorted times, as bench/events.py) at ``--rate`` events per
second of sensor time, cut into 1 ms packets like a driver publishes them, encoded once outside
the timing. Per sensor and encoding it times, interleaved (A B C A B C ...), the median of
``--repeats`` runs of:

* ``decode + window (numpy)``: the codec's decoder, then ``EventWindower(engine="numpy")`` (the
  windower before it was compiled);
* ``decode + window``: the codec's decoder, then the compiled windower (the node's path now);
* ``fast mono decode + window`` (mono): ``fast_bin.decode_mono``, then the compiled windower;
* ``fused mono decode + window (push_mono)`` (mono): ``EventWindower.push_mono``, the words
  decoded as they are windowed, no event array in between;
* ``window only``: the compiled windower on decoded events;
* ``dv EdgeMapAccumulator``: dv-processing's C++ accumulator, 10 ms frames, on a dv EventStore
  built outside the timing (the peer of issue 15's goal 2).

At 1280x720 the window pools 10x10 blocks to 128x72 (integer pooling is the windower's own
mapping; ``filters.SpatialMap`` maps to other geometries before it). Figures are M events/s;
the ratio is against dv's accumulator measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from events import synthetic  # noqa: E402

from hsnn_perception.core.events.binning import EventWindower  # noqa: E402
from hsnn_perception.core.events.codecs import decode_packet, encode_packet  # noqa: E402
from hsnn_perception.core.events.fast_bin import decode_mono  # noqa: E402
from hsnn_perception.core.events.filters import to_dv_store  # noqa: E402

BIN_US, T = 10_000, 16


def median_rates(runners: dict[str, Callable[[], object]], n: int, repeats: int) -> dict:
    for fn in runners.values():
        fn()  # warm-up: numba compile or cache load
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(repeats):
        for name, fn in runners.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: n / statistics.median(v) / 1e6 for name, v in times.items()}


def sensor_rows(
    height: int, width: int, out: tuple[int, int], seconds: float, rate: float, repeats: int
) -> list[tuple[str, str, str, float, float]]:
    import dv_processing as dv

    n = int(rate * seconds)
    ev = synthetic(n, seconds, height, width)
    edges = np.searchsorted(ev["t"], np.arange(ev["t"][0], ev["t"][-1] + 1000, 1000))
    packets = [ev[a:b] for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]
    store = to_dv_store(ev)
    t_lo, t_hi = int(ev["t"][0]), int(ev["t"][-1])

    def dv_edge() -> None:
        acc = dv.EdgeMapAccumulator((width, height))
        for k in range((t_hi - t_lo) // BIN_US + 1):
            acc.accept(store.sliceTime(t_lo + k * BIN_US, t_lo + (k + 1) * BIN_US))
            acc.generateFrame()

    def window(events: list[np.ndarray], engine: str) -> None:
        w = EventWindower(BIN_US, T, height, width, *out, engine=engine)
        for e in events:
            w.push(e)
        w.flush()

    rows = []
    sensor = f"{width}x{height} -> {out[1]}x{out[0]}"
    for enc in ("mono", "evt3"):
        encoded = [encode_packet(p, enc, width, height) for p in packets]
        decoded = [decode_packet(pl, enc, tb, width, height) for tb, pl in encoded]

        def codec(encoded=encoded, enc=enc) -> list[np.ndarray]:
            return [decode_packet(pl, enc, tb, width, height) for tb, pl in encoded]

        runners: dict[str, Callable[[], object]] = {
            "decode + window (numpy)": lambda codec=codec: window(codec(), "numpy"),
            "decode + window": lambda codec=codec: window(codec(), "numba"),
            "window only": lambda decoded=decoded: window(decoded, "numba"),
            "dv EdgeMapAccumulator": dv_edge,
        }
        if enc == "mono":
            raws = [(tb, np.frombuffer(pl, np.uint8)) for tb, pl in encoded]

            def fast(raws=raws) -> None:
                window([decode_mono(raw, tb, width, height) for tb, raw in raws], "numba")

            def fused(raws=raws) -> None:
                w = EventWindower(BIN_US, T, height, width, *out)
                for tb, raw in raws:
                    w.push_mono(raw, tb)
                w.flush()

            runners["fast mono decode + window"] = fast
            runners["fused mono decode + window (push_mono)"] = fused
        rates = median_rates(runners, n, repeats)
        ref = rates["dv EdgeMapAccumulator"]
        rows += [(sensor, enc, name, r, r / ref) for name, r in rates.items()]
        print(f"done: {sensor} {enc}", file=sys.stderr, flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seconds", type=float, default=0.2, help="sensor time to synthesise")
    ap.add_argument("--rate", type=float, default=20e6, help="events per second of sensor time")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    load0 = os.getloadavg()[0]
    rows = sensor_rows(128, 128, (128, 128), args.seconds, args.rate, args.repeats)
    rows += sensor_rows(720, 1280, (72, 128), args.seconds, args.rate, args.repeats)
    print("| sensor -> window | encoding | path | M events/s (median) | vs dv EdgeMapAccumulator |")
    print("|---|---|---|---:|---:|")
    for sensor, enc, name, rate, ratio in rows:
        print(f"| {sensor} | {enc} | {name} | {rate:.1f} | {ratio:.2f} |")
    print(
        f"\nMeasured {time.strftime('%Y-%m-%d')}: {args.rate:g} events/s for {args.seconds} s of "
        f"sensor time in 1 ms packets, {T} bins of {BIN_US} us per window, median of "
        f"{args.repeats} interleaved runs. 1-min load average {load0:.1f} at the start, "
        f"{os.getloadavg()[0]:.1f} at the end."
    )


if __name__ == "__main__":
    main()
