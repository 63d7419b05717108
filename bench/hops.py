"""The pipeline's DDS hops against bare rclpy hops of the same type, size and QoS, in one run.

Runs the four stages (synthetic gestures in real time, shipped model) as separate processes and
composed in one process (hsnn_perception.runner), and meanwhile a bare rclpy publisher -> subscriber
pair (plain nodes, SingleThreadedExecutor) sending messages of each hop's type, size and QoS,
interleaved with the pipeline's own traffic (one bare message every ``--bare-period-ms``):
between two processes beside the separate-process pipeline, within one process beside the
composed one. Where our messages wait is read from the nodes' hop trace (HSNN_HOP_TRACE,
nodes/base.py: host clock, shared by all processes):

- events: the driver's publish (the packet's header stamp, taken just before publish) -> the SNN
  node's events callback entered;
- snn/spikes: the SNN's output spikes in hand -> the bridge holding them decoded and checked
  (message building, publish, DDS, executor, conversion back, validation: everything between
  the two stages' compute);
- tensors: the bridge's frames in hand -> the classifier's input decoded and checked;
- classification: the classifier's scores in hand -> a plain subscriber (this process) has the
  message.

Post-close: the publish of the packet that closed a window (the first one the SNN node received
of the next window: a window ends there) -> its classification at the plain subscriber. Its
floor: the four bare hops plus the stages' own compute for that window (the SNN node's callback
on the closing packet, and the host latency the SNN, bridge and classifier report on the energy
topic). Every figure is per run; the summary is the median over ``--repeats`` runs. Ratios are
the reliable part: the machine is shared (the load average is printed).

    python bench/hops.py --samples 30 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(101, 200)))

HOPS = ("events", "spikes", "tensors", "classification")
BARE_EXECUTORS = ("single", "events")
TOPICS = {"events": "events", "spikes": "snn/spikes", "tensors": "tensors"}
SNN, BRIDGE, CLASSIFIER = "snn_feature", "accumulator_bridge", "classifier"


# ---- message sizes of the hops (as the pipeline sends them) ----
def event_payload_sizes(samples: int, seed: int, packet_us: int = 5000) -> list[int]:
    """Payload bytes of the synthetic driver's packets (mono, 128x128), in play order."""
    from hsnn_perception.core.events.codecs import encode_packet
    from hsnn_perception.core.events.synthetic import SyntheticGestures
    from hsnn_perception.core.sources.streams import synthetic_packets

    gen = SyntheticGestures(height=128, width=128, seed=seed)
    return [
        len(encode_packet(p.events, "mono", 128, 128)[1])
        for p in synthetic_packets(gen, packet_us, samples)
    ]


def model_shapes() -> dict[str, Any]:
    from hsnn_perception.core.hybrid.bundle import ModelBundle, default_bundle_path

    b = ModelBundle.load(default_bundle_path())
    return {
        "spikes": [b.timesteps, *b.feature_shape],
        "tensors": list(b.ann_input_shape),
        "tensor_name": b.ann_input_name,
        "classes": b.num_classes,
    }


