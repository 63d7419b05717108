"""Fuzz of the running nodes over real DDS: random and malformed messages on every input topic.

Starts the SNN node, the accumulator bridge, the classifier and the energy aggregator (one process
each, shipped model), classifies a good event stream (the baseline), then sends ``--messages``
messages split evenly over events, snn/spikes, tensors and energy: random bytes, valid messages
with one field broken (window ids missing, negative, float, 2^64-1; NaN, negative or huge spikes;
wrong shapes, dtypes, strides, ranks; stamps past a second; time_base 2^64-1; EVT3 garbage; packets
over the event cap; unknown energy sources, "unavailable" with an energy, op counts summing past
2^64). Then the same good stream again, far later in sensor time. Prints per node: alive or
not, RSS before and after, and the rejection counters from /diagnostics; then whether the
predictions on the good stream are the same as before the fuzz.

    python bench/fuzz_dds.py --messages 10000

test/nodes/test_fuzz_dds.py runs the same with a few hundred messages per topic.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(101, 200)))

import numpy as np  # noqa: E402

NODES = ("snn_feature", "accumulator_bridge", "classifier", "energy_aggregator")
TOPICS = ("events", "snn/spikes", "tensors", "energy")
U64 = (1 << 64) - 1
BASELINE_WINDOW = 100  # sensor time of the good streams, in windows; the fuzz stays clear
AFTER_WINDOW = 10_000


def good_packets(bundle: Any, n_windows: int, first: int, seq0: int) -> list[Any]:
    """Seeded random events filling windows first .. first + n_windows (the last stays pending):
    the same events, shifted by whole windows, whatever ``first``."""
    from hsnn_perception.core.events.codecs import EVENT_DTYPE, encode_packet
    from hsnn_perception.msg import EventPacket

    rng = np.random.default_rng(0)
    packets = []
    for i, k in enumerate(range(first, first + n_windows + 1)):
        events = np.zeros(3000, dtype=EVENT_DTYPE)
        events["t"] = np.sort(rng.integers(k * bundle.window_us, (k + 1) * bundle.window_us, 3000))
        events["x"] = rng.integers(0, bundle.sensor_width, 3000)
        events["y"] = rng.integers(0, bundle.sensor_height, 3000)
        events["p"] = rng.integers(0, 2, 3000)
        time_base, payload = encode_packet(
            events, "mono", bundle.sensor_width, bundle.sensor_height
        )
        msg = EventPacket(
            height=bundle.sensor_height,
            width=bundle.sensor_width,
            seq=seq0 + i,
            time_base=time_base,
            encoding="mono",
        )
        msg.events = payload
        packets.append(msg)
    return packets


# ------------------------------------------------------------------------------ fuzz messages


def pick(rng: np.random.Generator, options: list[Any]) -> Any:
    """One of ``options`` as it is (rng.choice would turn 2^64-1 into a float)."""
    return options[int(rng.integers(len(options)))]


def fuzz_event(rng: np.random.Generator, bundle: Any, i: int) -> Any:
    from hsnn_perception.core.events.codecs import MAX_PACKET_EVENTS
    from hsnn_perception.core.events.evt3_format import EVT3_VECT_12
    from hsnn_perception.msg import EventPacket

    msg = EventPacket(height=bundle.sensor_height, width=bundle.sensor_width)
    msg.seq = int(pick(rng, [i, rng.integers(0, 1 << 62), U64, 0]))
    msg.encoding = str(pick(rng, ["mono", "evt3", "libcaer", "evt2", "", "MONO"]))
    # Times: extremes, random 64-bit, or within the first seconds (clear of the good streams).
    msg.time_base = int(
        pick(rng, [0, U64, int(rng.integers(0, 1 << 63)), int(rng.integers(0, 10**10))])
    )
    msg.is_bigendian = bool(rng.integers(0, 2))
    mode = int(rng.integers(0, 8))
    if mode == 0:  # geometry the model cannot take, or absurd
        msg.height, msg.width = int(rng.integers(0, 1 << 32)), int(rng.integers(0, 1 << 32))
    if i % 50 == 7:  # over the event cap (EVT3 vectors: 12 events a word), refused undecoded
        msg.encoding = "evt3"
        msg.events = ((EVT3_VECT_12 << 12) | 0xFFF).to_bytes(2, "little") * (
            MAX_PACKET_EVENTS // 12 + 1
        )
        return msg
    n = int(rng.integers(0, 3000))
    if mode == 2:  # EVT3 words of random codes
        msg.encoding = "evt3"
        msg.events = rng.integers(0, 1 << 16, n, dtype=np.uint16).astype("<u2").tobytes()
    else:
        msg.events = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
    return msg


def _spikes_list(rng: np.random.Generator, name: str, array: np.ndarray) -> Any:
    from hsnn_perception.nodes.conversions import make_tensor_list

    window_id = int(rng.integers(0, 1 << 20))
    # Stamps far from the good streams' (seconds 10^6 on).
    start_us = int(rng.integers(10**12, 2 * 10**15))
    return make_tensor_list(window_id, start_us, "fuzz", {name: array})


def fuzz_tensor_list(rng: np.random.Generator, name: str, shape: tuple[int, ...]) -> Any:
    """A valid-looking TensorList for tensor ``name`` of ``shape`` with one thing broken."""
    from hsnn_perception.msg import Tensor, TensorShape

    good = (rng.random(shape) < 0.3).astype(np.uint8)
    mode = int(rng.integers(0, 16))
    if mode == 0:
        return _spikes_list(rng, name, np.full(shape, np.nan, np.float32))
    if mode == 1:
        return _spikes_list(rng, name, -good.astype(np.int64) - 1)
    if mode == 2:
        return _spikes_list(rng, name, np.full(shape, 1e300))
    if mode == 3:
        return _spikes_list(rng, name, np.full(shape, np.inf, np.float32))
    if mode == 4:
        return _spikes_list(rng, name, good.reshape(-1)[: int(rng.integers(0, good.size))])
    msg = _spikes_list(rng, name, good)
    tensor, window = msg.tensors[0], msg.tensors[-1]
    if mode == 5:
        msg.tensors.pop()  # no window id
    elif mode == 6:
        window.data = np.array([-int(rng.integers(1, 1 << 40))], np.int64).tobytes()
    elif mode == 7:
        window.data, window.data_type = np.array([U64], np.uint64).tobytes(), 8
    elif mode == 8:
        window.data, window.data_type = np.array([np.inf]).tobytes(), 10
    elif mode == 9:
        tensor.data = bytes(len(tensor.data) // 2)
    elif mode == 10:
        tensor.shape.rank = int(rng.integers(0, 256))  # uint8 on the wire: any, mismatched
    elif mode == 11:
        tensor.strides = [int(s) for s in rng.integers(0, 1 << 62, len(shape))]
    elif mode == 12:
        tensor.data_type = int(rng.integers(-(1 << 31), 1 << 31))
    elif mode == 13:
        msg.header.stamp.nanosec = int(rng.integers(10**9, 1 << 32))
    elif mode == 14:
        msg.tensors = [msg.tensors[0]] * int(rng.integers(2, 200)) + [window]
    else:
        # uint32 on the wire (Isaac's TensorShape): no negative dimension can arrive.
        dims = [int(d) for d in rng.integers(0, 1 << 32, int(rng.integers(0, 6)))]
        msg.tensors.insert(
            0,
            Tensor(
                name=str(pick(rng, ["", name, "window_id", "x"])),
                shape=TensorShape(rank=len(dims), dims=dims),
                data_type=int(rng.integers(0, 12)),
                data=rng.integers(0, 256, int(rng.integers(0, 64)), dtype=np.uint8).tobytes(),
            ),
        )
    return msg


def fuzz_report(rng: np.random.Generator, i: int) -> Any:
    from hsnn_perception.msg import EnergyReport

    msg = EnergyReport()
    msg.window_id = int(pick(rng, [i, int(rng.integers(0, 1 << 63)), U64]))
    # A few stamps, so that reports meet in one window and their op counts add up past 2^64.
    msg.window_stamp.sec = int(
        pick(rng, [10**6, 10**6 + 1, int(rng.integers(-(1 << 31), 1 << 31))])
    )
    msg.window_stamp.nanosec = int(pick(rng, [0, int(rng.integers(0, 1 << 32))]))
    msg.stage = str(pick(rng, ["snn", "bridge", "classifier", "driver", "total", "x" * 200]))
    msg.source = str(pick(rng, ["measured", "modelled", "unavailable", "guessed", ""]))
    for key in ("energy_j", "power_w", "latency_s", "device_latency_s"):
        setattr(msg, key, float(pick(rng, [np.nan, np.inf, -np.inf, -1.0, 1e-6, 1e308])))
    for key in ("synaptic_ops", "neuron_updates", "spikes", "macs"):
        setattr(msg, key, int(pick(rng, [0, U64, U64 - 1, int(rng.integers(0, 1 << 62))])))
    return msg


# ------------------------------------------------------------------------------ the run


def rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` and its children (a node may run under a wrapper)."""
    total = 0.0
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
        except OSError:
            pass
    return total


