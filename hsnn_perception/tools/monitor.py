"""A plain rclpy node that listens to the pipeline's outputs (labels, classifications, energy) and
collects per-window records (evaluation.records.EvalRecord, the type offline evaluation fills
too) and each node's last /diagnostics status. Used by the demo, the integration tests and DDS
replay."""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node

from hsnn_perception.core.energy.figure import EnergyError, unavailable
from hsnn_perception.core.io.bag.msgtypes import time_to_ns
from hsnn_perception.evaluation.records import EvalRecord
from hsnn_perception.graph import (
    CLASSIFICATION,
    DIAGNOSTICS,
    ENERGY,
    ENERGY_TOTAL,
    EVENTS,
    LABELS,
    SPIKES,
    TENSORS,
    qualified_name,
)
from hsnn_perception.msg import Classification, EnergyReport, GestureLabel
from hsnn_perception.nodes.base import reliable_qos
from hsnn_perception.nodes.conversions import figure_from_report, time_to_us


class PipelineMonitor(Node):
    def __init__(
        self,
        namespace: str = "",
        on_classification: Callable[[EvalRecord], None] | None = None,
        **node_options: Any,
    ) -> None:
        super().__init__("hsnn_monitor", namespace=namespace, **node_options)
        # Keyed by the window's sensor start time, which every stage computes alike (the driver
        # numbers windows from the first event it sent, the SNN node from the first it got).
        self.records: dict[int, EvalRecord] = {}
        # The last /diagnostics status of each node (hardware_id: its fully qualified name).
        self.diagnostics: dict[str, dict[str, str]] = {}
        self._label_starts: list[int] = []
        self._labels: list[GestureLabel] = []
        self._lock = threading.Lock()
        self._on_classification = on_classification
        qos = reliable_qos(500)
        self.labels_subscription = self.create_subscription(
            GestureLabel, LABELS, self._on_label, qos
        )
        self.classification_subscription = self.create_subscription(
            Classification, CLASSIFICATION, self._on_classification_msg, qos
        )
        self.energy_subscription = self.create_subscription(
            EnergyReport, ENERGY, self._on_energy, qos
        )
        self.total_subscription = self.create_subscription(
            EnergyReport, ENERGY_TOTAL, self._on_total, qos
        )
        self.create_subscription(
            DiagnosticArray, DIAGNOSTICS, self._on_diagnostics, reliable_qos(50)
        )

    def unmatched(self, energy_publishers: int) -> list[str]:
        """This monitor's subscriptions that have not matched their publishers yet (reliable and
        volatile: what is published before the match is lost to it), as readable strings."""
        want = (
            (self.classification_subscription, CLASSIFICATION, 1),
            (self.energy_subscription, ENERGY, energy_publishers),
            (self.total_subscription, ENERGY_TOTAL, 1),
        )
        return [
            f"monitor: {sub.get_publisher_count()}/{n} {topic} publishers matched"
            for sub, topic, n in want
            if sub.get_publisher_count() < n
        ]

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        with self._lock:
            for status in msg.status:
                values = {kv.key: kv.value for kv in status.values}
                values["message"] = status.message
                self.diagnostics[status.hardware_id] = values

    def node_status(self, qualified: str) -> dict[str, str]:
        """The last /diagnostics values of node ``qualified`` (empty if none was heard)."""
        with self._lock:
            return dict(self.diagnostics.get(qualified, {}))

    def _record(self, window_id: int, start_us: int, authoritative: bool = True) -> EvalRecord:
        rec = self.records.get(start_us)
        if rec is None:
            rec = self.records[start_us] = EvalRecord(window_id, start_us, start_us)
        elif authoritative:
            rec.window_id = window_id
        return rec

    def _on_label(self, msg: GestureLabel) -> None:
        with self._lock:
            start = time_to_us(msg.start)
            i = bisect.bisect(self._label_starts, start)
            self._label_starts.insert(i, start)
            self._labels.insert(i, msg)
            for rec in self.records.values():
                if rec.label is None:
                    self._attach_label(rec)

    def _attach_label(self, rec: EvalRecord) -> None:
        i = bisect.bisect_right(self._label_starts, rec.t_start_us) - 1
        if i >= 0:
            label = self._labels[i]
            if rec.t_start_us < time_to_us(label.end):
                rec.label = int(label.class_id)
                rec.label_name = label.label

    def _on_classification_msg(self, msg: Classification) -> None:
        with self._lock:
            rec = self._record(int(msg.window_id), time_to_us(msg.window_stamp))
            rec.prediction = int(msg.class_id)
            rec.prediction_name = msg.label
            rec.scores = [float(s) for s in msg.scores]
            self._attach_label(rec)
        if self._on_classification is not None:
            self._on_classification(rec)

    def _on_energy(self, msg: EnergyReport) -> None:
        with self._lock:
            rec = self._record(
                int(msg.window_id), time_to_us(msg.window_stamp), msg.stage != "driver"
            )
            rec.latency_s[msg.stage] = float(msg.latency_s)
            rec.stage_end_ns[msg.stage] = time_to_ns(msg.host_stamp)
            rec.energy[msg.stage] = _figure(msg)

    def _on_total(self, msg: EnergyReport) -> None:
        with self._lock:
            rec = self._record(int(msg.window_id), time_to_us(msg.window_stamp))
            rec.energy["total"] = _figure(msg)

    def classified(self) -> list[EvalRecord]:
        with self._lock:
            return sorted(
                (r for r in self.records.values() if r.prediction is not None),
                key=lambda r: r.window_id,
            )