# ---- the bare pair (run as a child process: --bare pub|sub|both) ----
def bare_main(
    role: str,
    namespace: str,
    out: str,
    sizes_path: str,
    period_s: float,
    kind: str,
    phase_locked: bool = False,
) -> int:
    import numpy as np
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node

    from hsnn_perception.msg import Classification, EventPacket, TensorList
    from hsnn_perception.nodes.base import reliable_qos, sensor_qos
    from hsnn_perception.nodes.conversions import make_tensor_list, ns_to_time

    # The pipeline's QoS, publisher and subscriber side (driver qos_depth 200, SNN node 500).
    qos = {
        "events": (sensor_qos(200), sensor_qos(500)),
        "spikes": (reliable_qos(20), reliable_qos(20)),
        "tensors": (reliable_qos(20), reliable_qos(20)),
        "classification": (reliable_qos(50), reliable_qos(50)),
    }
    types = {
        "events": EventPacket,
        "spikes": TensorList,
        "tensors": TensorList,
        "classification": Classification,
    }
    rclpy.init()
    nodes = []
    latencies: dict[str, list[int]] = defaultdict(list)
    stop = []
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    if role in ("pub", "both"):
        sizes = json.loads(Path(sizes_path).read_text())
        pub_node = Node("bare_pub", namespace=namespace)
        pubs = {k: pub_node.create_publisher(types[k], f"bare_{kind}/{k}", qos[k][0]) for k in HOPS}
        spikes = make_tensor_list(1, 0, "", {"spikes": np.zeros(sizes["spikes"], np.uint8)})
        tensors = make_tensor_list(
            1, 0, "", {sizes["tensor_name"]: np.zeros(sizes["tensors"], np.float32)}
        )
        classification = Classification(
            label="x" * 8, scores=[0.1] * int(sizes["classes"]), window_id=1
        )
        payloads = [bytes(n) for n in sizes["events"]]
        # Kinds in turn, one per tick; events as often as the other three together (the pipeline
        # sends far more of them).
        order = ["events", "spikes", "events", "tensors", "events", "classification"]
        if phase_locked:  # spikes and tensors are sent when the pipeline sends its own
            order = ["events", "classification"]
        state = {"tick": 0, "seq": 0, "ready": 0.0}

        def tick() -> None:
            # Not before every bare reader has matched (and a moment more): a reliable message
            # sent earlier would wait for the match and count as a slow hop.
            if not state["ready"]:
                if all(p.get_subscription_count() for p in pubs.values()):
                    state["ready"] = time.monotonic() + 0.5
                return
            if time.monotonic() < state["ready"]:
                return
            kind = order[state["tick"] % len(order)]
            state["tick"] += 1
            if kind == "events":
                msg = EventPacket(encoding="mono", width=128, height=128, seq=state["seq"])
                msg.events = payloads[state["seq"] % len(payloads)]
                state["seq"] += 1
            else:
                msg = {"spikes": spikes, "tensors": tensors, "classification": classification}[kind]
            msg.header.stamp = ns_to_time(time.time_ns())
            pubs[kind].publish(msg)

        pub_node.create_timer(period_s, tick)
        if phase_locked:
            from hsnn_perception.msg import EnergyReport

            # The SNN's report follows its spikes, the bridge's its tensors: a bare message of
            # the same kind leaves at that moment, when the pipeline is busiest.
            def on_report(report: Any) -> None:
                kind = {"snn": "spikes", "bridge": "tensors"}.get(report.stage)
                if kind is not None and state["ready"] and time.monotonic() >= state["ready"]:
                    msg = spikes if kind == "spikes" else tensors
                    msg.header.stamp = ns_to_time(time.time_ns())
                    pubs[kind].publish(msg)

            pub_node.create_subscription(EnergyReport, "energy", on_report, reliable_qos(100))
        nodes.append(pub_node)
    if role in ("sub", "both"):
        sub_node = Node("bare_sub", namespace=namespace)

        def receiver(kind: str) -> Any:
            def on_message(msg: Any) -> None:
                now = time.time_ns()
                s = msg.header.stamp
                latencies[kind].append(now - (s.sec * 1_000_000_000 + s.nanosec))

            return on_message

        for k in HOPS:
            sub_node.create_subscription(types[k], f"bare_{kind}/{k}", receiver(k), qos[k][1])
        nodes.append(sub_node)
    if kind == "events":
        from rclpy.experimental import EventsExecutor

        executor = EventsExecutor()
    else:
        executor = SingleThreadedExecutor()
    for node in nodes:
        executor.add_node(node)
    while not stop and rclpy.ok():
        executor.spin_once(timeout_sec=0.1)
    if out:
        Path(out).write_text(json.dumps(latencies))
    executor.shutdown()
    for node in nodes:
        node.destroy_node()
    rclpy.try_shutdown()
    return 0


def start_bare(
    mode: str, namespace: str, work: Path, sizes: Path, period_ms: float, phase: bool
) -> list:
    """The bare pairs' processes, one pair per executor (rclpy's default SingleThreadedExecutor,
    and the EventsExecutor the nodes use): two processes each beside the separate-process
    pipeline, one each beside the composed one. Each pair sends at half the rate."""
    procs = []
    for kind in BARE_EXECUTORS:
        cmd = [sys.executable, __file__, "--namespace", namespace, "--sizes", str(sizes)]
        cmd += ["--bare-period-ms", str(period_ms * len(BARE_EXECUTORS)), "--executor", kind]
        cmd += ["--bare-phase-locked"] if phase else []
        out = str(work / f"bare_{kind}.json")
        roles = [("both", out)] if mode == "composed" else [("sub", out), ("pub", "")]
        procs += [
            subprocess.Popen([*cmd, "--bare", role, "--out", path], stdout=subprocess.DEVNULL)
            for role, path in roles
        ]
    return procs


