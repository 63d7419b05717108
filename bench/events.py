"""Throughput of the event front end: decode + spatial map + windowing, per encoding and sensor,
next to dv-processing's C++ accumulators and noise filter on the same events, in one run.

    PYTHONPATH=. python bench/events.py [--seconds 0.1] [--rate 20e6] [--markdown docs/events.md]

Events are synthetic (uniform pixels, sorted times) at ``--rate`` events per second of sensor
time, cut into 1 ms packets like a driver publishes them. Figures are M events/s of wall time on
this machine (best of ``--repeat``); ratios are against dv's EdgeMapAccumulator on the same store.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import numpy as np

from hsnn_perception.core.events.binning import EventWindower
from hsnn_perception.core.events.codecs import ENCODINGS, decode_packet, encode_packet, make_events
from hsnn_perception.core.events.filters import BackgroundActivityFilter, SpatialMap, to_dv_store

BIN_US, T = 10_000, 16


def synthetic(n: int, seconds: float, height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(0, int(seconds * 1e6), n)) + 1_000_000
    return make_events(
        t, rng.integers(0, width, n), rng.integers(0, height, n), rng.integers(0, 2, n)
    )


def best_of(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def run(seconds: float, rate: float, repeat: int) -> list[tuple[str, str, str, float]]:
    rows: list[tuple[str, str, str, float]] = []
    for height, width in ((480, 640), (128, 128)):
        rows += sensor_rows(height, width, seconds, rate, repeat)
    return rows


def sensor_rows(
    height: int, width: int, seconds: float, rate: float, repeat: int
) -> list[tuple[str, str, str, float]]:
    import dv_processing as dv

    rows: list[tuple[str, str, str, float]] = []
    sensor = f"{width}x{height}"
    n = int(rate * seconds)
    ev = synthetic(n, seconds, height, width)
    edges = np.searchsorted(ev["t"], np.arange(ev["t"][0], ev["t"][-1] + 1000, 1000))
    packets_ev = [ev[a:b] for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]
    smap = SpatialMap((height, width), 128, 128) if (height, width) != (128, 128) else None

    # EVT3 twice: its sequential decoder compiled by numba (the default where numba is
    # installed) and the vectorised numpy one (HSNN_EVT3_ENGINE=numpy), side by side.
    variants = [(enc, None) for enc in ENCODINGS if enc != "evt3"]
    variants[1:1] = [("evt3", "numba"), ("evt3", "numpy")]
    for enc, engine in variants:
        packets = [encode_packet(p, enc, width, height) for p in packets_ev]
        if engine is not None:
            os.environ["HSNN_EVT3_ENGINE"] = engine

        def decode(packets=packets, enc=enc) -> None:
            for tb, pl in packets:
                decode_packet(pl, enc, tb, width, height)

        def pipeline(packets=packets, enc=enc) -> None:
            win = EventWindower(BIN_US, T, 128, 128, 128, 128)
            for tb, pl in packets:
                e = decode_packet(pl, enc, tb, width, height)
                win.push(smap(e) if smap is not None else e)
            win.flush()

        name = enc if engine is None else f"{enc} ({engine})"
        decode()  # compile / warm up outside the timing
        rows.append((sensor, name, "decode", n / best_of(decode, repeat) / 1e6))
        rows.append((sensor, name, "decode+map+window", n / best_of(pipeline, repeat) / 1e6))
        os.environ.pop("HSNN_EVT3_ENGINE", None)

    # References in C++ on the same events (the store is built outside the timing).
    store = to_dv_store(ev)
    t_lo = int(ev["t"][0])

    def dv_edge() -> None:
        acc = dv.EdgeMapAccumulator((width, height))
        for k in range(int(np.ceil((ev["t"][-1] - t_lo + 1) / BIN_US))):
            acc.accept(store.sliceTime(t_lo + k * BIN_US, t_lo + (k + 1) * BIN_US))
            acc.generateFrame()

    def dv_acc() -> None:
        acc = dv.Accumulator((width, height))
        for k in range(int(np.ceil((ev["t"][-1] - t_lo + 1) / BIN_US))):
            acc.accept(store.sliceTime(t_lo + k * BIN_US, t_lo + (k + 1) * BIN_US))
            acc.generateFrame()

    def dv_noise() -> None:
        f = BackgroundActivityFilter((height, width), 2000)
        f.filter_store(store)

    def our_noise() -> None:
        f = BackgroundActivityFilter((height, width), 2000)
        f(ev)

    rows.append(
        (
            sensor,
            "dv C++",
            "EdgeMapAccumulator (10 ms frames)",
            n / best_of(dv_edge, repeat) / 1e6,
        )
    )
    rows.append((sensor, "dv C++", "Accumulator (10 ms frames)", n / best_of(dv_acc, repeat) / 1e6))
    rows.append(
        (
            sensor,
            "dv C++",
            "BA noise filter on dv.EventStore",
            n / best_of(dv_noise, repeat) / 1e6,
        )
    )
    rows.append(
        (
            sensor,
            "numpy->dv",
            "BA noise filter incl. to/from_dv_store",
            n / best_of(our_noise, 1) / 1e6,
        )
    )
    return rows


def table(rows: list[tuple[str, str, str, float]]) -> str:
    ref = {s: v for s, e, what, v in rows if what.startswith("EdgeMapAccumulator")}
    lines = [
        "| sensor | encoding / impl | stage | M events/s | ratio vs dv EdgeMapAccumulator |",
        "|---|---|---|---:|---:|",
    ]
    for s, e, what, v in rows:
        lines.append(f"| {s} | {e} | {what} | {v:.1f} | {v / ref[s]:.2f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=0.1, help="sensor time to synthesise")
    ap.add_argument("--rate", type=float, default=20e6, help="events per second of sensor time")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--markdown", help="also write the table into this file between markers")
    args = ap.parse_args()
    rows = run(args.seconds, args.rate, args.repeat)
    text = table(rows)
    print(text)
    if args.markdown:
        begin, end = "<!-- bench:events begin -->", "<!-- bench:events end -->"
        with open(args.markdown, encoding="utf-8") as f:
            doc = f.read()
        if begin not in doc or end not in doc:
            raise SystemExit(f"{args.markdown} has no {begin} ... {end} markers")
        head, rest = doc.split(begin, 1)
        _, tail = rest.split(end, 1)
        note = (
            f"\n`PYTHONPATH=. python bench/events.py --seconds {args.seconds} "
            f"--rate {args.rate:g} --repeat {args.repeat}`\n\n"
        )
        with open(args.markdown, "w", encoding="utf-8") as f:
            f.write(head + begin + note + text + "\n" + end + tail)


if __name__ == "__main__":
    main()
