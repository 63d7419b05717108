"""Per-window records of a live run (hsnn_perception.evaluation.results)."""

from __future__ import annotations

import math

import pytest

from hsnn_perception.evaluation.results import StageRecord, WindowRecord, summarize


def _stage(end_s: float, latency_s: float, energy_j: float = 1e-6) -> StageRecord:
    return StageRecord(latency_s, energy_j, "modelled", "m", "d", int(end_s * 1e9))


def test_end_to_end_runs_from_the_window_close_at_the_driver():
    rec = WindowRecord(0, 0)
    rec.stages = {
        "driver": _stage(10.000, 0.005, math.nan),  # reported at the close; 5 ms of spread work
        "snn": _stage(10.003, 0.002),
        "bridge": _stage(10.004, 0.0001),
        "classifier": _stage(10.006, 0.0005),
    }
    assert rec.end_to_end_s() == pytest.approx(0.006)
    del rec.stages["driver"]  # without a driver report: from the first stage's start
    assert rec.end_to_end_s() == pytest.approx(0.006 - 0.005 + 0.004, abs=1e-9)
    assert WindowRecord(1, 0).end_to_end_s() != WindowRecord(1, 0).end_to_end_s()  # NaN


def test_summary_takes_end_to_end_from_windows_with_all_stages():
    full, partial = (
        WindowRecord(0, 0, predicted_class=1),
        WindowRecord(1, 160_000, predicted_class=2),
    )
    full.stages = {"snn": _stage(1.0, 0.001), "classifier": _stage(1.002, 0.001)}
    full.stages["driver"] = _stage(0.999, 0.004, math.nan)
    partial.stages = {"snn": _stage(2.0, 0.001)}
    summary = summarize([full, partial], ("snn", "classifier"))
    assert summary.end_to_end_p50_ms == pytest.approx(3.0)  # close at 0.999 s to 1.002 s
    assert [s.windows for s in summary.stages] == [2, 1]
