"""Report code (shared by offline and DDS replay): summary numbers, files, round trips."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from hsnn_perception.core.energy.figure import EnergyFigure, total, unavailable
from hsnn_perception.core.energy.models import accumulator_energy, ann_energy, loihi_energy
from hsnn_perception.evaluation.records import EvalRecord, ReplayResult, ResultFormatError
from hsnn_perception.evaluation.report import (
    family_table,
    summarize,
    to_markdown,
    to_text,
    write_family_report,
    write_report,
)


def _live(window_id: int, start_us: int, stages: dict[str, tuple], label: int = 0) -> EvalRecord:
    """A record as the live monitor fills it: stage -> (latency, energy, source, method,
    device, host end time in ns)."""
    rec = EvalRecord(window_id, start_us, start_us, label=label, prediction=label)
    for stage, (latency, energy_j, source, method, device, end_ns) in stages.items():
        rec.latency_s[stage] = latency
        rec.stage_end_ns[stage] = end_ns
        rec.energy[stage] = EnergyFigure(stage, device, source, method, energy_j, math.nan, latency)
    return rec


LABELS = ["a", "b", "c"]


def _result() -> ReplayResult:
    rng = np.random.default_rng(0)
    truth = [0, 0, 1, 1, 2, 2, None]
    pred = [0, 1, 1, 1, 0, 2, 1]
    recs = []
    for i, (t, p) in enumerate(zip(truth, pred, strict=True)):
        snn = loihi_energy(1000 * (i + 1), 100, 10, 1e-4)
        cls = unavailable("classifier", "cpu", "no meter", 2e-3)
        figs = {"snn": snn, "classifier": cls}
        figs["total"] = total(list(figs.values()))
        recs.append(
            EvalRecord(
                window_id=i,
                t_start_us=i * 160_000,
                t_end_us=(i + 1) * 160_000,
                label=t,
                prediction=p,
                scores=[0.2, 0.5, 0.3],
                latency_s={"snn": float(rng.uniform(1e-3, 5e-3)), "classifier": 1e-3},
                energy=figs,
                n_events=100 + i,
                layers=[{"layer": "1:conv", "synaptic_ops": 5, "neuron_updates": 64, "spikes": 8}],
            )
        )
    return ReplayResult(
        bag="x.bag",
        bundle="models/m",
        mode="offline",
        labels=LABELS,
        records=recs,
        events_read=700,
        dropped={"late events": 3},
        bag_report={"skipped": {"damaged record": 1}, "notes": ["cut"]},
        settings={"model": "m", "timesteps": 16, "interval": 4},
    )


def test_summary_numbers():
    res = _result()
    s = summarize(res)
    assert s["windows"] == 7 and s["labelled_windows"] == 6
    assert s["correct"] == 4 and s["accuracy"] == pytest.approx(4 / 6)
    assert s["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert [c["accuracy"] for c in s["per_class"]] == [0.5, 1.0, 0.5]
    snn_ms = [r.latency_s["snn"] * 1e3 for r in res.records]
    assert s["latency_ms"]["snn"]["p95"] == pytest.approx(np.percentile(snn_ms, 95))
    e2e = [(r.latency_s["snn"] + 1e-3) * 1e3 for r in res.records]
    assert s["latency_ms"]["end_to_end"]["p50"] == pytest.approx(np.median(e2e))
    snn_e = [r.energy["snn"].energy_j for r in res.records]
    assert s["energy"]["snn"]["energy_mean_j"] == pytest.approx(np.mean(snn_e))
    assert s["energy"]["classifier"]["energy_mean_j"] is None
    assert s["energy"]["classifier"]["sources"] == {"unavailable": 7}
    assert s["energy"]["total"]["sources"] == {"modelled": 7}
    assert s["firing_rates"] == [
        {"layer": "1:conv", "spikes": 56, "neuron_updates": 448, "rate_per_neuron_step": 0.125}
    ]
    json.dumps(s, allow_nan=False)  # no NaN anywhere


def test_markdown_names_how_figures_were_obtained():
    md = to_markdown(summarize(_result()))
    assert "66.67% (4/6)" in md
    assert "Davies" in md and "no meter" in md
    assert "late events: 3" in md and "bag: damaged record: 1" in md
    assert "| **2** | 1 | 0 | 1 |" in md


def test_write_report_files_and_result_round_trip(tmp_path):
    res = _result()
    paths = write_report(res, tmp_path / "rep")
    for key in ("summary", "markdown", "result", "confusion", "latency", "energy"):
        assert paths[key].is_file() and paths[key].stat().st_size > 0
    assert paths["confusion"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    back = ReplayResult.load(paths["result"])
    assert summarize(back) == summarize(res)
    assert json.loads(paths["summary"].read_text())["accuracy"] == pytest.approx(4 / 6)


def test_result_format_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ResultFormatError):
        ReplayResult.load(bad)
    bad.write_text(json.dumps({"format": "other"}))
    with pytest.raises(ResultFormatError):
        ReplayResult.load(bad)
    with pytest.raises(ResultFormatError):
        EvalRecord.from_dict({"window_id": "x"})


def test_losses_are_shown_beside_accuracy(tmp_path):
    res = _result()
    res.mode = "dds"
    md = to_markdown(summarize(res))
    assert "- accuracy: 66.67% (4/6)\n- lost in transit: none counted" in md
    res.lost = {"event packets (seq gaps at the SNN node)": 5, "tensors windows": 0}
    md = to_markdown(summarize(res))
    accuracy_line = md.index("- accuracy:")
    lost_line = md.index(
        "- lost in transit (5 in all): event packets (seq gaps at the SNN node): 5"
    )
    assert md.count("\n", accuracy_line, lost_line) == 1  # the very next line
    back = ReplayResult.load(res.save(tmp_path / "r.json"))
    assert back.lost == res.lost and summarize(back)["lost"] == res.lost
    res.mode, res.lost = "offline", {}
    assert "lost in transit" not in to_markdown(summarize(res))


def test_empty_result_summarizes():
    res = ReplayResult("b", "m", "offline", LABELS)
    s = summarize(res)
    assert s["accuracy"] is None and s["windows"] == 0
    assert "n/a" in to_markdown(s)


def test_live_record_end_to_end_runs_from_the_window_close_at_the_driver():
    rec = _live(
        0,
        0,
        {
            # reported at the close; 5 ms of work spread over the window
            "driver": (0.005, math.nan, "unavailable", "-", "cpu", 10_000_000_000),
            "snn": (0.002, 1e-6, "modelled", "Davies", "loihi", 10_003_000_000),
            "bridge": (0.0001, 3e-8, "modelled", "Horowitz", "cpu", 10_004_000_000),
            "classifier": (0.0005, 1e-6, "modelled", "x", "jetson", 10_006_000_000),
        },
    )
    assert rec.end_to_end() == pytest.approx(0.006)
    del rec.stage_end_ns["driver"]  # without a driver report: from the first stage's start
    assert rec.end_to_end() == pytest.approx(0.006 - 0.001, abs=1e-9)
    del rec.stage_end_ns["bridge"]  # a window some stage has not reported yet: no figure
    assert math.isnan(rec.end_to_end())
    back = EvalRecord.from_dict(json.loads(json.dumps(_live(1, 0, {}).to_dict())))
    assert back.stage_end_ns == {} and math.isnan(back.end_to_end())


def test_live_records_summarize_like_offline_ones():
    rec = _live(
        3,
        480_000,
        {
            "snn": (2e-3, 1e-6, "modelled", "Davies", "loihi", 10_000_000),
            "classifier": (1e-3, math.nan, "unavailable", "none", "cpu", 11_000_000),
        },
        label=1,
    )
    rec.energy["total"] = EnergyFigure(
        "total", "loihi+cpu", "modelled", "sum", 1e-6, math.nan, math.nan
    )
    rec.prediction_name, rec.scores = "b", [0.1, 0.8, 0.1]
    assert rec.correct is True and rec.score == pytest.approx(0.8)
    assert rec.total_source == "modelled"
    back = EvalRecord.from_dict(json.loads(json.dumps(rec.to_dict())))
    assert back.stage_end_ns == rec.stage_end_ns and back.prediction_name == "b"
    res = ReplayResult("b", "m", "dds", LABELS, records=[rec])
    s = summarize(res)
    assert s["accuracy"] == 1.0 and s["energy"]["classifier"]["energy_mean_j"] is None
    text = to_text(s)
    assert "accuracy: 100.0% (1/1)" in text and "snn on loihi: Davies" in text


def test_family_table(tmp_path):
    s1 = summarize(_result())
    s2 = dict(s1, model="other", accuracy=None)
    table = family_table([s1, s2])
    assert "| m | 16/4 | 66.67% |" in table and "| other | 16/4 | n/a |" in table
    paths = write_family_report([s1, s2], tmp_path)
    assert "Model family" in paths["markdown"].read_text()
    assert len(json.loads(paths["json"].read_text())) == 2


def _pipeline_result(outlier_ms: float = 500.0) -> ReplayResult:
    """Stages whose energies span decades (30 nJ bridge, uJ SNN, ~85 uJ lower-bound classifier)
    and one slow window."""
    rng = np.random.default_rng(1)
    recs = []
    for i in range(20):
        figs = {
            "snn": loihi_energy(1_000_000, 10_000, 1000, 2e-3),
            "bridge": accumulator_energy(33_333, 2e-5),
            "classifier": ann_energy(2_000_000, None, device="jetson-nano"),
        }
        figs["total"] = total(list(figs.values()))
        latency = {"snn": float(rng.uniform(1e-3, 3e-3)), "bridge": 2e-5, "classifier": 1e-3}
        if i == 7:
            latency["snn"] = outlier_ms / 1e3
        recs.append(
            EvalRecord(
                i, i * 160_000, (i + 1) * 160_000, i % 3, i % 3, latency_s=latency, energy=figs
            )
        )
    return ReplayResult(
        "x.bag", "models/m", "offline", LABELS, records=recs, settings={"model": "m"}
    )


def test_latency_plot_is_one_box_per_stage_on_a_log_axis():
    from hsnn_perception.evaluation.report import latency_figure

    fig = latency_figure(_pipeline_result())
    ax = fig.axes[0]
    labels = [t.get_text().split(" ")[0] for t in ax.get_yticklabels()]
    assert labels == ["end_to_end", "classifier", "bridge", "snn"]  # snn at the top
    boxes = [p for p in ax.patches if type(p).__name__ == "PathPatch"]
    assert len(boxes) == 4
    assert ax.get_xscale() == "log"  # 20 us bridge, 500 ms outlier
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "median" in legend and "p5-p95" in legend
    # Within a decade: a linear axis.
    close = _pipeline_result()
    for r in close.records:
        r.latency_s = {"snn": 2e-3, "classifier": 1e-3}
    assert latency_figure(close).axes[0].get_xscale() == "linear"


def test_energy_plot_shows_every_stage_on_a_log_axis_with_a_legend():
    from hsnn_perception.evaluation.report import energy_figure

    summary = summarize(_pipeline_result())
    ax = energy_figure(summary).axes[0]
    assert ax.get_yscale() == "log"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["snn", "bridge", "classifier", "total"]
    bars = [p for p in ax.patches if type(p).__name__ == "Rectangle"]
    assert len(bars) == 4
    tops = [b.get_y() + b.get_height() for b in bars]
    for top, stage in zip(tops, ("snn", "bridge", "classifier", "total"), strict=True):
        assert top == pytest.approx(summary["energy"][stage]["energy_mean_j"])
    bridge = bars[1]
    assert tops[1] == pytest.approx(30e-9, rel=0.01)
    low, high = ax.get_ylim()
    # A visible bar (at least a tenth of the axis' height), not a sliver above 0.
    assert low <= bridge.get_y() and math.log(tops[1] / low) / math.log(high / low) >= 0.1
    assert bars[3].get_hatch() == "//" and not bars[0].get_hatch()  # the lower-bound total
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert {"measured", "modelled", "unavailable", "lower bound"} <= set(legend)
    # A stage without a figure is named, not silently missing.
    ax = energy_figure(summarize(_result())).axes[0]
    assert "n/a" in [t.get_text() for t in ax.texts]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["snn", "classifier", "total"]


def test_a_lower_bound_total_says_so():
    summary = summarize(_pipeline_result())
    bounds = summary["energy"]["total"]["lower_bound"]
    assert set(bounds) == {"bridge", "classifier"}  # the SNN figure is an upper bound
    assert "peak ops/s (lower bound)" in bounds["classifier"]
    md = to_markdown(summary)
    total_row = next(line for line in md.splitlines() if line.startswith("| total |"))
    assert "| >= " in total_row
    assert "- **the total is a lower bound** (>=): bridge: " in md
    assert "| >= " in family_table([summary])
    # Unavailable stage figures are left out of the total: a lower bound too.
    assert (
        "no figure in 7 of 7 windows"
        in summarize(_result())["energy"]["total"]["lower_bound"]["classifier"]
    )


def test_dds_total_lists_each_device_once_in_pipeline_order():
    recs = []
    for i in range(4):
        stages = {
            "snn": (2e-3, 1e-6, "modelled", "Davies", "loihi", 10_000_000),
            "bridge": (2e-5, 3e-8, "modelled", "Horowitz", "host cpu", 10_000_000),
            "classifier": (1e-3, 1e-4, "modelled", "x", "jetson-nano", 11_000_000),
        }
        order = list(stages)[::-1] if i % 2 else list(stages)  # reports arrive in any order
        rec = _live(i, i * 160_000, {k: stages[k] for k in order})
        rec.energy["total"] = EnergyFigure(
            "total", "+".join(order), "modelled", "aggregator", 1.0103e-4, math.nan, math.nan
        )
        recs.append(rec)
    summary = summarize(ReplayResult("b", "m", "dds", LABELS, records=recs))
    assert summary["energy"]["total"]["devices"] == ["loihi", "host cpu", "jetson-nano"]
    total_row = next(line for line in to_markdown(summary).splitlines() if "| total |" in line)
    assert total_row.endswith("| loihi; host cpu; jetson-nano |")
