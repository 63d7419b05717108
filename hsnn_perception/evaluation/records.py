"""Per-window evaluation records, filled by the offline evaluator, by DDS replay and by the live
monitor (demo, tests), so one record type and one report code path serve them all.

An :class:`EvalRecord` holds what is known about one event window: ground truth, prediction and
scores, per-stage latency and :class:`~hsnn_perception.core.energy.figure.EnergyFigure`,
per-layer spike counts and, live, when each stage finished on the host. A :class:`ReplayResult`
is a run: the records plus what was read, dropped and skipped.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hsnn_perception.core.energy.figure import EnergyFigure
from hsnn_perception.core.errors import ExperimentError
from hsnn_perception.core.registry import ENERGY_STAGES

STAGE_ORDER = ENERGY_STAGES  # core/registry.py
RESULT_FORMAT = "hsnn-eval/1"


class ResultFormatError(ExperimentError, ValueError):
    """A saved evaluation result cannot be read."""


@dataclass
class EvalRecord:
    window_id: int
    t_start_us: int
    t_end_us: int
    label: int | None = None  # true class; None when the window has no ground truth
    prediction: int | None = None
    scores: list[float] = field(default_factory=list)
    latency_s: dict[str, float] = field(default_factory=dict)  # stage -> compute time
    energy: dict[str, EnergyFigure] = field(default_factory=dict)  # stage (and "total")
    n_events: int = 0
    layers: list[dict[str, Any]] = field(default_factory=list)  # layer, spikes, neuron_updates
    end_to_end_s: float = math.nan  # NaN: from stage_end_ns, else the sum of stage latencies
    label_name: str = ""  # the class names as the messages gave them (live runs)
    prediction_name: str = ""
    # Live runs: host clock (ns) when each stage finished this window (EnergyReport.host_stamp).
    stage_end_ns: dict[str, int] = field(default_factory=dict)

    @property
    def correct(self) -> bool | None:
        if self.label is None or self.prediction is None:
            return None
        return self.label == self.prediction

    @property
    def score(self) -> float:
        """The predicted class's score (NaN where the scores are not known)."""
        p = self.prediction
        return float(self.scores[p]) if p is not None and 0 <= p < len(self.scores) else math.nan

    @property
    def total_source(self) -> str:
        """How the window's energy total was obtained ("" while it has none)."""
        total = self.energy.get("total")
        return "" if total is None else total.source

    def end_to_end(self) -> float:
        """Seconds from the window's close to its classification.

        Live: from the close (when the driver reported the window: it had sent the window's last
        packet; without a driver report, the start of the first stage) to the end of the last
        stage, on the host clock; NaN until the SNN, bridge and classifier have all reported.
        The driver's own work is spread over the whole window, so it is its stage latency, not
        part of this. Offline: the sum of the stages' latencies.
        """
        if not math.isnan(self.end_to_end_s):
            return self.end_to_end_s
        if self.stage_end_ns:
            if not set(STAGE_ORDER[1:]) <= set(self.stage_end_ns):
                return math.nan
            starts = [
                ns * 1e-9 - (0.0 if stage == "driver" else self.latency_s.get(stage, 0.0))
                for stage, ns in self.stage_end_ns.items()
            ]
            return max(ns * 1e-9 for ns in self.stage_end_ns.values()) - min(starts)
        if not self.latency_s:
            return math.nan
        return float(sum(self.latency_s.values()))

    def to_dict(self) -> dict[str, Any]:
        return {
            "window_id": self.window_id,
            "t_start_us": self.t_start_us,
            "t_end_us": self.t_end_us,
            "label": self.label,
            "prediction": self.prediction,
            "scores": [float(s) for s in self.scores],
            "latency_s": dict(self.latency_s),
            "energy": {k: v.to_dict() for k, v in self.energy.items()},
            "n_events": self.n_events,
            "layers": self.layers,
            "end_to_end_s": None if math.isnan(self.end_to_end_s) else self.end_to_end_s,
            "label_name": self.label_name,
            "prediction_name": self.prediction_name,
            "stage_end_ns": dict(self.stage_end_ns),
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> EvalRecord:
        try:
            e2e = doc.get("end_to_end_s")
            return cls(
                window_id=int(doc["window_id"]),
                t_start_us=int(doc["t_start_us"]),
                t_end_us=int(doc["t_end_us"]),
                label=None if doc.get("label") is None else int(doc["label"]),
                prediction=None if doc.get("prediction") is None else int(doc["prediction"]),
                scores=[float(s) for s in doc.get("scores", [])],
                latency_s={k: float(v) for k, v in doc.get("latency_s", {}).items()},
                energy={k: EnergyFigure.from_dict(v) for k, v in doc.get("energy", {}).items()},
                n_events=int(doc.get("n_events", 0)),
                layers=list(doc.get("layers", [])),
                end_to_end_s=math.nan if e2e is None else float(e2e),
                label_name=str(doc.get("label_name", "")),
                prediction_name=str(doc.get("prediction_name", "")),
                stage_end_ns={k: int(v) for k, v in doc.get("stage_end_ns", {}).items()},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ResultFormatError(f"not an evaluation record: {exc}") from exc


@dataclass
class ReplayResult:
    """One evaluation run of one model over one bag."""

    bag: str
    bundle: str
    mode: str  # "offline" | "dds"
    labels: list[str]  # class names, by class id
    records: list[EvalRecord] = field(default_factory=list)
    events_read: int = 0
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> events (or windows)
    # Messages that never arrived, per hop (DDS replay: the nodes' lost.* counters, from seq and
    # window-id gaps); empty offline, where nothing travels.
    lost: dict[str, int] = field(default_factory=dict)
    bag_report: dict[str, Any] = field(default_factory=dict)  # bag.storage.ReadReport.to_dict()
    settings: dict[str, Any] = field(default_factory=dict)  # backend, chip, devices ...
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": RESULT_FORMAT,
            "bag": self.bag,
            "bundle": self.bundle,
            "mode": self.mode,
            "labels": list(self.labels),
            "events_read": self.events_read,
            "dropped": dict(self.dropped),
            "lost": dict(self.lost),
            "bag_report": self.bag_report,
            "settings": self.settings,
            "notes": list(self.notes),
            "records": [r.to_dict() for r in self.records],
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> ReplayResult:
        if not isinstance(doc, dict) or doc.get("format") != RESULT_FORMAT:
            raise ResultFormatError(f"not an {RESULT_FORMAT} result")
        try:
            return cls(
                bag=str(doc["bag"]),
                bundle=str(doc["bundle"]),
                mode=str(doc["mode"]),
                labels=[str(s) for s in doc["labels"]],
                records=[EvalRecord.from_dict(r) for r in doc.get("records", [])],
                events_read=int(doc.get("events_read", 0)),
                dropped={k: int(v) for k, v in doc.get("dropped", {}).items()},
                lost={k: int(v) for k, v in doc.get("lost", {}).items()},
                bag_report=dict(doc.get("bag_report", {})),
                settings=dict(doc.get("settings", {})),
                notes=list(doc.get("notes", [])),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ResultFormatError(f"malformed evaluation result: {exc}") from exc

    def save(self, path: Path | str) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), allow_nan=False, default=_json_default) + "\n")
        return path

    @classmethod
    def load(cls, path: Path | str) -> ReplayResult:
        try:
            doc = json.loads(Path(path).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ResultFormatError(f"cannot read {path}: {exc}") from exc
        return cls.from_dict(doc)


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")
