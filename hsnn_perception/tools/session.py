"""Run the pipeline's processes, wait until the graph is connected, start the source through its
lifecycle services, and collect the per-window results. Shared by the demo, DDS replay and tests."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hsnn_perception.core.errors import OrchestrationError
from hsnn_perception.core.registry import ENERGY_STAGES
from hsnn_perception.evaluation.records import EvalRecord
from hsnn_perception.graph import NodeSpec, qualified_name, unmanaged
from hsnn_perception.launcher import ProcessGroup

STAGES = ENERGY_STAGES[1:]  # a window is complete with these (the driver may not report)
# The driver reports too where it knows the model's window length (graph.model_window_us).
ALL_STAGES = ENERGY_STAGES


class PipelineError(OrchestrationError, RuntimeError):
    """The pipeline did not come up or a node died; the message has the node's log."""


@dataclass
class SessionResult:
    records: list[EvalRecord]
    exit_codes: dict[str, int | None]
    logs: dict[str, str] = field(default_factory=dict)
    # The last /diagnostics status per node (fully qualified name -> key -> value).
    diagnostics: dict[str, dict[str, str]] = field(default_factory=dict)


def run_session(
    specs: Sequence[NodeSpec],
    expected_windows: int,
    *,
    namespace: str = "hsnn",
    composed: bool = False,
    timeout_s: float = 120.0,
    startup_timeout_s: float = 60.0,
    on_classification: Callable[[EvalRecord], None] | None = None,
    log_dir: Path | None = None,
    source_node: str = "event_driver",
    settle_s: float = 0.2,
) -> SessionResult:
    """Start ``specs`` (the source held back), connect, play, collect ``expected_windows``, then
    listen ``settle_s`` more (the nodes' next /diagnostics status holds their final counts)
    before stopping the nodes.

    The source plays once every stage is connected and this monitor's subscriptions have matched
    every publisher, the source's energy reports included where it makes them (``window_us``).
    """
    source_reports = any(
        s.name == source_node and int(s.parameters.get("window_us", 0)) > 0 for s in specs
    )
    stage_reports = len(STAGES)  # snn, bridge, classifier report from their activation on

    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from hsnn_perception.tools.monitor import LifecycleClient, PipelineMonitor, missing_connections

    specs = [
        s.with_parameters(wait_for_subscribers=1) if s.name == source_node else s
        for s in unmanaged(list(specs), source_node)
    ]
    own_context = not rclpy.ok()
    if own_context:
        rclpy.init()
    monitor = PipelineMonitor(namespace=namespace, on_classification=on_classification)
    executor = SingleThreadedExecutor()
    executor.add_node(monitor)

    def spin(seconds: float) -> None:
        executor.spin_once(timeout_sec=seconds)

    group = ProcessGroup(specs, namespace=namespace, composed=composed, log_dir=log_dir)

    def check_alive() -> None:
        dead = {n: rc for n, rc in group.poll().items() if rc is not None}
        if dead:
            logs = "\n".join(f"--- {n} exited with {rc}:\n{group.log(n)}" for n, rc in dead.items())
            raise PipelineError(f"pipeline process died:\n{logs}")

    try:
        with group:
            deadline = time.monotonic() + startup_timeout_s
            while missing := missing_connections(monitor, namespace) + monitor.unmatched(
                stage_reports
            ):
                check_alive()
                if time.monotonic() > deadline:
                    logs = "\n".join(f"--- {n}:\n{group.log(n)}" for n in group.procs)
                    raise PipelineError(
                        "pipeline did not connect in time: " + "; ".join(missing) + "\n" + logs
                    )
                spin(0.1)
            source = LifecycleClient(monitor, qualified_name(namespace, source_node))
            for transition in ("configure", "activate"):
                if not source.transition(transition, spin):
                    raise PipelineError(
                        f"{source_node} refused to {transition}:\n"
                        + group.log(_proc(group, source_node))
                    )
                if transition == "configure":
                    # The labels publisher exists now; match it before anything is published.
                    deadline = time.monotonic() + startup_timeout_s
                    while monitor.labels_subscription.get_publisher_count() < 1:
                        if time.monotonic() > deadline:
                            raise PipelineError(f"{source_node}'s labels never connected")
                        spin(0.05)
                    energy_publishers = stage_reports + int(source_reports)
                    while unmatched := monitor.unmatched(energy_publishers):
                        if time.monotonic() > deadline:
                            raise PipelineError("not connected in time: " + "; ".join(unmatched))
                        spin(0.05)
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                spin(0.1)
                done = monitor.classified()
                if len(done) >= expected_windows and all(
                    set(STAGES) <= set(r.latency_s) and r.total_source for r in done
                ):
                    break
                check_alive()
            settled = time.monotonic() + settle_s
            while time.monotonic() < settled:
                spin(0.05)
            records = monitor.classified()
            diagnostics = dict(monitor.diagnostics)
            codes = group.stop()
            logs = {n: group.log(n) for n in group.procs}
    finally:
        monitor.destroy_node()
        if own_context:
            rclpy.try_shutdown()
    return SessionResult(records=records, exit_codes=codes, logs=logs, diagnostics=diagnostics)


def _proc(group: ProcessGroup, node: str) -> str:
    return "composed_pipeline" if group.composed else node
