"""Whole-pipeline throughput at megapixel event rates: driver -> snn_feature -> accumulator_bridge
-> classifier (+ energy aggregator), real DDS, one process per node (hsnn_perception.launcher with
graph.pipeline, as launched), shipped model, 1280x720 events mapped to its input by the SNN node's
``input_mapping``.

The events are the real Prophesee EVK4 recording (../shared/recordings/evt3.raw, 1280x720, about
0.11 M events/s) compressed in time to each rate and repeated to fill ``--seconds``: real spatial
structure, the rate of a busy scene. Each rate is written to a bag in each ``--encodings`` (packets
of ``--packet-us``) and played in real time by the driver (source rosbag, no filters: payloads
passed through). Per rate and encoding it prints the driver's pace against real time (1.0 = keeps
up) and worst lateness, packets and events published and received by the SNN node, windows
expected against classified, the lost/dropped counters of every node's /diagnostics, CPU per node
(share of one core while the driver played), and which node is the limit: the first one along the
flow that falls behind or loses.

    python bench/throughput.py --rates 2e6 5e6 10e6 20e6 40e6 --seconds 3
"""

from __future__ import annotations

import argparse
import math
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(101, 200)))

RAW = ROOT.parent / "shared" / "recordings" / "evt3.raw"
FLOW = ("driver", "snn", "bridge", "classifier")  # data-flow order, for naming the limit
CLK_TCK = os.sysconf("SC_CLK_TCK")


def real_events(raw_path: Path) -> tuple[Any, int, int]:
    """The recording's events, time-sorted, with its geometry (width, height)."""
    import numpy as np

    from hsnn_perception.core.events.codecs import Evt3State, decode_packet
    from hsnn_perception.core.io.bag.convert import RAW_READ_BYTES, read_evt3_raw_header

    width, height, offset = read_evt3_raw_header(raw_path)
    state, parts = Evt3State(), []
    with raw_path.open("rb") as f:
        f.seek(offset)
        while chunk := f.read(RAW_READ_BYTES):
            parts.append(
                decode_packet(chunk, "evt3", 0, width, height, strict=False, evt3_state=state)
            )
    events = np.concatenate(parts)
    events = events[np.argsort(events["t"], kind="stable")]
    events["t"] -= events["t"][0]
    return events, width, height


