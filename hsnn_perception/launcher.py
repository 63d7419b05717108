"""Start the pipeline's nodes as separate processes, from the graph description
(hsnn_perception.graph).

This is what ``ros2 launch`` does on a full ROS 2 install; here it also serves the demo and the
integration tests on machines where the `launch` package is not installable.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import yaml

from hsnn_perception.graph import NodeSpec, specs_to_json


def params_file(spec: NodeSpec, directory: Path) -> Path:
    """A ROS 2 parameters file for ``spec`` (YAML typing keeps "1" a string and 1 an int)."""
    path = directory / f"{spec.name}.params.yaml"
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": dict(spec.parameters)}}))
    return path


def node_command(
    spec: NodeSpec, namespace: str, directory: Path, enclaves: bool = False
) -> list[str]:
    """With ``enclaves``, the node runs in SROS2 enclave /hsnn/<node name> (docs/security.md)."""
    cmd = [sys.executable, "-m", spec.module, "--ros-args", "-r", f"__node:={spec.name}"]
    if enclaves:
        cmd += ["--enclave", f"/hsnn/{spec.name}"]
    if namespace:
        cmd += ["-r", f"__ns:={namespace if namespace.startswith('/') else '/' + namespace}"]
    cmd += ["--params-file", str(params_file(spec, directory))]
    for src, dst in spec.remappings:
        cmd += ["-r", f"{src}:={dst}"]
    return cmd


def composed_command(specs: Sequence[NodeSpec], namespace: str, directory: Path) -> list[str]:
    """One process running every node of ``specs``, each on its own executor thread
    (hsnn_perception.runner)."""
    graph = directory / "graph.json"
    graph.write_text(specs_to_json(specs))
    cmd = [sys.executable, "-m", "hsnn_perception.runner", "--graph-json", str(graph)]
    return cmd + (["--namespace", namespace] if namespace else [])


class ProcessGroup:
    """The pipeline's processes; a context manager that always stops them (SIGINT, then SIGKILL).

    One process per node, or with ``composed`` a single process holding all of them.
    """

    def __init__(
        self,
        specs: Sequence[NodeSpec],
        namespace: str = "",
        env: dict[str, str] | None = None,
        log_dir: Path | None = None,
        composed: bool = False,
        enclaves: bool = False,
    ) -> None:
        self.specs = list(specs)
        self.namespace = namespace
        self.composed = composed
        self.enclaves = enclaves
        self.env = {**os.environ, **(env or {})}
        self._tmp = tempfile.TemporaryDirectory(prefix="hsnn-launch-")
        self.log_dir = log_dir or Path(self._tmp.name)
        self.procs: dict[str, subprocess.Popen] = {}

    def commands(self) -> dict[str, list[str]]:
        tmp = Path(self._tmp.name)
        if self.composed:
            return {"composed_pipeline": composed_command(self.specs, self.namespace, tmp)}
        return {
            spec.name: node_command(spec, self.namespace, tmp, self.enclaves) for spec in self.specs
        }

    def start(self) -> ProcessGroup:
        if self.procs:  # already started (start() then `with`): never twice
            return self
        # If the owner dies without stop() (an exception, Ctrl-C), no node outlives it.
        atexit.register(self._kill_remaining)
        for name, cmd in self.commands().items():
            log = open(self.log_dir / f"{name}.log", "wb")  # noqa: SIM115 - the child holds it
            self.procs[name] = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )
        return self

    def poll(self) -> dict[str, int | None]:
        return {name: proc.poll() for name, proc in self.procs.items()}

    def log(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self, timeout_s: float = 10.0) -> dict[str, int | None]:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + timeout_s
        for proc in self.procs.values():
            remaining = max(deadline - time.monotonic(), 0.1)
            try:
                proc.wait(remaining)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        return self.poll()

    def _kill_remaining(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)

    def close(self) -> None:
        self.stop()
        atexit.unregister(self._kill_remaining)
        self._tmp.cleanup()

    def __enter__(self) -> ProcessGroup:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
