"""Ending ``ros2 launch`` (here hsnn-launch, which runs the same launch.LaunchService on the same
file): Ctrl-C ends every node within 3 s with status 0, while data flows and while the SNN node is
still warming up, in both process modes; so does a service manager's SIGTERM. ``ros2 launch``
itself (launch.LaunchService as ros2launch runs it) dies at once on SIGTERM without signalling
its processes: its nodes, and those of a launcher killed outright, then shut down cleanly on their
own, leaving nothing behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from launch_helpers import NODES, Listener, namespace, pipeline_launch_file

pytestmark = pytest.mark.slow

GRACE_S = 3.0  # the bound; launch itself escalates to SIGTERM after 5 s


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper has ended)."""
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in state


class LaunchRun:
    """hsnn-launch in its own process group (as a terminal runs a foreground job), its output
    read on a thread."""

    def __init__(
        self,
        ns: str,
        *arguments: str,
        noninteractive: bool = False,
        command: list[str] | None = None,
    ) -> None:
        cmd = command or [
            sys.executable, "-m", "hsnn_perception.tools.launch_cli", "pipeline.launch.py"
        ]  # fmt: skip
        cmd += ["--noninteractive"] if noninteractive else []
        self.proc = subprocess.Popen(
            [*cmd, f"namespace:={ns}", *arguments],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def child_pids(self, count: int, timeout_s: float = 60) -> list[int]:
        """The node processes' pids, once ``count`` of them have started."""
        deadline = time.monotonic() + timeout_s
        while len(child_pids(self.output)) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return child_pids(self.output)

    def wait(self, timeout_s: float) -> int:
        code = self.proc.wait(timeout_s)
        self._reader.join(5)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def child_pids(output: str) -> list[int]:
    return [int(p) for p in re.findall(r"process started with pid \[(\d+)\]", output)]


def wait_until_importing(pids: list[int], timeout_s: float) -> bool:
    """Wait until every process in ``pids`` has rclpy's extension mapped: its entry script has
    run (it installs its start-up signal handlers before importing anything), so what a signal
    meets now is ours. Before that, it meets the interpreter's own start-up (site, .pth files),
    whose KeyboardInterrupt no package can turn into a clean exit; a loaded host can spend more
    than a second there."""
    deadline = time.monotonic() + timeout_s
    for pid in pids:
        while time.monotonic() < deadline:
            try:
                if "_rclpy_pybind11" in Path(f"/proc/{pid}/maps").read_text():
                    break
            except OSError:  # gone
                break
            time.sleep(0.02)
    return time.monotonic() < deadline


def wait_until_gone(pids: list[int], timeout_s: float) -> float:
    started = time.monotonic()
    while any(alive(p) for p in pids) and time.monotonic() - started < timeout_s:
        time.sleep(0.02)
    return time.monotonic() - started


@pytest.mark.parametrize(
    ("composed", "ctrl_c", "sig"),
    [
        (False, "group", signal.SIGINT),
        (False, "launch", signal.SIGINT),
        (True, "group", signal.SIGINT),
        (False, "group", signal.SIGTERM),
        (False, "launch", signal.SIGTERM),
    ],
    # Interactively launch leaves SIGINT to the terminal, which sends it to the whole foreground
    # job; run non-interactively (a script, a service manager) it passes its own SIGINT on. A
    # service manager stops with SIGTERM: to every process of the service (systemd's default,
    # `timeout`), or to the launcher alone (`kill`, docker).
    ids=[
        "processes-terminal-ctrl-c",
        "processes-noninteractive-sigint",
        "composed-terminal-ctrl-c",
        "processes-service-stop-sigterm-to-all",
        "processes-sigterm-to-launcher",
    ],
)
def test_ctrl_c_while_data_flows_ends_every_node_cleanly(composed, ctrl_c, sig):
    ns = namespace("shutdown")
    listener = Listener(ns)
    run = LaunchRun(
        ns,
        f"composed:={str(composed).lower()}",
        noninteractive=ctrl_c == "launch" or sig == signal.SIGTERM,
    )
    try:
        pids = run.child_pids(1 if composed else len(NODES) + 1)
        assert listener.wait_for(
            lambda: run.proc.poll() is not None or len(listener.classified()) >= 2, 120
        ), run.output[-4000:]
        assert run.proc.poll() is None, run.output[-3000:]
        sent = time.monotonic()
        if ctrl_c == "group":  # a terminal sends SIGINT to the whole foreground job
            os.killpg(run.proc.pid, sig)
        else:
            run.proc.send_signal(sig)
        code = run.wait(30)
        took = max(time.monotonic() - sent, wait_until_gone(pids, 30))
    finally:
        listener.close()
        run.kill()
    output = run.output
    assert code == 0, output[-3000:]
    assert not [p for p in pids if alive(p)], "no process left behind"
    assert took < GRACE_S, f"took {took:.1f} s\n{output[-3000:]}"
    finished = re.findall(r"process has finished cleanly \[pid (\d+)\]", output)
    assert sorted(int(p) for p in finished) == sorted(pids), output[-3000:]


def test_ctrl_c_during_warm_up_ends_every_node_cleanly():
    ns = namespace("warmup")
    # The SNN node compiles and warms up at configure: interrupt right when the processes exist.
    run = LaunchRun(ns)
    try:
        pids = run.child_pids(len(NODES) + 1)
        assert wait_until_importing(pids, 60), run.output[-3000:]
        time.sleep(0.5)
        sent = time.monotonic()
        os.killpg(run.proc.pid, signal.SIGINT)
        code = run.wait(30)
        took = max(time.monotonic() - sent, wait_until_gone(pids, 30))
    finally:
        run.kill()
    output = run.output
    assert code == 0, output[-3000:]
    assert not [p for p in pids if alive(p)]
    assert took < GRACE_S, f"took {took:.1f} s\n{output[-3000:]}"
    assert len(re.findall(r"process has finished cleanly", output)) == len(pids), output[-3000:]


SEGMENT = re.compile(r"fastdds_[0-9a-f]+")


def fastdds_segments() -> set[str]:
    """The Fast DDS participants' shared-memory files now (each participant using the
    shared-memory transport has one, and deletes it when it is deleted)."""
    return {p.name for p in Path("/dev/shm").glob("fastdds_*") if SEGMENT.fullmatch(p.name)}


def still_there(segments: set[str], timeout_s: float = 5.0) -> set[str]:
    """Which of ``segments`` are still in /dev/shm after up to ``timeout_s`` (a participant's
    deletion may trail its process's exit a little)."""
    deadline = time.monotonic() + timeout_s
    while segments & fastdds_segments() and time.monotonic() < deadline:
        time.sleep(0.05)
    return segments & fastdds_segments()


def own_segments(pids: list[int]) -> dict[str, int]:
    """The Fast DDS files that the processes ``pids`` created, with their creator: a participant
    holds a lock on its segment's lock file (``<segment>_el``) while it lives (processes that
    write to a segment open that file too, but do not lock it)."""
    locked: dict[int, int] = {}  # inode -> pid
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if len(fields) >= 6 and fields[1] == "FLOCK" and int(fields[4]) in pids:
            locked[int(fields[5].rsplit(":", 1)[1])] = int(fields[4])
    owners = {}
    for path in Path("/dev/shm").glob("fastdds_*_el"):
        name = path.name[: -len("_el")]
        try:
            inode = path.stat().st_ino
        except OSError:
            continue
        if SEGMENT.fullmatch(name) and inode in locked:
            owners[name] = locked[inode]
    return owners


# What `ros2 launch hsnn_perception pipeline.launch.py ARGS` runs (ros2launch's
# launch_a_launch_file), with nothing of this package's in the launcher process: hsnn-launch turns
# SIGTERM into an orderly stop, ros2 launch does not.
ROS2_LAUNCH = textwrap.dedent(
    """
    import sys
    import launch
    from launch.launch_description_sources import AnyLaunchDescriptionSource
    path, args = sys.argv[1], sys.argv[2:]
    service = launch.LaunchService(argv=args, noninteractive=True)
    service.include_launch_description(launch.LaunchDescription([
        launch.actions.IncludeLaunchDescription(
            AnyLaunchDescriptionSource(path),
            launch_arguments=[tuple(a.split(":=", 1)) for a in args],
        )
    ]))
    sys.exit(service.run())
    """
)


@pytest.mark.parametrize(
    ("composed", "launcher", "sig"),
    [
        (False, "hsnn-launch", signal.SIGKILL),
        (True, "hsnn-launch", signal.SIGKILL),
        (False, "ros2-launch", signal.SIGTERM),
    ],
    ids=["processes-launcher-killed", "composed-launcher-killed", "ros2-launch-sigterm"],
)
def test_nodes_of_a_launcher_gone_shut_down_cleanly(composed, launcher, sig):
    """The launcher is gone without signalling its processes: SIGKILL (nothing can pass it on),
    or SIGTERM to `ros2 launch` (launch installs no handler for it: `docker stop`, `kill`). The
    kernel's parent-death signal then starts each node's own clean shutdown: no node is left
    running, and each deletes its DDS participant, whose file in /dev/shm a killed node leaves."""
    ns = namespace("orphans")
    listener = Listener(ns)
    command = None
    if launcher == "ros2-launch":
        command = [sys.executable, "-c", ROS2_LAUNCH, pipeline_launch_file()]
    run = LaunchRun(ns, f"composed:={str(composed).lower()}", command=command)
    try:
        pids = run.child_pids(1 if composed else len(NODES) + 1)
        assert listener.wait_for(
            lambda: run.proc.poll() is not None or len(listener.classified()) >= 1, 120
        ), run.output[-4000:]
        assert run.proc.poll() is None, run.output[-3000:]
        # The nodes' files (a launcher killed outright cannot delete its own).
        owners = own_segments(pids)
        created = set(owners)
        run.proc.send_signal(sig)  # to the launcher alone
        code = run.wait(10)
        took = wait_until_gone(pids, 30)
    finally:
        listener.close()
        run.kill()  # a check failed before the launcher was stopped: its group goes
    left = [p for p in pids if alive(p)]
    for pid in left:  # do not leak them into the rest of the test session
        os.kill(pid, signal.SIGKILL)
    assert code == -sig, f"the launcher ended with {code}\n{run.output[-3000:]}"
    # (No time bound here: the kernel's parent-death signal starts the nodes' own bounded
    # shutdown, but how soon a loaded machine runs them is not the point.)
    assert not left, f"{len(left)} nodes outlived their launcher ({took:.1f} s)"
    assert len(created) >= len(pids), created  # one per node process at least
    left_files = still_there(created)
    assert not left_files, (
        f"{len(left_files)} of {len(created)} left in /dev/shm, of processes "
        f"{sorted({owners[f] for f in left_files})}\n{run.output[-2000:]}"
    )


def test_ctrl_c_leaves_no_shared_memory_behind():
    """Every process of a launch stopped by Ctrl-C deletes its DDS participant, and with it its
    file in /dev/shm (tmpfs: memory until the next reboot). The SNN node's SNN thread, still
    running when the node was destroyed, once kept its participant: a file left per run."""
    ns = namespace("shm")
    listener = Listener(ns)
    before = fastdds_segments()
    run = LaunchRun(ns)
    try:
        pids = run.child_pids(len(NODES) + 1)
        assert listener.wait_for(
            lambda: run.proc.poll() is not None or len(listener.classified()) >= 1, 120
        ), run.output[-4000:]
        created = fastdds_segments() - before
        os.killpg(run.proc.pid, signal.SIGINT)
        code = run.wait(30)
        wait_until_gone(pids, 30)
    finally:
        listener.close()
        run.kill()
    assert code == 0, run.output[-3000:]
    assert len(created) >= len(NODES), created  # one per node process at least
    left = still_there(created)
    assert not left, f"{len(left)} of {len(created)} left in /dev/shm\n{run.output[-2000:]}"
