"""Per-window results of a pipeline run and their summary (accuracy, latency percentiles, energy).

Filled from live ROS messages by the demo's monitor and by DDS replay, so the numbers a user sees
are computed in one place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass
class StageRecord:
    latency_s: float
    energy_j: float
    source: str
    method: str
    device: str
    end_ns: int  # host system clock when the stage finished this window (EnergyReport.host_stamp)


@dataclass
class WindowRecord:
    window_id: int
    start_us: int
    true_class: int | None = None
    true_label: str = ""
    predicted_class: int | None = None
    predicted_label: str = ""
    score: float = math.nan
    stages: dict[str, StageRecord] = field(default_factory=dict)
    total_energy_j: float = math.nan
    total_source: str = ""

    @property
    def correct(self) -> bool | None:
        if self.true_class is None or self.predicted_class is None:
            return None
        return self.true_class == self.predicted_class

    def end_to_end_s(self) -> float:
        """From the window's close to the end of the last stage (host clock, same host).

        The close is when the driver reported the window (it had sent the window's last packet);
        without a driver report, the start of the first stage. The driver's own work on the
        window is spread over the whole window, so it is its stage latency, not part of this.
        """
        if not self.stages:
            return math.nan
        starts = [
            s.end_ns * 1e-9 - (0.0 if name == "driver" else s.latency_s)
            for name, s in self.stages.items()
        ]
        ends = [s.end_ns * 1e-9 for s in self.stages.values()]
        return max(ends) - min(starts)


def percentile(values: list[float], q: float) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.percentile(finite, q)) if finite else math.nan


@dataclass
class StageSummary:
    stage: str
    windows: int
    latency_p50_ms: float
    latency_p95_ms: float
    energy_mean_j: float
    sources: list[str]
    methods: list[str]
    devices: list[str]


@dataclass
class RunSummary:
    windows: int
    labelled: int
    correct: int
    accuracy: float
    stages: list[StageSummary]
    end_to_end_p50_ms: float
    end_to_end_p95_ms: float
    total_energy_mean_j: float
    total_sources: list[str]


def summarize(records: list[WindowRecord], stage_order: tuple[str, ...]) -> RunSummary:
    predicted = [r for r in records if r.predicted_class is not None]
    labelled = [r for r in predicted if r.correct is not None]
    correct = sum(1 for r in labelled if r.correct)
    stages = []
    for stage in stage_order:
        recs = [r.stages[stage] for r in records if stage in r.stages]
        lat = [s.latency_s * 1e3 for s in recs]
        energy = [s.energy_j for s in recs if not math.isnan(s.energy_j)]
        stages.append(
            StageSummary(
                stage=stage,
                windows=len(recs),
                latency_p50_ms=percentile(lat, 50),
                latency_p95_ms=percentile(lat, 95),
                energy_mean_j=float(np.mean(energy)) if energy else math.nan,
                sources=sorted({s.source for s in recs}),
                methods=sorted({s.method for s in recs}),
                devices=sorted({s.device for s in recs}),
            )
        )
    e2e = [r.end_to_end_s() * 1e3 for r in records if set(stage_order) <= set(r.stages)]
    totals = [r.total_energy_j for r in records if not math.isnan(r.total_energy_j)]
    return RunSummary(
        windows=len(predicted),
        labelled=len(labelled),
        correct=correct,
        accuracy=correct / len(labelled) if labelled else math.nan,
        stages=stages,
        end_to_end_p50_ms=percentile(e2e, 50),
        end_to_end_p95_ms=percentile(e2e, 95),
        total_energy_mean_j=float(np.mean(totals)) if totals else math.nan,
        total_sources=sorted({r.total_source for r in records if r.total_source}),
    )


def format_energy(joules: float) -> str:
    if math.isnan(joules):
        return "n/a"
    for unit, scale in (("J", 1.0), ("mJ", 1e-3), ("uJ", 1e-6), ("nJ", 1e-9)):
        if abs(joules) >= scale:
            return f"{joules / scale:.3g} {unit}"
    return f"{joules / 1e-12:.3g} pJ"


def format_summary(summary: RunSummary) -> str:
    lines = [
        f"windows classified: {summary.windows} (with labels: {summary.labelled})",
        f"accuracy: {summary.accuracy * 100:.1f}% ({summary.correct}/{summary.labelled})"
        if summary.labelled
        else "accuracy: n/a (no labels)",
        "",
        f"{'stage':<12}{'windows':>8}{'p50 ms':>10}{'p95 ms':>10}{'energy/inference':>18}  source",
    ]
    for s in summary.stages:
        lines.append(
            f"{s.stage:<12}{s.windows:>8}{s.latency_p50_ms:>10.2f}{s.latency_p95_ms:>10.2f}"
            f"{format_energy(s.energy_mean_j):>18}  {'/'.join(s.sources) or '-'}"
        )
    lines.append(
        f"{'end-to-end':<12}{'':>8}{summary.end_to_end_p50_ms:>10.2f}"
        f"{summary.end_to_end_p95_ms:>10.2f}{format_energy(summary.total_energy_mean_j):>18}  "
        f"{'/'.join(summary.total_sources) or '-'}"
    )
    lines.append("")
    lines.append("how each energy figure was obtained:")
    for s in summary.stages:
        for device, method in zip(s.devices, s.methods, strict=False):
            lines.append(f"  {s.stage} on {device}: {method}")
    return "\n".join(lines)
