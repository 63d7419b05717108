"""The four stages and the energy aggregator over real DDS on the synthetic source, as separate
processes and composed in one process."""

from __future__ import annotations

import math
import random

import pytest

from hsnn_perception.graph import pipeline
from hsnn_perception.tools.session import ALL_STAGES, run_session

pytestmark = pytest.mark.slow

SAMPLES = 16
CHANCE = 1 / 11


def check_result(result, samples: int) -> None:
    records = result.records
    ids = [r.window_id for r in records]
    assert ids == list(range(samples)), f"a prediction for every window, got {ids}"
    labelled = [r for r in records if r.correct is not None]
    assert len(labelled) == samples, "every window matched to its ground-truth label"
    accuracy = sum(r.correct for r in labelled) / len(labelled)
    assert accuracy >= 0.6, f"accuracy {accuracy:.2f} is not far above chance ({CHANCE:.2f})"
    for r in records:
        # Every stage reports, the driver too (its own work on the window's packets).
        assert set(r.latency_s) == set(ALL_STAGES), f"window {r.window_id}: {set(r.latency_s)}"
        assert set(r.stage_end_ns) == set(ALL_STAGES) and r.end_to_end() > 0
        driver = r.energy["driver"]
        assert driver.source in ("measured", "unavailable") and "RAPL" in driver.method
        assert r.total_source in ("measured", "modelled"), r.total_source
        total = r.energy["total"].energy_j
        assert not math.isnan(total) and total > 0
        snn = r.energy["snn"]
        assert snn.source == "modelled" and "Davies" in snn.method and snn.synaptic_ops > 0
        assert all(v > 0 for v in r.latency_s.values())
        assert len(r.scores) == 11 and 0 < r.score <= 1 and r.prediction_name


@pytest.mark.parametrize("composed", [False, True], ids=["processes", "composed"])
def test_pipeline_over_dds(default_bundle_dir, tmp_path, composed):
    specs = pipeline(model=str(default_bundle_dir), num_samples=SAMPLES, seed=11)
    result = run_session(
        specs,
        SAMPLES,
        namespace=f"it_{random.randint(0, 10**6)}",
        composed=composed,
        timeout_s=120,
        log_dir=tmp_path,
    )
    check_result(result, SAMPLES)
    for name, code in result.exit_codes.items():
        assert code in (0, -2), f"{name} exited with {code}:\n{result.logs[name]}"