def compressed(events: Any, rate: float, seconds: float, packet_us: int) -> Iterator[Any]:
    """``events`` sped up to ``rate`` events/s, repeated back to back (each copy starting on the
    packet grid) until ``seconds`` of sensor time are filled; one array per copy."""
    import numpy as np

    span_us = int(events["t"][-1]) + 1
    factor = rate * span_us * 1e-6 / events.size  # > 1 compresses
    t = (events["t"] / factor).astype(np.int64)
    period = -(-(int(t[-1]) + 1) // packet_us) * packet_us
    end = int(seconds * 1e6)
    for k in range(math.ceil(end / period)):
        copy = events.copy()
        copy["t"] = t + k * period
        yield copy[copy["t"] < end]


def make_bag(path: Path, events: Any, width: int, height: int, rate: float, opts: Any, enc: str):
    """Write the stream of ``rate`` in encoding ``enc``; returns (events, first_us, last_us)."""
    from hsnn_perception.core.io.bag.write import packetize, write_event_bag

    seen = {"n": 0, "first": None, "last": 0}

    def packets() -> Iterator[Any]:
        seq = 0
        for copy in compressed(events, rate, opts.seconds, opts.packet_us):
            if not copy.size:
                continue
            seen["n"] += int(copy.size)
            seen["first"] = int(copy["t"][0]) if seen["first"] is None else seen["first"]
            seen["last"] = int(copy["t"][-1])
            for pkt in packetize(copy, opts.packet_us, width, height, enc, seq):
                seq += 1
                yield pkt

    write_event_bag(path, packets())
    return seen["n"], seen["first"], seen["last"]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def run(
    bag: Path,
    enc: str,
    n_events: int,
    first: int,
    last: int,
    opts: Any,
    tmp: Path,
    transport: str = "shipped",
) -> dict:
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node

    from hsnn_perception.graph import STAGE_NODES, model_window_us, pipeline, qualified_name
    from hsnn_perception.launcher import ProcessGroup
    from hsnn_perception.msg import Classification
    from hsnn_perception.nodes.base import reliable_qos

    window_us = model_window_us(opts.model)
    expected = last // window_us - first // window_us + 1
    period = {"diagnostics_period_s": 0.25}
    overrides: dict[str, dict[str, Any]] = {name: dict(period) for name in STAGE_NODES.values()}
    overrides[STAGE_NODES["driver"]].update(
        encoding=enc, timer_period_s=opts.timer_period_s, merge_us=opts.merge_us
    )
    overrides[STAGE_NODES["snn"]].update(input_mapping=opts.input_mapping)
    ns = f"tp{random.randint(0, 10**6)}"
    # --driver-only: the driver by itself, publishing to no subscriber (its own reading,
    # pacing and publishing; no DDS delivery): what it could feed a faster consumer.
    stages = ("driver",) if opts.driver_only else FLOW
    if opts.driver_only:
        overrides = {STAGE_NODES["driver"]: {**overrides[STAGE_NODES["driver"]]}}
        overrides[STAGE_NODES["driver"]].update(wait_for_subscribers=0)
    specs = pipeline(
        model=opts.model,
        source="rosbag",
        source_path=str(bag),
        speed=1.0,
        stages=(*stages, "energy"),
        overrides=overrides,
    )
    rclpy.init()
    node = Node("throughput_probe", namespace=ns)
    classified: list[int] = []
    diag: dict[str, dict[str, str]] = {}
    node.create_subscription(
        Classification, "classification", lambda m: classified.append(1), reliable_qos(100)
    )

    def on_diag(msg: DiagnosticArray) -> None:
        for st in msg.status:
            diag[st.hardware_id] = {kv.key: kv.value for kv in st.values}

    node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, reliable_qos(50))
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    names = {stage: qualified_name(ns, STAGE_NODES[stage]) for stage in (*stages, "energy")}
    drv = names["driver"]
    cpu0: dict[str, float] = {}
    cpu1: dict[str, float] = {}
    wall = [0.0, 0.0]
    # "default": Fast DDS's own transports (512 KiB shared-memory segment), the peer of
    # "shipped" (the driver's nodes/fastdds_event_streams.xml, what a launch gives it).
    env = {"HSNN_FASTDDS_PROFILE": ""} if transport == "default" else {}
    with ProcessGroup(specs, namespace=ns, log_dir=tmp, env=env) as group:
        pids = {stage: group.procs[STAGE_NODES[stage]].pid for stage in names}
        deadline = time.monotonic() + opts.seconds * 6 + 90
        while time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
            d = diag.get(drv, {})
            if not cpu0 and int(d.get("published.packets", 0)) > 0:
                cpu0 = {s: cpu_seconds(p) for s, p in pids.items()}
                wall[0] = time.monotonic()
            if cpu0 and not cpu1 and d.get("source_finished") == "True":
                cpu1 = {s: cpu_seconds(p) for s, p in pids.items()}
                wall[1] = time.monotonic()
            if cpu1 and (
                opts.driver_only or len(classified) >= expected or time.monotonic() > wall[1] + 10
            ):
                break
        end = time.monotonic() + 2  # the last windows and diagnostics
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.05)
    node.destroy_node()
    rclpy.try_shutdown()
    played = max(wall[1] - wall[0], 1e-9)
    get = {stage: diag.get(names.get(stage, ""), {}) for stage in (*FLOW, "energy")}
    lost = {
        f"{stage}:{k}": int(v)
        for stage, values in get.items()
        for k, v in values.items()
        if (k.startswith(("lost.", "dropped.", "flow.lost")) or k == "late_events")
        and v.isdigit()
        and int(v)
    }
    return {
        "encoding": enc,
        "events": n_events,
        "pace": float(get["driver"].get("pace", "nan")),
        "late_max_ms": float(get["driver"].get("late_max_ms", "nan")),
        "pkts_pub": int(get["driver"].get("published.packets", 0)),
        "pkts_recv": int(get["snn"].get("received.packets", 0)),
        "ev_pub": int(get["driver"].get("published.events", 0)),
        "ev_recv": int(get["snn"].get("received.events", 0)),
        "win_snn": int(get["snn"].get("published.windows", 0)),
        "win_expected": expected,
        "window_us": window_us,
        "classified": len(classified),
        "lost": lost,
        "cpu": {s: (cpu1.get(s, 0.0) - cpu0.get(s, 0.0)) / played for s in FLOW},
        "driver_only": opts.driver_only,
        "finished": bool(cpu1),
    }


