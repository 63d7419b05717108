"""Energy aggregator: adds up the stages' EnergyReports of each inference (window), publishes the
totals, and reports the health of every stage (rates, missing reports, latency) on /diagnostics."""

from __future__ import annotations

import math
import time
from collections import OrderedDict, defaultdict
from typing import Any

from rclpy.lifecycle import LifecyclePublisher, State, TransitionCallbackReturn

from hsnn_perception.core.energy.figure import EnergyFigure, total
from hsnn_perception.core.errors import ConfigurationError, EnergyAccountingError
from hsnn_perception.core.events.stream import SequenceGaps
from hsnn_perception.core.io.bag.msgtypes import time_to_ns
from hsnn_perception.core.registry import node_name
from hsnn_perception.graph import ENERGY, ENERGY_TOTAL
from hsnn_perception.msg import EnergyReport
from hsnn_perception.nodes.base import HsnnNode, guarded_transition, reliable_qos, run_node
from hsnn_perception.nodes.conversions import (
    UINT64_MAX,
    MessageFieldError,
    energy_report,
    figure_from_report,
    read_stamp_us,
)

# Windows waiting for their last stage: beyond this many (reports at wild window stamps) the
# oldest is published as partial, so memory stays bounded whatever arrives.
MAX_PENDING_WINDOWS = 1024
OP_COUNTS = ("synaptic_ops", "neuron_updates", "spikes", "macs")


