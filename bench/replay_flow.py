"""DDS replay as fast as possible, with and without the driver's flow control, side by side.

Plays one labelled synthetic bag through the real nodes over DDS (one process per node, or
composed) at ``--speed 0``: once with flow control (the driver holds the bag back while
``flow_max_windows`` windows are unclassified, events sent reliably) and once without (best-effort
flood, as the driver did before). Optionally loads the host with busy processes, as a shared
robot computer is. Prints wall time, packets lost, accuracy against the offline evaluation of the
same bag, and how many windows' predictions differ from offline.

    python bench/replay_flow.py --samples 50 --hogs 3 --repeats 2
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(101, 200)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=50, help="synthetic gestures in the bag")
    parser.add_argument("--hogs", type=int, default=0, help="busy-loop processes loading the host")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--composed", action="store_true", help="all nodes in one process")
    parser.add_argument("--flow-windows", type=int, default=4, help="windows in flight (on)")
    args = parser.parse_args()

    from hsnn_perception.core.hybrid.bundle import default_bundle_path
    from hsnn_perception.core.io.bag.write import synthetic_to_bag
    from hsnn_perception.evaluation.offline import OfflineSettings, evaluate_offline
    from hsnn_perception.evaluation.report import summarize
    from hsnn_perception.tools.replay import ReplaySettings, offline_vs_dds, replay_dds

    bundle = default_bundle_path()
    with tempfile.TemporaryDirectory() as tmp:
        bag = Path(tmp) / "bag"
        synthetic_to_bag(bag, args.samples, seed=3, storage="mcap")
        offline = evaluate_offline(bag, bundle, OfflineSettings(progress=False))
        print(
            f"bag: {args.samples} synthetic samples; offline accuracy "
            f"{summarize(offline)['accuracy']:.3f}; host: {os.cpu_count()} cores, "
            f"{args.hogs} busy-loop processes; "
            + ("composed" if args.composed else "one process per node")
        )
        print(
            f"{'flow control':>22} {'wall s':>7} {'packets lost':>13} {'accuracy':>9} "
            f"{'differ from offline':>20}"
        )
        hogs = [
            subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.hogs)
        ]
        try:
            for _ in range(args.repeats):
                for flow in (args.flow_windows, 0):
                    started = time.monotonic()
                    result = replay_dds(
                        bag,
                        bundle,
                        speed=0,
                        composed=args.composed,
                        settings=ReplaySettings(flow_max_windows=flow),
                    )
                    wall = time.monotonic() - started
                    lost = result.settings.get("driver_published_packets", 0) - result.settings.get(
                        "snn_received_packets", 0
                    )
                    cmp = offline_vs_dds(offline, result)
                    differ = len(cmp["predictions_differ"]) + len(cmp["only_offline"])
                    label = f"{flow} windows, reliable" if flow else "off (best effort)"
                    accuracy = summarize(result)["accuracy"]
                    print(f"{label:>22} {wall:7.1f} {lost:13d} {accuracy:9.3f} {differ:20d}")
        finally:
            for hog in hogs:
                hog.kill()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