# ---- one run of the pipeline ----
def run_once(
    mode: str,
    samples: int,
    seed: int,
    work: Path,
    sizes: Path,
    period_ms: float,
    phase: bool,
    executor_kind: str = "single",
) -> dict:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node

    from hsnn_perception.graph import pipeline
    from hsnn_perception.launcher import ProcessGroup
    from hsnn_perception.msg import Classification, EnergyReport
    from hsnn_perception.nodes.base import reliable_qos
    from hsnn_perception.nodes.conversions import time_to_us

    trace_dir = work / "trace"
    trace_dir.mkdir(parents=True, exist_ok=True)
    ns = f"hops{random.randint(0, 10**6)}"
    specs = pipeline(source="synthetic", num_samples=samples, seed=seed, speed=1.0)
    arrivals: dict[int, int] = {}
    compute: dict[str, dict[int, float]] = defaultdict(dict)
    rclpy.init()
    node = Node("hops_probe", namespace=ns)

    def on_classification(msg: Classification) -> None:
        arrivals[time_to_us(msg.window_stamp)] = time.time_ns()

    def on_energy(msg: EnergyReport) -> None:
        compute[msg.stage][time_to_us(msg.window_stamp)] = float(msg.latency_s)

    node.create_subscription(Classification, "classification", on_classification, reliable_qos(50))
    node.create_subscription(EnergyReport, "energy", on_energy, reliable_qos(100))
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    bare = start_bare(mode, ns, work, sizes, period_ms, phase)
    load = os.getloadavg()[0]
    group = ProcessGroup(
        specs,
        namespace=ns,
        env={"HSNN_HOP_TRACE": str(trace_dir), "HSNN_EXECUTOR": executor_kind},
        log_dir=work,
        composed=mode == "composed",
    )
    try:
        with group:
            deadline = time.monotonic() + samples * 0.16 + 90
            seen, last = 0, time.monotonic()
            while time.monotonic() < deadline and len(arrivals) < samples:
                executor.spin_once(timeout_sec=0.05)
                if len(arrivals) > seen:
                    seen, last = len(arrivals), time.monotonic()
                elif seen and time.monotonic() - last > 10:
                    break  # nothing new for 10 s: some windows did not make it
            end = time.monotonic() + 1.0
            while time.monotonic() < end:  # the last energy reports
                executor.spin_once(timeout_sec=0.05)
    finally:
        for proc in bare:
            proc.send_signal(signal.SIGINT)
        for proc in bare:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    load = max(load, os.getloadavg()[0])
    bare = {}
    for kind in BARE_EXECUTORS:
        path = work / f"bare_{kind}.json"
        bare[kind] = json.loads(path.read_text()) if path.exists() else {}
    return analyse(trace_dir, arrivals, compute, bare, load)


def read_trace(trace_dir: Path) -> dict[tuple[str, str], list[tuple[int, int, int]]]:
    """(node, point) -> [(key, t_ns, extra)]."""
    points: dict[tuple[str, str], list[tuple[int, int, int]]] = defaultdict(list)
    for path in trace_dir.glob("trace-*.txt"):
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 5:
                points[(parts[0], parts[1])].append((int(parts[2]), int(parts[3]), int(parts[4])))
    return points


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q * (len(values) - 1))))]