class EnergyAggregatorNode(HsnnNode):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(node_name("energy"), **kwargs)
        self.declare("stages", ["snn", "bridge", "classifier"])
        # A window still missing a stage after this long is published as a partial total.
        self.declare("timeout_s", 2.0)
        self.stages: list[str] = []  # set at configure; diagnostics run before that too
        self.timeout_s = 2.0
        self._pending: OrderedDict[int, dict[str, Any]] = OrderedDict()
        self._stage_counts: defaultdict[str, int] = defaultdict(int)
        self._stage_latency: defaultdict[str, float] = defaultdict(float)
        self._missing: defaultdict[str, int] = defaultdict(int)
        self._gaps: dict[str, SequenceGaps] = {}  # per stage: window ids never reported
        self._e2e_last: float | None = None  # s, of the last total published
        self._pub: LifecyclePublisher | None = None  # made at configure

    @guarded_transition
    def on_configure(self, state: State) -> TransitionCallbackReturn:
        self.stages = [str(s) for s in self.param("stages")]
        if not self.stages:
            self.reject("parameter", "stages is empty")
            return TransitionCallbackReturn.FAILURE
        try:
            self.timeout_s = self.checked("timeout_s", lambda v: 0 < v < math.inf, "finite, > 0")
        except ConfigurationError as exc:
            self.reject("parameter", str(exc))
            return TransitionCallbackReturn.FAILURE
        self._pub = self.managed_publisher(EnergyReport, ENERGY_TOTAL, reliable_qos(100))
        return TransitionCallbackReturn.SUCCESS

    @guarded_transition
    def on_activate(self, state: State) -> TransitionCallbackReturn:
        self.active_subscription(EnergyReport, ENERGY, self._on_report, reliable_qos(200))
        self.active_timer(0.2, self._expire)
        return super().on_activate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self._pending.clear()
        return super().on_cleanup(state)

    def _on_report(self, msg: EnergyReport) -> None:
        self.count("received.reports")
        if msg.stage not in self.stages:
            if msg.stage != "total":
                self.reject("report", f"report of unknown stage {msg.stage[:64]!r} ignored")
            return
        # Every field is checked here, where a bad report can be dropped alone: a report that
        # fails later (in the timer, or in the sum) would take its window's other reports along.
        try:
            key = read_stamp_us(msg.window_stamp)
            figure = figure_from_report(msg)
        except MessageFieldError as exc:
            self.reject(exc.reason, f"{msg.stage} report for window {msg.window_id}: {exc}")
            return
        except EnergyAccountingError as exc:
            self.reject("report", f"{msg.stage} report for window {msg.window_id}: {exc}")
            return
        gaps = self._gaps.setdefault(msg.stage, SequenceGaps())
        gaps.see(int(msg.window_id))
        self._stage_counts[msg.stage] += 1
        if math.isfinite(msg.latency_s) and msg.latency_s >= 0:
            self._stage_latency[msg.stage] += msg.latency_s
        # Keyed by the window's sensor start time: the one thing every stage computes alike
        # (a window id counts from the first event each node saw).
        entry = self._pending.get(key)
        if entry is None:
            while len(self._pending) >= MAX_PENDING_WINDOWS:
                self.count("expired.pending_overflow")
                self._expire_one(next(iter(self._pending)))
            entry = self._pending[key] = {"reports": {}, "first_seen": time.monotonic()}
        if msg.stage in entry["reports"]:
            self.reject("report", f"second {msg.stage} report for window {msg.window_id}")
            return
        entry["reports"][msg.stage] = (msg, figure)
        if all(s in entry["reports"] for s in self.stages):
            self._publish(key)

    def _expire(self) -> None:
        now = time.monotonic()
        for key in [w for w, e in self._pending.items() if now - e["first_seen"] > self.timeout_s]:
            self._expire_one(key)

    def _expire_one(self, key: int) -> None:
        entry = self._pending[key]
        if set(entry["reports"]) <= {"driver"}:
            # Only the driver saw this window (a silent stretch the SNN node skips): no
            # inference happened, so there is no total to give.
            del self._pending[key]
            self.count("dropped.driver_only_windows")
            return
        for stage in self.stages:
            if stage not in entry["reports"]:
                self._missing[stage] += 1
        self._publish(key)

    def _publish(self, key: int) -> None:
        entry = self._pending.pop(key)
        reports: dict[str, tuple[EnergyReport, EnergyFigure]] = entry["reports"]
        # The inference's window id is the SNN node's (the driver counts from its own first event).
        named = [r for s, (r, _) in reports.items() if s != "driver"] or [
            r for r, _ in reports.values()
        ]
        window_id = int(named[0].window_id)
        figure = total([f for _, f in reports.values()])
        saturated = [k for k in OP_COUNTS if getattr(figure, k) > UINT64_MAX]
        if saturated:  # the message's uint64 fields hold the largest count they can
            self.count("saturated.op_counts")
            figure.method += "; saturated at 2^64-1: " + ", ".join(saturated)
        missing = [s for s in self.stages if s not in reports]
        if missing:
            figure.method += "; no report from: " + ", ".join(missing)
        # End-to-end: from the start of the earliest stage to the end of the last one (host clock:
        # header stamps follow the node clock, which is sensor time under use_sim_time).
        # The driver's report marks the window's close (its work is spread over the window).
        starts = [
            time_to_ns(r.host_stamp)
            - (0.0 if s == "driver" or not math.isfinite(r.latency_s) else r.latency_s * 1e9)
            for s, (r, _) in reports.items()
        ]
        ends = [time_to_ns(r.host_stamp) for r, _ in reports.values()]
        self._e2e_last = (max(ends) - min(starts)) * 1e-9
        self._pub.publish(energy_report(figure, window_id, key, self.get_clock().now().to_msg()))
        self.count("published.totals")

    def diagnostic_values(self) -> dict[str, str]:
        values = {}
        for stage in self.stages:
            n = self._stage_counts[stage]
            values[f"{stage}.reports"] = str(n)
            values[f"{stage}.missing_windows"] = str(self._missing[stage])
            # Window ids this stage never reported (a lost report, or a window the stage never got).
            gaps = self._gaps.get(stage)
            values[f"lost.windows.{stage}"] = str(gaps.lost if gaps else 0)
            if n:
                values[f"{stage}.mean_latency_ms"] = f"{self._stage_latency[stage] / n * 1e3:.3f}"
        if self._e2e_last is not None:
            values["end_to_end_latency_ms"] = f"{self._e2e_last * 1e3:.3f}"
        values["pending_windows"] = str(len(self._pending))
        return values


def main(args: list[str] | None = None) -> int:
    return run_node(EnergyAggregatorNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