class Probe:
    def __init__(self, namespace: str) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor

        from hsnn_perception.graph import qualified_name
        from hsnn_perception.msg import Classification, EnergyReport, EventPacket, TensorList
        from hsnn_perception.nodes.base import reliable_qos, sensor_qos

        self.namespace = namespace
        self._qualified = qualified_name
        self.node = rclpy.create_node(f"fuzz_probe_{random.randint(0, 10**6)}", namespace=namespace)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.classifications: list[Any] = []
        self.diagnostics: dict[str, dict[str, str]] = {}
        self.node.create_subscription(
            Classification, "classification", self.classifications.append, reliable_qos(200)
        )
        self.node.create_subscription(
            DiagnosticArray, "/diagnostics", self._on_diag, reliable_qos(50)
        )
        self.pubs = {
            "events": self.node.create_publisher(EventPacket, "events", sensor_qos(100)),
            "snn/spikes": self.node.create_publisher(TensorList, "snn/spikes", reliable_qos(50)),
            "tensors": self.node.create_publisher(TensorList, "tensors", reliable_qos(50)),
            "energy": self.node.create_publisher(EnergyReport, "energy", reliable_qos(50)),
        }

    def _on_diag(self, msg: Any) -> None:
        for status in msg.status:
            values = {kv.key: kv.value for kv in status.values}
            values["message"] = status.message
            self.diagnostics[status.hardware_id] = values

    def diag(self, node: str) -> dict[str, str]:
        return self.diagnostics.get(self._qualified(self.namespace, node), {})

    def spin_until(self, predicate: Any, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.02)
            if predicate():
                return True
        return False

    def classify(self, packets: list[Any], windows: list[int], window_us: int) -> list[int] | None:
        """Class ids of the windows starting at ``windows`` (indices) once ``packets`` are sent."""
        want = {k * window_us for k in windows}
        got: dict[int, int] = {}

        def done() -> bool:
            for c in self.classifications:
                start = c.window_stamp.sec * 1_000_000 + c.window_stamp.nanosec // 1000
                if start in want:
                    got[start] = c.class_id
            self.classifications.clear()
            return len(got) == len(want)

        for msg in packets:
            self.pubs["events"].publish(msg)
            self.spin_until(lambda: False, 0.05)
        if not self.spin_until(done, 60):
            return None
        return [got[k * window_us] for k in windows]


