"""The paper's two-host deployment with ``ros2 launch`` (here hsnn-launch, the same
launch.LaunchService on the same file): a "Loihi host" runs ``stages:=driver,snn``, a "Jetson host"
``stages:=bridge,classifier,energy``, each with its own lifecycle manager, in two Linux network
namespaces joined by a veth pair. DDS discovers and carries the data over that link (UDP only; no
shared memory between the namespaces). Every window of a labelled bag is classified as the offline
evaluation classifies it, with its energy total from all four stages, the spikes are seen crossing
the link in the interface counters, and both halves end cleanly on SIGINT.

Needs root (network namespaces); skipped with the reason elsewhere."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from launch_helpers import namespace, offline_predictions
from netns_hosts import TwoHosts, netns_unavailable, read_json

from hsnn_perception.core.hybrid.bundle import ModelBundle, default_bundle_path
from hsnn_perception.core.io.bag.write import synthetic_to_bag

pytestmark = pytest.mark.slow

SAMPLES = 6
PROBE = str(Path(__file__).with_name("netns_hosts.py"))
HALVES = {"loihi": "driver,snn", "jetson": "bridge,classifier,energy"}


@pytest.fixture
def hosts() -> Iterator[TwoHosts]:
    reason = netns_unavailable()
    if reason:
        pytest.skip(reason)
    with TwoHosts() as made:
        yield made


def launch(hosts: TwoHosts, host: str, ns: str, log: Path, *arguments: str) -> subprocess.Popen:
    cmd = ["hsnn-launch", "-n", "pipeline.launch.py", f"stages:={HALVES[host]}", f"namespace:={ns}"]
    return hosts.popen(
        host, [*cmd, *arguments], stdout=log.open("w"), stderr=subprocess.STDOUT, text=True
    )


def wait_for(condition: Callable[[], object], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return bool(condition())


def test_two_hosts_over_a_veth_link_classify_every_window(hosts, tmp_path):
    bag = tmp_path / "gestures.mcap"
    synthetic_to_bag(bag, SAMPLES, seed=5, storage="mcap")
    expected = offline_predictions(bag)
    assert len(expected) >= SAMPLES
    ns = namespace("two_hosts")
    seen = tmp_path / "jetson_probe.json"
    logs = {host: tmp_path / f"{host}.log" for host in HALVES}

    def output() -> str:
        return "\n".join(f"--- {h}\n{p.read_text()[-3000:]}" for h, p in logs.items() if p.exists())

    # An operator's monitor on the Jetson host, listening before anything is published.
    probe = hosts.popen(
        "jetson",
        [sys.executable, PROBE, "probe", "--monitor", "--namespace", ns, "--out", str(seen)],
        stdout=(tmp_path / "probe.log").open("w"),
        stderr=subprocess.STDOUT,
    )
    before = {h: hosts.counters(h) for h in HALVES}
    jetson = launch(hosts, "jetson", ns, logs["jetson"])
    # Each half's manager orders only its own nodes: the Jetson half must be up before the Loihi
    # half plays the bag, as its bridge subscribing (its manager's last step) shows.
    spikes_readers = [sys.executable, PROBE, "probe", "--namespace", ns, "--graph", "snn/spikes"]
    graph = tmp_path / "graph.json"
    watcher = hosts.popen("jetson", [*spikes_readers, "--out", str(graph)])
    assert wait_for(lambda: read_json(graph).get("graph", {}).get("snn/spikes", [0, 0])[1], 60), (
        output()
    )
    watcher.send_signal(signal.SIGINT)
    watcher.wait(10)
    loihi = launch(
        hosts, "loihi", ns, logs["loihi"], "source:=rosbag", f"source_path:={bag}", "speed:=1.0"
    )

    def complete() -> list[dict]:
        return [r for r in read_json(seen).get("classified", []) if r["total_source"]]

    assert wait_for(lambda: len(complete()) >= len(expected), 90), output()
    records = read_json(seen)["classified"]
    assert {r["start_us"]: r["predicted_class"] for r in records} == expected
    for r in records:
        assert r["total_source"] in ("measured", "modelled"), r
        # The driver's and the SNN's reports crossed the link to the aggregator and the monitor.
        assert set(r["stages"]) == {"driver", "snn", "bridge", "classifier"}, r

    # Both halves end on SIGINT (launch passes it on: -n), every node cleanly, status 0.
    for proc in (loihi, jetson, probe):
        proc.send_signal(signal.SIGINT)
    codes = {h: p.wait(30) for h, p in (("loihi", loihi), ("jetson", jetson), ("probe", probe))}
    assert codes == {"loihi": 0, "jetson": 0, "probe": 0}, output()
    for host, log in logs.items():
        text = log.read_text()
        started = re.findall(r"process started with pid \[(\d+)\]", text)
        finished = re.findall(r"process has finished cleanly \[pid (\d+)\]", text)
        # The half's nodes and its lifecycle manager.
        assert len(started) == len(HALVES[host].split(",")) + 1, text[-3000:]
        assert sorted(finished) == sorted(started), text[-3000:]

    # The traffic went over the veth: every window's dense spikes (T x the SNN output, uint8)
    # arrived on the Jetson side; what one end sent is what the other received.
    after = hosts.settled_counters()
    bundle = ModelBundle.load(default_bundle_path())
    spikes_bytes = bundle.timesteps * bundle.feature_shape[0] * bundle.feature_shape[1]
    spikes_bytes *= bundle.feature_shape[2]
    received = after["jetson"]["rx_bytes"] - before["jetson"]["rx_bytes"]
    assert received >= len(expected) * spikes_bytes, (received, len(expected), spikes_bytes)
    assert after["loihi"]["tx_bytes"] == after["jetson"]["rx_bytes"]
    assert after["jetson"]["tx_bytes"] == after["loihi"]["rx_bytes"]
