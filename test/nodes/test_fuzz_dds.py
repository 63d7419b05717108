"""DDS fuzz against running nodes (bench/fuzz_dds.py with a few hundred messages per topic): every
node is still alive, nothing escaped a check (no errors.internal), every node counted its
rejections, memory stayed bounded, and the good stream is classified as before the fuzz."""

from __future__ import annotations

import pytest

from bench.fuzz_dds import NODES, run

pytestmark = pytest.mark.slow


def test_nodes_survive_random_and_malformed_messages(tmp_path):
    r = run(250, tmp_path, seed=1)
    logs = "\n".join(f"--- {n}\n{log}" for n, log in r["logs"].items())
    assert all(r["alive"].get(n) for n in NODES), (r["alive"], logs)
    assert r["baseline"] is not None, logs
    assert r["after"] == r["baseline"], (r["baseline"], r["after"], logs)
    for node in NODES:
        counters = r["counters"][node]
        assert counters.get("errors.internal", 0) == 0, (node, counters, logs)
        assert counters.get("errors", 0) > 0, (node, counters)  # the fuzz reached it
        # Bounded memory: a few hundred bad messages (some over the event cap) cost little.
        assert r["rss_after_mb"][node] < r["rss_before_mb"][node] + 150, (node, r)
    snn = r["counters"]["snn_feature"]
    assert snn.get("errors.packet_size", 0) >= 1 and snn.get("errors.packet", 0) >= 1, snn
    bridge = r["counters"]["accumulator_bridge"]
    for reason in ("window_id", "spikes", "tensor", "stamp"):
        assert bridge.get(f"errors.{reason}", 0) >= 1, (reason, bridge)
    assert r["counters"]["energy_aggregator"].get("errors.report", 0) >= 1
