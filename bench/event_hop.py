"""Driver -> SNN node hop at camera-like event rates, over real DDS, one process per node.

Writes a bag of uniformly random events at each rate (128x128, 1 ms packets), plays it in real time
through the driver node (source rosbag) into the SNN feature node (native runtime, shipped model),
and counts what arrived: packets and events the driver published and the SNN node received, and
the windows it produced against the windows the events span. Prints one row per rate.

    python bench/event_hop.py --rates 1e6 5e6 --seconds 2
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(101, 200)))


def make_bag(path: Path, rate: float, seconds: float, size: int, packet_us: int) -> int:
    import numpy as np

    from hsnn_perception.core.events.codecs import make_events
    from hsnn_perception.core.io.bag.write import packetize, write_event_bag

    rng = np.random.default_rng(0)
    n = int(rate * seconds)
    t = np.sort(rng.integers(0, int(seconds * 1e6), n))
    events = make_events(
        t, rng.integers(0, size, n), rng.integers(0, size, n), rng.integers(0, 2, n)
    )
    write_event_bag(path, packetize(events, packet_us, size, size))
    return n


def run(rate: float, seconds: float, size: int, packet_us: int, workdir: Path) -> dict:
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node

    from hsnn_perception.core.hybrid.bundle import ModelBundle, default_bundle_path
    from hsnn_perception.graph import pipeline, qualified_name
    from hsnn_perception.launcher import ProcessGroup
    from hsnn_perception.msg import TensorList
    from hsnn_perception.nodes.base import reliable_qos

    bag = workdir / f"hop_{int(rate)}.mcap"
    n_events = make_bag(bag, rate, seconds, size, packet_us)
    bundle = ModelBundle.load(default_bundle_path())
    expected_windows = int(seconds * 1e6) // bundle.window_us  # the last one ends with the stream
    ns = f"hop{random.randint(0, 10**6)}"
    specs = pipeline(source="rosbag", source_path=str(bag), speed=1.0, stages=("driver", "snn"))
    specs[0] = specs[0].with_parameters(wait_for_subscribers=1, packet_us=packet_us)
    rclpy.init()
    node = Node("hop_probe", namespace=ns)
    windows: list[int] = []
    diag: dict[str, dict[str, str]] = {}
    node.create_subscription(
        TensorList, "snn/spikes", lambda m: windows.append(1), reliable_qos(100)
    )

    def on_diag(msg: DiagnosticArray) -> None:
        for st in msg.status:
            diag[st.hardware_id] = {kv.key: kv.value for kv in st.values}

    node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, reliable_qos(50))
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    drv, snn = qualified_name(ns, "event_driver"), qualified_name(ns, "snn_feature")
    with ProcessGroup(specs, namespace=ns, log_dir=workdir):
        deadline = time.monotonic() + seconds * 4 + 60
        while time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
            if (
                diag.get(drv, {}).get("source_finished") == "True"
                and len(windows) >= expected_windows
            ):
                break
        end = time.monotonic() + 3
        while time.monotonic() < end:  # last diagnostics
            executor.spin_once(timeout_sec=0.1)
    node.destroy_node()
    rclpy.try_shutdown()
    d, s = diag.get(drv, {}), diag.get(snn, {})
    return {
        "rate_ev_s": rate,
        "events": n_events,
        "packets_published": int(d.get("published.packets", 0)),
        "packets_received": int(s.get("received.packets", 0)),
        "events_received": int(s.get("received.events", 0)),
        "windows": len(windows),
        "windows_expected": expected_windows,
        "late_events": int(s.get("late_events", 0)),
        "skipped_windows": int(s.get("skipped_windows", 0)),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rates", type=float, nargs="+", default=[1e6, 5e6])
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--packet-us", type=int, default=1000)
    opts = ap.parse_args(argv)
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    header = (
        "rate Mev/s",
        "events",
        "pkts pub",
        "pkts recv",
        "events recv",
        "windows",
        "expected",
        "late ev",
        "skipped win",
    )
    print(" | ".join(header))
    with tempfile.TemporaryDirectory() as tmp:
        for rate in opts.rates:
            r = run(rate, opts.seconds, opts.size, opts.packet_us, Path(tmp))
            print(
                " | ".join(
                    str(v)
                    for v in (
                        f"{rate / 1e6:g}",
                        r["events"],
                        r["packets_published"],
                        r["packets_received"],
                        r["events_received"],
                        r["windows"],
                        r["windows_expected"],
                        r["late_events"],
                        r["skipped_windows"],
                    )
                ),
                flush=True,
            )
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
