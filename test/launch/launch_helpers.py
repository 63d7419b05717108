"""What the launch tests share: where the installed launch file is, a listener on the pipeline's
topics that runs in the test process before the launch starts (so nothing is published before it
listens), and the offline evaluation the launched pipeline is compared with."""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

# The launch stack is not on PyPI: a ROS 2 install has it, a wheel set-up has it where the set-up
# found the overlay. Without it these tests cannot run at all; say so instead of failing.
try:
    import launch_ros  # noqa: F401
    import launch_testing  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the machine
    pytest.skip(
        f"the ROS 2 launch stack (launch_ros, launch_testing) is not installed: {exc}. Source a "
        "ROS 2 installation, or run scripts/setup.sh where the ros-overlay is present",
        allow_module_level=True,
    )

import rclpy  # noqa: E402
from ament_index_python.packages import get_package_share_directory  # noqa: E402
from lifecycle_msgs.srv import GetState  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402

from hsnn_perception.evaluation.records import EvalRecord  # noqa: E402
from hsnn_perception.graph import BRINGUP_ORDER, PACKAGE  # noqa: E402
from hsnn_perception.tools.monitor import PipelineMonitor  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODEL = ROOT / "models" / "default"
NODES = BRINGUP_ORDER  # the five managed nodes


def pipeline_launch_file() -> str:
    """The launch file as ``ros2 launch hsnn_perception pipeline.launch.py`` finds it."""
    return os.path.join(get_package_share_directory(PACKAGE), "launch", "pipeline.launch.py")


def namespace(prefix: str) -> str:
    return f"{prefix}_{random.randint(0, 10**6)}"


class Listener:
    """A PipelineMonitor spinning on its own thread, created before the pipeline starts."""

    def __init__(self, ns: str) -> None:
        # Its own context: the default one belongs to the other tests' fixtures.
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.namespace = ns
        self.monitor = PipelineMonitor(namespace=ns, context=self.context)
        self.node = self.monitor
        self._executor = SingleThreadedExecutor(context=self.context)
        self._executor.add_node(self.monitor)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while not self._stop.is_set() and self.context.ok():
            with self._lock:
                self._executor.spin_once(timeout_sec=0.05)

    def subscribe(self, msg_type: type, topic: str, qos: object) -> list:
        """Collect every message of ``topic`` (remapped topics the monitor does not know)."""
        got: list = []
        with self._lock:
            self.node.create_subscription(msg_type, topic, got.append, qos)
        return got

    def wait_for(self, condition: Callable[[], bool], timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if condition():
                return True
            time.sleep(0.1)
        return condition()

    def classified(self) -> list[EvalRecord]:
        return self.monitor.classified()

    def complete(self) -> list[EvalRecord]:
        """Windows classified and with their energy total."""
        return [r for r in self.classified() if r.total_source]

    def lifecycle_state(self, node: str, timeout_s: float = 20.0) -> str:
        with self._lock:
            client = self.node.create_client(GetState, f"/{self.namespace}/{node}/get_state")
        try:
            if not client.wait_for_service(timeout_sec=timeout_s):
                return "no service"
            future = client.call_async(GetState.Request())
            if not self.wait_for(future.done, timeout_s):
                return "no answer"
            return future.result().current_state.label
        finally:
            with self._lock:
                self.node.destroy_client(client)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.monitor.destroy_node()
        rclpy.try_shutdown(context=self.context)


def offline_predictions(bag: Path, model: Path = DEFAULT_MODEL) -> dict[int, int]:
    """Window start time (us) -> predicted class, from the offline evaluation of ``bag``."""
    from hsnn_perception.evaluation.offline import OfflineSettings, evaluate_offline

    result = evaluate_offline(bag, model, OfflineSettings(measure=False, progress=False))
    return {r.t_start_us: r.prediction for r in result.records if r.prediction is not None}


def predictions(records: list[EvalRecord]) -> dict[int, int]:
    return {r.t_start_us: r.prediction for r in records}