def _figure(msg: EnergyReport) -> Any:
    """The report's figure; one whose fields contradict each other is kept as unavailable, with
    what was wrong, so the window still counts and the report says why its energy is missing."""
    try:
        return figure_from_report(msg)
    except (EnergyError, ValueError) as exc:
        return unavailable(msg.stage, msg.device, f"contradictory report: {exc}", msg.latency_s)


# Topics that must be connected before the source may start, as (topic, publishers, subscribers):
# the stages subscribe on activation, so this also says every stage is configured and active.
PIPELINE_CONNECTIONS = (
    (EVENTS, 0, 1),
    (SPIKES, 1, 1),
    (TENSORS, 1, 1),
    (CLASSIFICATION, 1, 1),
    (ENERGY, 3, 2),
    (ENERGY_TOTAL, 1, 1),
)


def missing_connections(node: Node, namespace: str) -> list[str]:
    """What is not yet connected in the pipeline graph, as readable strings (empty when ready)."""
    missing = []
    for topic, pubs, subs in PIPELINE_CONNECTIONS:
        name = qualified_name(namespace, topic)
        have_pubs, have_subs = node.count_publishers(name), node.count_subscribers(name)
        if have_pubs < pubs or have_subs < subs:
            missing.append(f"{name}: {have_pubs}/{pubs} publishers, {have_subs}/{subs} subscribers")
    return missing


class LifecycleClient:
    """Drives a managed node through its lifecycle services, like nav2's lifecycle manager."""

    def __init__(self, node: Node, target: str) -> None:
        from lifecycle_msgs.srv import ChangeState, GetState

        self._node = node
        self.target = target
        self._change = node.create_client(ChangeState, f"{target}/change_state")
        self._get = node.create_client(GetState, f"{target}/get_state")

    def _call(self, client, request, spin: Callable[[float], None], timeout_s: float):  # noqa: ANN001
        deadline = time.monotonic() + timeout_s
        while not client.service_is_ready():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{client.srv_name} is not available")
            spin(0.05)
        future = client.call_async(request)
        while not future.done():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{client.srv_name} did not answer")
            spin(0.05)
        return future.result()

    def state(self, spin: Callable[[float], None], timeout_s: float = 10.0) -> str:
        from lifecycle_msgs.srv import GetState

        return self._call(self._get, GetState.Request(), spin, timeout_s).current_state.label

    def transition(
        self, label: str, spin: Callable[[float], None], timeout_s: float = 30.0
    ) -> bool:
        from lifecycle_msgs.msg import Transition
        from lifecycle_msgs.srv import ChangeState

        ids = {
            "configure": Transition.TRANSITION_CONFIGURE,
            "activate": Transition.TRANSITION_ACTIVATE,
            "deactivate": Transition.TRANSITION_DEACTIVATE,
            "cleanup": Transition.TRANSITION_CLEANUP,
        }
        request = ChangeState.Request()
        request.transition.id = ids[label]
        return bool(self._call(self._change, request, spin, timeout_s).success)
