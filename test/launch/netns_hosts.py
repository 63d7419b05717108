"""Two hosts on one machine, as the paper deploys the pipeline (a Loihi host: driver + SNN; a
Jetson host: bridge + classifier): two Linux network namespaces joined by a veth pair, DDS
discovery and data over that link. Used by test_two_hosts.py and bench/two_hosts.py.

Run as a script it is the probe that listens inside one namespace and writes what it saw to a
JSON file (the test process itself stays in the root namespace, which cannot reach the link):

    ip netns exec <ns> python netns_hosts.py probe --namespace robot --out seen.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

HOSTS = ("loihi", "jetson")
ADDRESSES = {"loihi": "10.77.0.1", "jetson": "10.77.0.2"}
COUNTERS = ("rx_bytes", "rx_packets", "tx_bytes", "tx_packets")


def _ip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)


def netns_unavailable() -> str | None:
    """Why two network namespaces joined by a veth pair cannot be made here, or None."""
    if os.geteuid() != 0:
        return f"network namespaces need root; running as uid {os.geteuid()}"
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    name = f"hsnn_chk{os.getpid()}"
    made = _ip("netns", "add", name)
    if made.returncode:
        return f"`ip netns add` is not permitted here: {made.stderr.strip()}"
    try:
        # Both ends named per process: two checks at once must not collide on the peer's name.
        pid = os.getpid()
        veth = _ip("link", "add", f"hc{pid}", "netns", name, "type", "veth", "peer", f"hd{pid}")
        if veth.returncode:
            return f"a veth pair cannot be made here: {veth.stderr.strip()}"
    finally:
        _ip("netns", "del", name)
    return None


class TwoHosts:
    """Namespaces ``loihi`` and ``jetson``, 10.77.0.1 <-> 10.77.0.2 over a veth pair; every
    process started in them is ended, and the namespaces deleted, on close."""

    def __init__(self) -> None:
        tag = f"{random.getrandbits(24):06x}"  # several runs at once must not collide
        self.netns = {h: f"hsnn_{h}_{tag}" for h in HOSTS}
        self.device = {h: f"hsnn{h[0]}{tag}" for h in HOSTS}  # at most 15 characters
        self.procs: list[subprocess.Popen] = []
        self._anchors: dict[str, subprocess.Popen] = {}

    def __enter__(self) -> TwoHosts:
        try:
            self.up()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def up(self) -> None:
        loihi, jetson = (self.netns[h] for h in HOSTS)
        steps = [
            ("netns", "add", loihi),
            ("netns", "add", jetson),
            ("link", "add", self.device["loihi"], "netns", loihi, "type", "veth", "peer")
            + ("name", self.device["jetson"], "netns", jetson),
        ]
        for host in HOSTS:
            ns, dev = self.netns[host], self.device[host]
            steps += [
                ("-n", ns, "addr", "add", f"{ADDRESSES[host]}/24", "dev", dev),
                # No IPv6 on the link: the kernel's own router solicitations and MLD reports
                # would otherwise add packets nobody in the test sent (DDS here is UDPv4).
                ("netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"),
                ("-n", ns, "link", "set", "lo", "up"),
                ("-n", ns, "link", "set", dev, "up"),
                # Multicast discovery (SPDP) goes out on the link; without a route it has none.
                ("-n", ns, "route", "add", "224.0.0.0/4", "dev", dev),
            ]
        for step in steps:
            done = _ip(*step)
            if done.returncode:
                raise RuntimeError(f"ip {' '.join(step)}: {done.stderr.strip()}")
        # A process that only sits in each namespace: its /proc/<pid>/net/dev shows the
        # namespace's interface counters without starting `ip netns exec` for every reading.
        for host in HOSTS:
            self._anchors[host] = subprocess.Popen(
                ["ip", "netns", "exec", self.netns[host], "sleep", "infinity"]
            )

    def env(self, host: str, base: dict[str, str] | None = None) -> dict[str, str]:
        """The environment of a process on ``host``: discovery over the link, UDP only."""
        env = dict(os.environ if base is None else base)
        peer = ADDRESSES["jetson" if host == "loihi" else "loihi"]
        env.update(
            ROS_AUTOMATIC_DISCOVERY_RANGE="SUBNET",  # LOCALHOST would keep DDS on lo
            ROS_STATIC_PEERS=peer,  # discovery does not hang on multicast alone
            # /dev/shm is shared by the namespaces: without this Fast DDS could take shared
            # memory between them and the link would carry nothing (measured: it does not, as
            # the namespaces' host ids differ, but that is Fast DDS's choice, not ours).
            FASTDDS_BUILTIN_TRANSPORTS="UDPv4",
        )
        env.setdefault("ROS_DOMAIN_ID", "0")
        return env

    def popen(self, host: str, cmd: list[str], **kwargs: Any) -> subprocess.Popen:
        """``cmd`` in ``host``'s namespace, in its own session (a signal reaches it alone)."""
        kwargs.setdefault("env", self.env(host))
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.netns[host], *cmd], start_new_session=True, **kwargs
        )
        self.procs.append(proc)
        return proc

    def counters(self, host: str) -> dict[str, int]:
        """The veth's counters on ``host`` (kernel statistics, as /sys/class/net shows them)."""
        anchor = self._anchors[host]
        dev = self.device[host]
        for line in Path(f"/proc/{anchor.pid}/net/dev").read_text().splitlines():
            name, sep, rest = line.partition(":")
            if sep and name.strip() == dev:
                f = [int(x) for x in rest.split()]
                return {"rx_bytes": f[0], "rx_packets": f[1], "tx_bytes": f[8], "tx_packets": f[9]}
        raise RuntimeError(f"no {dev} in namespace {self.netns[host]}")

    def sysfs_counters(self, host: str) -> dict[str, int]:
        """The same counters read from /sys/class/net/<veth>/statistics inside the namespace."""
        files = [f"/sys/class/net/{self.device[host]}/statistics/{c}" for c in COUNTERS]
        out = subprocess.run(
            ["ip", "netns", "exec", self.netns[host], "cat", *files],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        return dict(zip(COUNTERS, (int(x) for x in out), strict=True))

    def settled_counters(self, timeout_s: float = 10.0) -> dict[str, dict[str, int]]:
        """Every host's counters once the link is quiet: /proc and sysfs read the same figures
        and two readings in a row agree. The kernel may still send a packet of its own (an ARP
        probe) after every process has ended, so one reading of each would race with it."""
        deadline = time.monotonic() + timeout_s
        last: dict[str, dict[str, int]] | None = None
        while True:
            now = {h: self.sysfs_counters(h) for h in HOSTS}
            if now == {h: self.counters(h) for h in HOSTS} and now == last:
                return now
            if time.monotonic() > deadline:
                raise AssertionError(f"the link did not go quiet in {timeout_s} s: {last} -> {now}")
            last = now
            time.sleep(0.2)

    def close(self) -> None:
        for proc in [*self.procs, *self._anchors.values()]:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    proc.kill()
                proc.wait(10)
        for ns in self.netns.values():
            _ip("netns", "del", ns)  # the veth pair goes with its namespaces


def read_json(path: Path) -> dict:
    """The probe's latest dump ({} before the first)."""
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


# ---- the probe, run inside a namespace ----


def _probe(args: argparse.Namespace) -> int:
    import numpy as np
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.signals import SignalHandlerOptions

    from hsnn_perception.core.io.bag.msgtypes import time_to_ns
    from hsnn_perception.core.io.spike_codec import decode_spikes
    from hsnn_perception.graph import qualified_name
    from hsnn_perception.msg import EnergyReport, TensorList
    from hsnn_perception.nodes.base import reliable_qos
    from hsnn_perception.nodes.conversions import read_tensor_list, time_to_us
    from hsnn_perception.tools.monitor import PipelineMonitor

    # rclpy's handlers would shut the context down under the spin loop: dump first, then end.
    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    # Without --monitor only the topics asked for: a monitor's subscriptions to the far host's
    # outputs would bring them across the link too.
    node = (
        PipelineMonitor(namespace=args.namespace)
        if args.monitor
        else Node(f"hsnn_probe_{os.getpid()}", namespace=args.namespace)
    )
    lock = threading.Lock()
    reports: list[dict] = []  # EnergyReports of the extra topics
    arrivals: list[dict] = []  # messages of the --tensors topics: when, size, window

    def on_report(topic: str):  # noqa: ANN202
        def record(msg: EnergyReport) -> None:
            with lock:
                reports.append(
                    {
                        "topic": topic,
                        "stage": msg.stage,
                        "start_us": time_to_us(msg.window_stamp),
                        "host_ns": time_to_ns(msg.host_stamp),
                        "latency_s": msg.latency_s,
                    }
                )

        return record

    def on_tensors(topic: str):  # noqa: ANN202
        from rclpy.serialization import deserialize_message

        def record(raw: bytes) -> None:
            now = time.time_ns()
            msg = deserialize_message(raw, TensorList)
            try:  # spikes in whichever form: how many were nonzero
                nonzero = int(np.count_nonzero(decode_spikes(read_tensor_list(msg)[2])))
            except ValueError:
                nonzero = -1
            with lock:
                arrivals.append(
                    {
                        "topic": topic,
                        "recv_ns": now,
                        "cdr_bytes": len(raw),
                        "start_us": time_to_us(msg.header.stamp),
                        "tensors": {t.name: len(t.data) for t in msg.tensors},
                        "nonzero": nonzero,
                    }
                )

        return record

    qos = reliable_qos(100)
    for topic in args.energy:
        node.create_subscription(EnergyReport, topic, on_report(topic), qos)
    for topic in args.tensors:  # raw: the size on the wire, no deserialisation in the callback
        node.create_subscription(TensorList, topic, on_tensors(topic), qos, raw=True)
    executor = SingleThreadedExecutor()
    executor.add_node(node)

    def dump() -> None:
        with lock:
            doc = {
                "classified": [
                    {
                        "window_id": r.window_id,
                        "start_us": r.t_start_us,
                        "predicted_class": r.prediction,
                        "total_source": r.total_source,
                        "total_energy_j": r.energy["total"].energy_j if r.total_source else None,
                        "stages": {
                            name: {"end_ns": end_ns, "latency_s": r.latency_s.get(name)}
                            for name, end_ns in r.stage_end_ns.items()
                        },
                    }
                    for r in (node.classified() if args.monitor else [])
                ],
                "reports": list(reports),
                "arrivals": list(arrivals),
                "graph": {
                    topic: [
                        node.count_publishers(qualified_name(args.namespace, topic)),
                        node.count_subscribers(qualified_name(args.namespace, topic)),
                    ]
                    for topic in args.graph
                },
            }
        tmp = args.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc))
        tmp.replace(args.out)  # readers never see half a file

    last = 0.0
    while not stop.is_set():
        executor.spin_once(timeout_sec=0.05)
        if time.monotonic() - last > 0.25:
            dump()
            last = time.monotonic()
    dump()
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    probe = sub.add_parser("probe", help="listen in this namespace, dump what was seen as JSON")
    probe.add_argument("--namespace", required=True, help="ROS namespace of the pipeline")
    probe.add_argument("--out", type=Path, required=True)
    probe.add_argument(
        "--monitor", action="store_true", help="also classifications, energy, totals, labels"
    )
    probe.add_argument("--energy", nargs="*", default=[], help="extra EnergyReport topics")
    probe.add_argument("--tensors", nargs="*", default=[], help="TensorList topics to time")
    probe.add_argument("--graph", nargs="*", default=[], help="topics: [publishers, subscribers]")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    return _probe(args)


if __name__ == "__main__":
    raise SystemExit(main())
