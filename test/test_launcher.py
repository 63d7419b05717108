"""The multi-process launcher's nodes never outlive their owner, whatever signal ends it, and a
node ends cleanly on SIGINT, SIGTERM and SIGHUP alike (a closed terminal sends SIGHUP)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from hsnn_perception.graph import pipeline
from hsnn_perception.launcher import ProcessGroup

pytestmark = pytest.mark.slow

GRACE_S = 3.0

OWNER = textwrap.dedent(
    """
    import json, sys, time
    from hsnn_perception.graph import pipeline
    from hsnn_perception.launcher import ProcessGroup
    group = ProcessGroup(pipeline(stages=("bridge", "classifier")), namespace=sys.argv[1]).start()
    print(json.dumps([p.pid for p in group.procs.values()]), flush=True)
    time.sleep(600)
    """
)


def alive(pid: int) -> bool:
    try:
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False


def gone_within(pids: list[int], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.02)
    return not any(alive(p) for p in pids)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGHUP])
def test_nodes_die_with_their_owner(sig):
    pids: list[int] = []
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER, f"owner_{random.randint(0, 10**6)}"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        pids = json.loads(owner.stdout.readline())
        assert len(pids) == 3 and all(alive(p) for p in pids)
        time.sleep(2)  # the nodes are up (and past their parent-death set-up)
        owner.send_signal(sig)
        owner.wait(10)
        assert gone_within(pids, 10), f"nodes left running after {sig.name} of their owner"
    finally:
        if owner.poll() is None:
            owner.kill()
        for pid in pids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_node_ends_cleanly_on_each_stop_signal(sig, tmp_path):
    group = ProcessGroup(
        pipeline(stages=("classifier",)), namespace=f"sig_{random.randint(0, 10**6)}",
        log_dir=tmp_path,
    ).start()  # fmt: skip
    try:
        time.sleep(4)  # configured and active (the manager brought it up)
        proc = group.procs["classifier"]
        assert proc.poll() is None, group.log("classifier")
        sent = time.monotonic()
        proc.send_signal(sig)
        code = proc.wait(30)
        took = time.monotonic() - sent
    finally:
        group.close()
    assert code == 0, group.log("classifier")
    assert took < GRACE_S, f"{took:.1f} s"
    assert "Traceback" not in group.log("classifier"), group.log("classifier")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_repeated_stop_signal_during_teardown_still_ends_cleanly(sig, tmp_path):
    """A terminal's Ctrl-C reaches a node twice (directly and through launch), `timeout` signals
    the whole group: a second signal landing in the interpreter's teardown, where Python has put
    its handlers back to SIG_DFL, killed the process (exit -2) after a clean stop. Signal every
    10 ms until it exits: one lands in the teardown almost surely."""
    group = ProcessGroup(
        pipeline(stages=("bridge",)), namespace=f"sig2_{random.randint(0, 10**6)}",
        log_dir=tmp_path,
    ).start()  # fmt: skip
    try:
        time.sleep(4)
        proc = group.procs["accumulator_bridge"]
        assert proc.poll() is None, group.log("accumulator_bridge")
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:
            proc.send_signal(sig)
            time.sleep(0.01)
        code = proc.wait(10)
    finally:
        group.close()
    assert code == 0, group.log("accumulator_bridge")
    assert "Traceback" not in group.log("accumulator_bridge"), group.log("accumulator_bridge")