def run(messages_per_topic: int, log_dir: Path, seed: int = 0, log: Any = None) -> dict[str, Any]:
    """Baseline, fuzz, good stream again; returns per-node survival, RSS and counters."""
    import rclpy

    from hsnn_perception.core.hybrid.bundle import ModelBundle, default_bundle_path
    from hsnn_perception.graph import STAGE_NODES, pipeline
    from hsnn_perception.launcher import ProcessGroup

    say = log or (lambda _m: None)
    bundle = ModelBundle.load(default_bundle_path())
    namespace = f"fuzz_{random.randint(0, 10**6)}"
    specs = pipeline(
        stages=[s for s, n in STAGE_NODES.items() if n in NODES],
        overrides={n: {"diagnostics_period_s": 0.25} for n in NODES},
    )
    rng = np.random.default_rng(seed)
    result: dict[str, Any] = {"messages_per_topic": messages_per_topic}
    rclpy.init()
    try:
        with ProcessGroup(specs, namespace=namespace, log_dir=log_dir).start() as group:
            probe = Probe(namespace)
            for pub in probe.pubs.values():
                if not probe.spin_until(lambda p=pub: p.get_subscription_count() > 0, 60):
                    raise RuntimeError(f"no subscriber on {pub.topic_name}")
            w = bundle.window_us
            for attempt in range(6):  # warm-up until every connection is matched
                for msg in good_packets(bundle, 3, 10 * attempt, 10 * attempt):
                    probe.pubs["events"].publish(msg)
                    probe.spin_until(lambda: False, 0.05)
                if probe.spin_until(lambda: bool(probe.classifications), 15):
                    break
            windows = [BASELINE_WINDOW + j for j in range(4)]
            result["baseline"] = probe.classify(
                good_packets(bundle, 4, BASELINE_WINDOW, BASELINE_WINDOW), windows, w
            )
            say(f"baseline predictions {result['baseline']}")
            pids = {name: proc.pid for name, proc in group.procs.items()}
            result["rss_before_mb"] = {n: rss_mb(pids[n]) for n in NODES}
            started = time.monotonic()
            spikes_shape = (bundle.timesteps, *bundle.feature_shape)
            for i in range(messages_per_topic):
                probe.pubs["events"].publish(fuzz_event(rng, bundle, i))
                probe.pubs["snn/spikes"].publish(fuzz_tensor_list(rng, "spikes", spikes_shape))
                probe.pubs["tensors"].publish(
                    fuzz_tensor_list(rng, bundle.ann_input_name, bundle.ann_input_shape)
                )
                probe.pubs["energy"].publish(fuzz_report(rng, i))
                probe.spin_until(lambda: False, 0.003)
                if i and i % 500 == 0:
                    say(f"{i * 4} messages sent")
            result["fuzz_s"] = time.monotonic() - started
            # Let the nodes drain their queues (the aggregator's timeout is 2 s).
            probe.spin_until(lambda: False, 4.0)
            probe.classifications.clear()
            windows = [AFTER_WINDOW + j for j in range(4)]
            result["after"] = probe.classify(
                good_packets(bundle, 4, AFTER_WINDOW, 50_000), windows, w
            )
            say(f"predictions after the fuzz {result['after']}")
            result["rss_after_mb"] = {n: rss_mb(pids[n]) for n in NODES}
            probe.diagnostics.clear()
            probe.spin_until(lambda: all(probe.diag(n) for n in NODES), 10)
            result["alive"] = {n: code is None for n, code in group.poll().items() if n in NODES}
            result["counters"] = {
                n: {
                    k: int(v)
                    for k, v in probe.diag(n).items()
                    if k.startswith(("errors", "lost.", "received.", "dropped."))
                    and not k.endswith("rate_hz")
                    and v.isdigit()
                }
                for n in NODES
            }
            result["logs"] = {n: group.log(n)[-3000:] for n in NODES}
            probe.node.destroy_node()
    finally:
        rclpy.try_shutdown()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10_000, help="in all, over 4 topics")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    per_topic = -(-args.messages // len(TOPICS))
    with tempfile.TemporaryDirectory() as tmp:
        r = run(per_topic, Path(tmp), args.seed, log=lambda m: print(m, flush=True))
    print(f"\n{per_topic * len(TOPICS)} messages ({per_topic} per topic) in {r['fuzz_s']:.1f} s\n")
    print("| node | alive | RSS before (MB) | RSS after (MB) | after/before | rejections |")
    print("|---|---|---:|---:|---:|---|")
    for n in NODES:
        before, after = r["rss_before_mb"][n], r["rss_after_mb"][n]
        errors = {k: v for k, v in sorted(r["counters"][n].items()) if k.startswith("errors.")}
        print(
            f"| {n} | {'yes' if r['alive'].get(n) else 'NO'} | {before:.0f} | {after:.0f} | "
            f"{after / before if before else float('nan'):.2f} | "
            + ", ".join(f"{k[7:]} {v}" for k, v in errors.items())
            + " |"
        )
    same = r["baseline"] is not None and r["baseline"] == r["after"]
    print(
        f"\npredictions on the good stream: before {r['baseline']}, after {r['after']} "
        f"({'same' if same else 'DIFFERENT'})"
    )


if __name__ == "__main__":
    main()
