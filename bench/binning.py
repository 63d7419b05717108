"""Decode + window against dv-processing's C++ accumulator on the same events, in one run: the
SNN node's event front end (payload -> events -> T-bin windows at the model's input) as it was
and as it runs now (fused), beside dv's EdgeMapAccumulator (issue 15, goal 2: >= 0.5x).

    python bench/binning.py [--seconds 0.3] [--rate 20e6] [--repeats 9]

Events are synthetic (uniform pixels, sorted times, as bench/events.py) at ``--rate`` events per
second of sensor time, cut into 1 ms packets like a driver publishes them, encoded once outside
the timing. Each sensor is mapped to a 128x128 model input as the node maps it
(``filters.model_input_chain``, ``scale``: 128x128 is the identity, 1280x720 is 10 x 5.625 sensor
pixels per model pixel). Per sensor and encoding it times, interleaved (A B C A B C ...),
``--repeats`` runs of:

* ``decode + map + window (before)``: ``PacketStreamDecoder.decode``, the time-range check, then
  ``MappedWindower.push`` (the chain, then the compiled windower): the node's path before;
* ``fused decode + map + window (node now)``: ``PacketStreamDecoder.decode_into`` the same
  ``MappedWindower``: the words are decoded straight into the window (``fused.py``);
* ``window only``: ``MappedWindower.push`` of events decoded beforehand;
* ``dv EdgeMapAccumulator``: dv-processing's C++ accumulator at the sensor's resolution, 10 ms
  frames, on a dv EventStore built outside the timing (it decodes and maps nothing).

Figures are M events/s: the best run on the thread's CPU time (the work, whoever else had the
core: the ratio to read) and the median run on the wall clock; each ratio is against dv's
accumulator measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from events import synthetic  # noqa: E402

from hsnn_perception.core.events.binning import EventWindower  # noqa: E402
from hsnn_perception.core.events.codecs import encode_packet  # noqa: E402
from hsnn_perception.core.events.filters import (  # noqa: E402
    MappedWindower,
    model_input_chain,
    to_dv_store,
)
from hsnn_perception.core.events.stream import PacketStreamDecoder  # noqa: E402

BIN_US, T = 10_000, 16


def median_rates(
    runners: dict[Any, Callable[[], object]], n: int, repeats: int
) -> dict[Any, tuple[float, float]]:
    """Per runner, (M events/s on the thread's CPU time, best run; M events/s on the wall
    clock, median run). Every path here runs on the calling thread: CPU time leaves out the
    time another process had the core, and the best run the one least disturbed by what the
    other processes did to the caches, which on a shared 2-core host move the figures by 2x."""
    for fn in runners.values():
        fn()  # warm-up: numba compile or cache load
    cpu: dict[Any, list[float]] = {name: [] for name in runners}
    wall: dict[Any, list[float]] = {name: [] for name in runners}
    for _ in range(repeats):
        for name, fn in runners.items():
            c0, w0 = time.thread_time(), time.perf_counter()
            fn()
            cpu[name].append(time.thread_time() - c0)
            wall[name].append(time.perf_counter() - w0)
    return {
        name: (n / min(cpu[name]) / 1e6, n / statistics.median(wall[name]) / 1e6)
        for name in runners
    }


def sensor_runners(
    height: int, width: int, model: tuple[int, int], seconds: float, rate: float
) -> dict[tuple[str, str, str], Callable[[], object]]:
    """The paths of one sensor, keyed (sensor, encoding, path); dv's under encoding "any"."""
    import dv_processing as dv

    n = int(rate * seconds)
    ev = synthetic(n, seconds, height, width)
    edges = np.searchsorted(ev["t"], np.arange(ev["t"][0], ev["t"][-1] + 1000, 1000))
    packets = [ev[a:b] for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]
    store = to_dv_store(ev)
    t_lo, t_hi = int(ev["t"][0]), int(ev["t"][-1])
    time_range = (0, ((1 << 31) - 1) * 1_000_000)  # the node's: what a ROS Time carries

    def dv_edge() -> None:
        acc = dv.EdgeMapAccumulator((width, height))
        for k in range((t_hi - t_lo) // BIN_US + 1):
            acc.accept(store.sliceTime(t_lo + k * BIN_US, t_lo + (k + 1) * BIN_US))
            acc.generateFrame()

    def windower() -> MappedWindower:
        chain = model_input_chain((height, width), model, "scale")
        return MappedWindower(chain, EventWindower(BIN_US, T, *model, *model))

    sensor = f"{width}x{height} -> {model[1]}x{model[0]}"
    runners: dict[tuple[str, str, str], Callable[[], object]] = {
        (sensor, "any", "dv EdgeMapAccumulator"): dv_edge
    }
    for enc in ("mono", "evt3"):
        encoded = [encode_packet(p, enc, width, height) for p in packets]
        decoder = PacketStreamDecoder()
        decoded = [decoder.decode(pl, enc, tb, width, height) for tb, pl in encoded]

        def before(encoded=encoded, enc=enc) -> None:
            w, decoder = windower(), PacketStreamDecoder()
            for seq, (tb, pl) in enumerate(encoded):
                events = decoder.decode(pl, enc, tb, width, height, seq=seq)
                t = events["t"]
                if t.size and not time_range[0] <= int(t.min()) <= int(t.max()) <= time_range[1]:
                    raise ValueError("time range")
                w.push(events)
            w.flush()

        def fused(encoded=encoded, enc=enc) -> None:
            w, decoder = windower(), PacketStreamDecoder()
            for seq, (tb, pl) in enumerate(encoded):
                decoder.decode_into(w, pl, enc, tb, width, height, seq=seq, time_range=time_range)
            w.flush()

        def window_only(decoded=decoded) -> None:
            w = windower()
            for events in decoded:
                w.push(events)
            w.flush()

        runners[(sensor, enc, "decode + map + window (before)")] = before
        runners[(sensor, enc, "fused decode + map + window (node now)")] = fused
        runners[(sensor, enc, "window only")] = window_only
    return runners


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seconds", type=float, default=0.3, help="sensor time to synthesise")
    ap.add_argument("--rate", type=float, default=20e6, help="events per second of sensor time")
    ap.add_argument("--repeats", type=int, default=9)
    args = ap.parse_args()
    load0 = os.getloadavg()
    runners = sensor_runners(128, 128, (128, 128), args.seconds, args.rate)
    runners |= sensor_runners(720, 1280, (128, 128), args.seconds, args.rate)
    # All paths of all sensors interleaved in one loop: a burst of load hits them all alike.
    rates = median_rates(runners, int(args.rate * args.seconds), args.repeats)
    rows = []
    for sensor in dict.fromkeys(k[0] for k in rates):
        ref = rates[(sensor, "any", "dv EdgeMapAccumulator")]
        for enc in ("mono", "evt3"):
            for (s_, e, name), (c, w) in rates.items():
                if s_ == sensor and e in (enc, "any"):
                    rows.append((sensor, enc, name, c, w, c / ref[0], w / ref[1]))
    print(
        "| sensor -> window | encoding | path | M events/s (CPU, best) | vs dv (CPU, best) "
        "| M events/s (wall, median) | vs dv (wall, median) |"
    )
    print("|---|---|---|---:|---:|---:|---:|")
    for sensor, enc, name, cpu, wall, cpu_ratio, wall_ratio in rows:
        print(
            f"| {sensor} | {enc} | {name} | {cpu:.1f} | {cpu_ratio:.2f} | {wall:.1f} "
            f"| {wall_ratio:.2f} |"
        )
    print(
        f"\nMeasured {time.strftime('%Y-%m-%d')}: {args.rate:g} events/s for {args.seconds} s of "
        f"sensor time in 1 ms packets, {T} bins of {BIN_US} us per window, "
        f"{args.repeats} interleaved runs (thread CPU time: best; wall clock: median). "
        f"Load average (1/5/15 min) "
        f"{'/'.join(f'{v:.1f}' for v in load0)} at the start, "
        f"{'/'.join(f'{v:.1f}' for v in os.getloadavg())} at the end."
    )


if __name__ == "__main__":
    main()