def limit(r: dict) -> str:
    """The first node along the flow that falls behind or loses (or 'none'): the driver when its
    pace is under real time or a packet went out later than one model window."""
    saturated = {s for s, c in r["cpu"].items() if c >= 0.9}
    if not r["finished"] or r["pace"] < 0.97:
        return "driver (pace)"
    if r["late_max_ms"] * 1000 > r["window_us"]:
        return "driver (stalls)"
    if r["driver_only"]:
        return "none (driver alone)"
    if r["pkts_recv"] < r["pkts_pub"] or any(k.startswith("snn:") for k in r["lost"]):
        return "snn_feature (ingest)" + (" cpu-bound" if "snn" in saturated else "")
    if r["win_snn"] < r["win_expected"]:
        return "snn_feature (windows)"
    if r["classified"] < r["win_expected"]:
        return "bridge/classifier"
    busiest = max(r["cpu"], key=r["cpu"].get)
    return f"none (busiest: {busiest} {r['cpu'][busiest]:.0%})"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rates", type=float, nargs="+", default=[2e6, 5e6, 10e6, 20e6, 40e6])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--packet-us", type=int, default=1000)
    ap.add_argument("--encodings", nargs="+", default=["evt3", "mono"])
    ap.add_argument("--model", default="", help="model bundle (empty: the shipped default)")
    ap.add_argument("--input-mapping", default="scale", help="the SNN node's input_mapping")
    ap.add_argument("--raw", type=Path, default=RAW, help="EVT3 .raw recording to speed up")
    ap.add_argument("--timer-period-s", type=float, default=0.002, help="the driver's tick")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--workdir", default="", help="where the bags go (default: /dev/shm)")
    ap.add_argument("--driver-only", action="store_true", help="the driver alone, no consumer")
    ap.add_argument(
        "--merge-us", type=int, default=0, help="the driver's merge_us (0: packets as recorded)"
    )
    ap.add_argument(
        "--transports",
        nargs="+",
        choices=("shipped", "default"),
        default=["shipped"],
        help="the driver's Fast DDS transports, each case run with each (interleaved): shipped "
        "(8 MiB shared-memory segment, as launched) and/or default (Fast DDS's 512 KiB)",
    )
    opts = ap.parse_args(argv)
    from hsnn_perception.nodes.base import FASTDDS_CONFIGURATION

    for name in FASTDDS_CONFIGURATION:  # where set, the driver leaves its profile out
        if os.environ.get(name):
            print(f"note: {name} is set: it, not --transports, decides the driver's transports")
    events, width, height = real_events(opts.raw)
    print(
        f"{opts.raw.name}: {events.size} events {width}x{height} over "
        f"{events['t'][-1] / 1e6:.2f} s; {opts.seconds:g} s per rate, {opts.packet_us} us packets, "
        f"driver tick {opts.timer_period_s * 1e3:g} ms, merge_us {opts.merge_us}; "
        f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"
    )
    cols = (
        "Mev/s",
        "enc",
        "transport",
        "pace",
        "late ms",
        "pkts pub/recv",
        "Mev pub/recv",
        "windows exp/snn/cls",
        "cpu drv/snn/brg/cls",
        "drv Mev/s per core",
        "lost",
        "limit",
    )
    print(" | ".join(cols), flush=True)
    # Bags in memory where there is a tmpfs: what is measured is the pipeline, not a shared disk.
    shm = Path("/dev/shm")
    with tempfile.TemporaryDirectory(dir=opts.workdir or (shm if shm.is_dir() else None)) as tmpdir:
        tmp = Path(tmpdir)
        for rate in [r for r in opts.rates for _ in range(opts.repeats)]:
            for enc in opts.encodings:
                bag = tmp / f"tp_{int(rate)}_{enc}.mcap"
                n, first, last = make_bag(bag, events, width, height, rate, opts, enc)
                for transport in opts.transports:
                    r = run(bag, enc, n, first, last, opts, tmp, transport)
                    report(rate, enc, transport, r, opts.seconds)
                shutil.rmtree(bag, ignore_errors=True)  # a bag is a folder or one file
                bag.unlink(missing_ok=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


def report(rate: float, enc: str, transport: str, r: dict, seconds: float) -> None:
    """One row of the table."""
    cpu = "/".join(f"{r['cpu'][s]:.0%}" for s in FLOW)
    lost = ", ".join(f"{k}={v}" for k, v in sorted(r["lost"].items())) or "0"
    row = (
        f"{rate / 1e6:g}",
        enc,
        transport,
        f"{r['pace']:.3f}",
        f"{r['late_max_ms']:.0f}",
        f"{r['pkts_pub']}/{r['pkts_recv']}",
        f"{r['ev_pub'] / 1e6:.2f}/{r['ev_recv'] / 1e6:.2f}",
        f"{r['win_expected']}/{r['win_snn']}/{r['classified']}",
        cpu,
        f"{r['ev_pub'] / seconds / max(r['cpu']['driver'], 1e-9) / 1e6:.0f}",
        lost,
        limit(r),
    )
    print(" | ".join(row), flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
