"""What crosses the link between the paper's two hosts, per event window, and the hop latency of
snn/spikes across it, with snn/spikes dense and sparse, measured in one run.

Set-up (as root; test/launch/netns_hosts.py): two Linux network namespaces joined by a veth pair,
Fast DDS over UDPv4 only, discovery over the link. "Loihi host": `hsnn-launch pipeline.launch.py
stages:=driver,snn` playing a labelled synthetic bag in real time, plus a second accumulator
bridge (remapped outputs) and a probe, both local: the same hop on loopback, in the same run.
"Jetson host": `stages:=bridge,classifier,energy` and an operator's monitor (labels,
classifications, energy reports: the driver's and the SNN's reports cross for it and for the
aggregator).

Bytes and packets come from the veth's interface counters on the Loihi side (tx: towards the
Jetson host, rx: back), sampled every 10 ms, minus the idle rate measured for a few seconds after
the last window (same run, same processes). A window's share is the traffic between its SNN
report and the next one's. The snn/spikes size is the serialized (CDR) message the local probe
received. Hop: SNN node's report stamp (taken right after publishing snn/spikes) -> the bridge's
report stamp (after it decoded, accumulated and published); both namespaces share the host clock.
The SNN stamp is taken after the node has also computed the window's energy figure, so on a busy
host it can lag the publish by milliseconds (a negative hop); the difference veth - loopback of
the same window has no such lag.

    sudo python bench/two_hosts.py --samples 20 --encodings dense sparse
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "test" / "launch"))
os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(101, 200)))

from netns_hosts import TwoHosts, netns_unavailable, read_json  # noqa: E402

PROBE = str(ROOT / "test" / "launch" / "netns_hosts.py")
IDLE_S = 4.0


def wait_for(condition, timeout_s: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout_s:.0f} s for {what}")
        time.sleep(0.1)


class Sampler(threading.Thread):
    """The Loihi side's veth counters every 10 ms, with the host clock (ns)."""

    def __init__(self, hosts: TwoHosts) -> None:
        super().__init__(daemon=True)
        self.hosts = hosts
        self.samples: list[tuple[int, dict[str, int]]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            self.samples.append((time.time_ns(), self.hosts.counters("loihi")))
            time.sleep(0.01)

    def at(self, t_ns: int) -> dict[str, int]:
        """The last reading at or before ``t_ns``."""
        best = self.samples[0][1]
        for t, c in self.samples:
            if t > t_ns:
                break
            best = c
        return best


def delta(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    return {k: b[k] - a[k] for k in a}


def run_phase(bag: Path, windows: int, encoding: str, work: Path) -> dict:
    ns = f"twohosts_{random.randint(0, 10**6)}"
    params = work / f"{encoding}.yaml"
    params.write_text(f"/**/snn_feature:\n  ros__parameters:\n    spikes_encoding: {encoding}\n")
    log = work / f"{encoding}.log"
    out = log.open("w")
    with TwoHosts() as hosts:
        jetson_seen, loihi_seen = work / f"{encoding}_jetson.json", work / f"{encoding}_loihi.json"
        probe = [sys.executable, PROBE, "probe", "--namespace", ns, "--graph", "snn/spikes"]
        hosts.popen("jetson", [*probe, "--monitor", "--out", str(jetson_seen)], stdout=out)
        launch = ["hsnn-launch", "-n", "pipeline.launch.py", f"namespace:={ns}"]
        jetson = hosts.popen(
            "jetson",
            [*launch, "stages:=bridge,classifier,energy"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )

        def readers(seen: Path) -> int:
            return read_json(seen).get("graph", {}).get("snn/spikes", [0, 0])[1]

        wait_for(lambda: readers(jetson_seen) >= 1, 90, "the Jetson half")
        local = ["--energy", "energy", "loopback/energy", "--tensors", "snn/spikes"]
        hosts.popen("loihi", [*probe, *local, "--out", str(loihi_seen)], stdout=out)
        remaps = ["tensors:=loopback/tensors", "energy:=loopback/energy"]
        loopback_bridge = [sys.executable, "-m", "hsnn_bridge.accumulator_node", "--ros-args"]
        loopback_bridge += ["-r", f"__ns:=/{ns}", "-r", "__node:=accumulator_bridge_loopback"]
        loopback_bridge += [a for r in remaps for a in ("-r", r)]
        hosts.popen("loihi", loopback_bridge, stdout=out, stderr=subprocess.STDOUT)
        # The probe's own reader, the loopback bridge and the Jetson bridge across the link.
        wait_for(lambda: readers(loihi_seen) >= 3, 90, "the loopback bridge")
        sampler = Sampler(hosts)
        sampler.start()
        loihi = hosts.popen(
            "loihi",
            [*launch, "stages:=driver,snn", "source:=rosbag", f"source_path:={bag}"]
            + [f"params_file:={params}"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )

        def complete() -> int:
            return sum(1 for r in read_json(jetson_seen).get("classified", []) if r["total_source"])

        wait_for(lambda: complete() >= windows, 180, f"{windows} windows classified")
        idle_from = time.time_ns()
        time.sleep(IDLE_S)
        idle_to = time.time_ns()
        time.sleep(0.5)  # the probes' last dump
        for proc in (loihi, jetson):
            proc.send_signal(signal.SIGINT)
            proc.wait(30)
        sampler.halt.set()
        sampler.join()
        jetson_doc, loihi_doc = read_json(jetson_seen), read_json(loihi_seen)
    return analyse(encoding, jetson_doc, loihi_doc, sampler, (idle_from, idle_to))


def analyse(encoding: str, jetson: dict, loihi: dict, sampler: Sampler, idle: tuple) -> dict:
    idle_c = delta(sampler.at(idle[0]), sampler.at(idle[1]))
    idle_s = (idle[1] - idle[0]) * 1e-9
    rate = {k: v / idle_s for k, v in idle_c.items()}  # per second, with nothing flowing
    snn = {r["start_us"]: r["host_ns"] for r in loihi["reports"] if r["stage"] == "snn"}
    loop = {
        r["start_us"]: r["host_ns"]
        for r in loihi["reports"]
        if r["topic"] == "loopback/energy" and r["stage"] == "bridge"
    }
    link = {r["start_us"]: r["stages"]["bridge"]["end_ns"] for r in jetson["classified"]}
    spikes = {a["start_us"]: a for a in loihi["arrivals"] if a["topic"] == "snn/spikes"}
    starts = sorted(set(snn) & set(loop) & set(link) & set(spikes))
    rows = []
    for i, start in enumerate(starts):
        t0 = snn[start]
        t1 = snn[starts[i + 1]] if i + 1 < len(starts) else link[start] + 50_000_000
        d = delta(sampler.at(t0), sampler.at(t1))
        dt = (t1 - t0) * 1e-9
        net = {k: d[k] - rate[k] * dt for k in d}
        rows.append(
            {
                "start_us": start,
                "nonzero": spikes[start]["nonzero"],
                "cdr": spikes[start]["cdr_bytes"],
                "l2j_bytes": net["tx_bytes"],
                "l2j_packets": net["tx_packets"],
                "j2l_bytes": net["rx_bytes"],
                "j2l_packets": net["rx_packets"],
                "hop_link_ms": (link[start] - t0) * 1e-6,
                "hop_loop_ms": (loop[start] - t0) * 1e-6,
                # Same message, same sender, same bridge code: what the link adds to loopback,
                # free of the SNN stamp's lag behind its publish.
                "link_minus_loop_ms": (link[start] - loop[start]) * 1e-6,
            }
        )
    # Totals over the whole data phase (first SNN report to shortly after the last bridge).
    t0, t1 = snn[starts[0]], link[starts[-1]] + 50_000_000
    d = delta(sampler.at(t0), sampler.at(t1))
    total = {k: (d[k] - rate[k] * (t1 - t0) * 1e-9) / len(starts) for k in d}
    return {"encoding": encoding, "rows": rows, "per_window": total, "idle_rate": rate}


def summary(results: list[dict]) -> None:
    def med(rows: list[dict], key: str) -> float:
        return statistics.median(r[key] for r in rows)

    def p90(rows: list[dict], key: str) -> float:
        values = sorted(r[key] for r in rows)
        return values[min(len(values) - 1, int(0.9 * len(values)))]

    lines = [
        ("windows", lambda r: f"{len(r['rows'])}"),
        ("nonzero spikes / window (median)", lambda r: f"{med(r['rows'], 'nonzero'):.0f}"),
        ("snn/spikes CDR bytes / window (median)", lambda r: f"{med(r['rows'], 'cdr'):.0f}"),
        ("Loihi->Jetson bytes / window", lambda r: f"{r['per_window']['tx_bytes']:.0f}"),
        ("Loihi->Jetson packets / window", lambda r: f"{r['per_window']['tx_packets']:.1f}"),
        ("Jetson->Loihi bytes / window", lambda r: f"{r['per_window']['rx_bytes']:.0f}"),
        ("Jetson->Loihi packets / window", lambda r: f"{r['per_window']['rx_packets']:.1f}"),
        (
            "snn/spikes share of Loihi->Jetson",
            lambda r: f"{100 * med(r['rows'], 'cdr') / r['per_window']['tx_bytes']:.0f} %",
        ),
        (
            "idle baseline L->J / J->L bytes/s",
            lambda r: f"{r['idle_rate']['tx_bytes']:.0f} / {r['idle_rate']['rx_bytes']:.0f}",
        ),
        (
            "hop snn->bridge over veth, ms (median / p90)",
            lambda r: f"{med(r['rows'], 'hop_link_ms'):.2f} / {p90(r['rows'], 'hop_link_ms'):.2f}",
        ),
        (
            "hop snn->bridge on loopback, ms (median / p90)",
            lambda r: f"{med(r['rows'], 'hop_loop_ms'):.2f} / {p90(r['rows'], 'hop_loop_ms'):.2f}",
        ),
        (
            "veth minus loopback, same window, ms (median / p90)",
            lambda r: (
                f"{med(r['rows'], 'link_minus_loop_ms'):.2f} / "
                f"{p90(r['rows'], 'link_minus_loop_ms'):.2f}"
            ),
        ),
    ]
    width = max(len(name) for name, _ in lines)
    print(f"\n{'':{width}}  " + "  ".join(f"{r['encoding']:>14}" for r in results))
    for name, cell in lines:
        print(f"{name:{width}}  " + "  ".join(f"{cell(r):>14}" for r in results))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=20, help="gestures in the synthetic bag")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--encodings", nargs="+", default=["dense", "sparse"])
    ap.add_argument("--per-window", action="store_true", help="print every window's row")
    args = ap.parse_args()
    reason = netns_unavailable()
    if reason:
        print(f"cannot run: {reason}")
        return 2
    from hsnn_perception.core.hybrid.bundle import default_bundle_path
    from hsnn_perception.core.io.bag.write import synthetic_to_bag
    from hsnn_perception.evaluation.offline import OfflineSettings, evaluate_offline

    work = Path(tempfile.mkdtemp(prefix="hsnn-two-hosts-"))
    bag = work / "gestures.mcap"
    synthetic_to_bag(bag, args.samples, seed=args.seed, storage="mcap")
    offline = evaluate_offline(
        bag, default_bundle_path(), OfflineSettings(measure=False, progress=False)
    )
    windows = sum(1 for r in offline.records if r.prediction is not None)
    print(
        f"two hosts on one machine ({os.cpu_count()} cores): network namespaces joined by a veth, "
        f"Fast DDS UDPv4, shipped default model, {windows} windows of a synthetic bag "
        f"({args.samples} gestures, seed {args.seed}) in real time; logs in {work}"
    )
    results = []
    for encoding in args.encodings:
        result = run_phase(bag, windows, encoding, work)
        results.append(result)
        if args.per_window:
            print(f"\n{encoding}: window start (us), nonzero, snn/spikes CDR bytes, L->J bytes /")
            print("packets, J->L bytes / packets, hop over veth / on loopback (ms)")
            for r in result["rows"]:
                print(
                    f"{r['start_us']:>10} {r['nonzero']:>6} {r['cdr']:>7} "
                    f"{r['l2j_bytes']:>9.0f} / {r['l2j_packets']:>5.1f} "
                    f"{r['j2l_bytes']:>8.0f} / {r['j2l_packets']:>5.1f} "
                    f"{r['hop_link_ms']:>7.2f} / {r['hop_loop_ms']:.2f}"
                )
    summary(results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