def analyse(trace_dir: Path, arrivals: dict, compute: dict, bare: dict, load: float) -> dict:
    tr = read_trace(trace_dir)

    def by_key(node: str, point: str) -> dict[int, int]:
        return {k: t for k, t, _ in tr.get((node, point), [])}

    ms = 1e-6
    ours: dict[str, list[float]] = {}
    parts: dict[str, dict[str, list[float]]] = {}
    events_in = sorted(tr.get((SNN, "in:events"), []), key=lambda r: r[1])
    events_done = {k: t for k, t, _ in tr.get((SNN, "done:events"), [])}
    ours["events"] = [(t - stamp) * ms for _, t, stamp in events_in]
    chain = [
        ("spikes", SNN, BRIDGE, "snn/spikes"),
        ("tensors", BRIDGE, CLASSIFIER, "tensors"),
    ]
    for hop, up, down, topic in chain:
        out, pub = by_key(up, "out"), by_key(up, "pub")
        entered, ready = by_key(down, f"in:{topic}"), by_key(down, "ready")
        keys = sorted(set(out) & set(ready) & set(pub) & set(entered))
        ours[hop] = [(ready[k] - out[k]) * ms for k in keys]
        parts[hop] = {
            "build+publish": [(pub[k] - out[k]) * ms for k in keys],
            "publish->callback": [(entered[k] - pub[k]) * ms for k in keys],
            "convert+check": [(ready[k] - entered[k]) * ms for k in keys],
        }
    c_out, c_pub = by_key(CLASSIFIER, "out"), by_key(CLASSIFIER, "pub")
    keys = sorted(set(c_out) & set(arrivals))
    ours["classification"] = [(arrivals[k] - c_out[k]) * ms for k in keys]
    parts["classification"] = {
        "build+publish": [(c_pub[k] - c_out[k]) * ms for k in keys if k in c_pub],
        "publish->callback": [(arrivals[k] - c_pub[k]) * ms for k in keys if k in c_pub],
    }
    # Post-close, per window: the closing packet is the last one whose callback began before the
    # SNN's thread took the window up (the window is queued at the end of that callback).
    starts = by_key(SNN, "start")
    post, floor_compute, handoff = [], [], []
    entry_times = [t for _, t, _ in events_in]
    import bisect

    for key, started in starts.items():
        if key not in arrivals:
            continue
        i = bisect.bisect_left(entry_times, started) - 1
        if i < 0:
            continue
        seq, t_in, stamp = events_in[i]
        done = events_done.get(seq)
        # A window flushed after an idle spell (the last one) has no closing packet.
        if done is None or started - done > 20e6:
            continue
        stages = [compute.get(s, {}).get(key) for s in ("snn", "bridge", "classifier")]
        if any(v is None for v in stages):
            continue
        post.append((arrivals[key] - stamp) * ms)
        floor_compute.append((done - t_in) * ms + sum(stages) * 1e3)
        handoff.append((started - done) * ms)
    # The goal's floor: rclpy's default executor; the EventsExecutor's for reference.
    bare_ms = {k: [v * ms for v in bare.get("single", {}).get(k, [])] for k in HOPS}
    events_ms = {k: [v * ms for v in bare.get("events", {}).get(k, [])] for k in HOPS}
    result: dict[str, Any] = {"load": load, "windows": len(post), "hops": {}, "parts": {}}
    for hop in HOPS:
        result["hops"][hop] = {
            "ours_p50": pct(ours.get(hop, []), 0.5),
            "ours_p95": pct(ours.get(hop, []), 0.95),
            "bare_p50": pct(bare_ms[hop], 0.5),
            "bare_p95": pct(bare_ms[hop], 0.95),
            "bare_events_p50": pct(events_ms[hop], 0.5),
            "bare_events_p95": pct(events_ms[hop], 0.95),
            "n_ours": len(ours.get(hop, [])),
            "n_bare": len(bare_ms[hop]),
        }
        result["parts"][hop] = {k: pct(v, 0.5) for k, v in parts.get(hop, {}).items()}
    for q, name in ((0.5, "p50"), (0.95, "p95")):
        floor_hops = sum(pct(bare_ms[h], q) for h in HOPS)
        result[f"post_{name}"] = pct(post, q)
        result[f"compute_{name}"] = pct(floor_compute, q)
        result[f"floor_{name}"] = floor_hops + pct(floor_compute, q)
    result["handoff_p50"] = pct(handoff, 0.5)
    return result


def median_of(runs: list[dict], path: tuple) -> float:
    values = []
    for r in runs:
        v: Any = r
        for p in path:
            v = v[p]
        values.append(v)
    return statistics.median(values)


