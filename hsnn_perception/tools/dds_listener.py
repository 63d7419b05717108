"""What a DDS replay hears besides the monitor of :func:`hsnn_perception.tools.session.run_session`:
the nodes' last /diagnostics, every Classification's scores and every EnergyReport, in its own
rclpy context on its own thread (:mod:`hsnn_perception.tools.replay` reads them into its result).
"""

from __future__ import annotations

import random
import threading
from typing import Any


class DdsListener:
    """Latest /diagnostics status per node, the scores of every Classification and the figures of
    every EnergyReport, collected in its own rclpy context on its own thread (run_session owns
    the default context and its monitor keeps only part of these messages)."""

    def __init__(self, namespace: str) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node
        from rclpy.signals import SignalHandlerOptions

        from hsnn_perception.graph import CLASSIFICATION, DIAGNOSTICS, ENERGY
        from hsnn_perception.msg import Classification, EnergyReport
        from hsnn_perception.nodes.base import reliable_qos

        self.diagnostics: dict[str, dict[str, str]] = {}
        self.scores: dict[int, list[float]] = {}
        self.energy: dict[tuple[int, str], Any] = {}  # (window, stage) -> EnergyReport
        self._lock = threading.Lock()
        self._context = rclpy.Context()
        rclpy.init(context=self._context, signal_handler_options=SignalHandlerOptions.NO)
        self._node = Node(
            f"hsnn_replay_listener_{random.randint(0, 10**6)}",
            namespace=namespace,
            context=self._context,
        )
        self._node.create_subscription(
            DiagnosticArray, DIAGNOSTICS, self._on_diag, reliable_qos(50)
        )
        self._class_sub = self._node.create_subscription(
            Classification, CLASSIFICATION, self._on_class, reliable_qos(500)
        )
        self._energy_sub = self._node.create_subscription(
            EnergyReport, ENERGY, self._on_energy, reliable_qos(500)
        )
        self._executor = SingleThreadedExecutor(context=self._context)
        self._executor.add_node(self._node)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, name="hsnn-replay-listener", daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while not self._stop.is_set():
            self._executor.spin_once(timeout_sec=0.05)

    def _on_diag(self, msg: Any) -> None:
        with self._lock:
            for status in msg.status:
                values = {kv.key: kv.value for kv in status.values}
                values["message"] = status.message
                self.diagnostics[status.hardware_id] = values

    def _on_class(self, msg: Any) -> None:
        with self._lock:
            self.scores[int(msg.window_id)] = [float(s) for s in msg.scores]

    def _on_energy(self, msg: Any) -> None:
        from hsnn_perception.nodes.conversions import time_to_us

        with self._lock:
            # Keyed by sensor start time, as the monitor keys windows.
            self.energy[(time_to_us(msg.window_stamp), str(msg.stage))] = msg

    def close(self) -> None:
        import rclpy

        self._stop.set()
        self._thread.join(timeout=5)
        self._executor.shutdown()
        self._node.destroy_node()
        rclpy.try_shutdown(context=self._context)

    def missing(self, energy_publishers: int) -> list[str]:
        """What this listener does not hear yet (reliable, volatile: a report published before
        its subscription matched is lost to it, and the window's counts with it)."""
        out = []
        have = self._energy_sub.get_publisher_count()
        if have < energy_publishers:
            out.append(f"replay listener: {have}/{energy_publishers} energy publishers")
        if self._class_sub.get_publisher_count() < 1:
            out.append("replay listener: no classification publisher")
        return out

    def node(self, qualified: str) -> dict[str, str]:
        with self._lock:
            return dict(self.diagnostics.get(qualified, {}))