def report(mode: str, runs: list[dict]) -> None:
    loads = ", ".join(f"{r['load']:.1f}" for r in runs)
    print(f"\n== {mode}: {len(runs)} runs, load average {loads}; medians over the runs (ms)")
    print("bare: rclpy's SingleThreadedExecutor (the goal's floor); bare-ev: its EventsExecutor")
    print(
        f"{'hop':>15} {'ours p50':>8} {'bare':>6} {'ratio':>5} {'bare-ev':>7} {'ratio':>5} "
        f"{'ours p95':>8} {'bare':>6} {'ratio':>5}   where ours goes (p50)"
    )
    for hop in HOPS:
        o50, b50, e50, o95, b95 = (
            median_of(runs, ("hops", hop, key))
            for key in ("ours_p50", "bare_p50", "bare_events_p50", "ours_p95", "bare_p95")
        )
        where = ", ".join(
            f"{k} {median_of(runs, ('parts', hop, k)):.2f}" for k in runs[0]["parts"][hop]
        )
        print(
            f"{hop:>15} {o50:8.2f} {b50:6.2f} {o50 / b50:5.2f} {e50:7.2f} {o50 / e50:5.2f} "
            f"{o95:8.2f} {b95:6.2f} {o95 / b95:5.2f}   {where}"
        )
    for name in ("p50", "p95"):
        post = median_of(runs, (f"post_{name}",))
        floor = median_of(runs, (f"floor_{name}",))
        comp = median_of(runs, (f"compute_{name}",))
        print(
            f"post-close {name}: {post:.2f} ms; floor {floor:.2f} ms (bare hops "
            f"{floor - comp:.2f} + compute {comp:.2f}); ratio {post / floor:.2f}"
        )
    print(
        f"SNN node: closing packet done -> its thread takes the window up, p50 "
        f"{median_of(runs, ('handoff_p50',)):.2f} ms; windows per run "
        f"{', '.join(str(r['windows']) for r in runs)}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--samples", type=int, default=30, help="gestures (= windows) per run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--modes", nargs="+", default=["separate", "composed"])
    ap.add_argument(
        "--executors",
        nargs="+",
        default=[os.environ.get("HSNN_EXECUTOR", "single")],
        choices=["single", "events"],
        help="the executor the pipeline's nodes spin (HSNN_EXECUTOR), each run in turn: single "
        "(the nodes' default SingleThreadedExecutor), events (rclpy's EventsExecutor, opt-in); "
        "default: HSNN_EXECUTOR's, else single",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bare-period-ms", type=float, default=20.0)
    ap.add_argument(
        "--bare-phase-locked",
        action="store_true",
        help="send the bare spikes and tensors when the SNN and the bridge report a window (the "
        "pipeline's busiest moment) instead of at even intervals",
    )
    ap.add_argument("--json", default="", help="write every run's figures here")
    # The bare pair's child processes.
    ap.add_argument("--bare", choices=["pub", "sub", "both"], help=argparse.SUPPRESS)
    ap.add_argument("--namespace", default="", help=argparse.SUPPRESS)
    ap.add_argument("--out", default="", help=argparse.SUPPRESS)
    ap.add_argument("--sizes", default="", help=argparse.SUPPRESS)
    ap.add_argument("--executor", default="single", help=argparse.SUPPRESS)
    opts = ap.parse_args(argv)
    if opts.bare:
        period_s = opts.bare_period_ms / 1e3
        return bare_main(
            opts.bare,
            opts.namespace,
            opts.out,
            opts.sizes,
            period_s,
            opts.executor,
            opts.bare_phase_locked,
        )
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"hops: {os.cpu_count()} CPUs; {uptime}")
    print(f"command: python bench/hops.py {' '.join(argv if argv is not None else sys.argv[1:])}")
    results: dict[str, list[dict]] = defaultdict(list)
    with tempfile.TemporaryDirectory(prefix="hsnn-hops-") as tmp:
        sizes = Path(tmp) / "sizes.json"
        sizes.write_text(
            json.dumps({"events": event_payload_sizes(opts.samples, opts.seed), **model_shapes()})
        )
        # Interleaved: each repeat runs every mode under every executor.
        variants = [(mode, kind) for mode in opts.modes for kind in opts.executors]

        def label(mode: str, kind: str) -> str:
            return mode if len(opts.executors) == 1 else f"{mode}, {kind} executor"

        for i in range(opts.repeats):
            for mode, kind in variants:
                work = Path(tmp) / f"{mode}-{kind}{i}"
                work.mkdir()
                result = run_once(
                    mode,
                    opts.samples,
                    opts.seed,
                    work,
                    sizes,
                    opts.bare_period_ms,
                    opts.bare_phase_locked,
                    kind,
                )
                results[label(mode, kind)].append(result)
                print(
                    f"run {i + 1} {label(mode, kind)}: load {result['load']:.1f}, "
                    f"{result['windows']} windows, post-close p95 {result['post_p95']:.1f} ms "
                    f"(floor {result['floor_p95']:.1f})",
                    flush=True,
                )
    for mode, kind in variants:
        if results[label(mode, kind)]:
            report(label(mode, kind), results[label(mode, kind)])
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"\nafter: {uptime}")
    if opts.json:
        Path(opts.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
