"""Reports of an evaluation run: summary figures, Markdown, JSON and PNG plots.

:func:`summarize` turns a :class:`ReplayResult` into plain numbers (accuracy, confusion matrix,
latency percentiles, energy per stage with how it was obtained, firing rates and how they compare
with the model's reference data (operating_range.py), drops);
:func:`write_report` writes ``report.json``, ``report.md`` and ``confusion.png``,
``latency.png``, ``energy.png`` into a directory. :func:`write_family_report` compares models.
A little over 500 lines: the summary schema, its Markdown and its plots are kept in one module so
that a figure added to one is added to all.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from hsnn_perception.core.energy.figure import SOURCE_UNAVAILABLE
from hsnn_perception.evaluation.operating_range import (
    REFERENCE_KEY,
    compare_with_reference,
    markdown_lines,
)
from hsnn_perception.evaluation.records import STAGE_ORDER, ReplayResult

PERCENTILES = (50, 95, 99)


def _pct(values: list[float]) -> dict[str, float | None]:
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return {f"p{q}": None for q in PERCENTILES} | {"mean": None, "n": 0}
    arr = np.asarray(finite, dtype=np.float64)
    out: dict[str, float | None] = {f"p{q}": float(np.percentile(arr, q)) for q in PERCENTILES}
    out["mean"] = float(arr.mean())
    out["n"] = len(finite)
    return out


def summarize(result: ReplayResult) -> dict[str, Any]:
    """Summary numbers of a run (JSON-ready: NaN never appears, None means "no figure")."""
    recs = result.records
    n_classes = len(result.labels)
    labelled = [r for r in recs if r.correct is not None]
    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    outside = 0
    for r in labelled:
        if 0 <= r.label < n_classes and 0 <= r.prediction < n_classes:
            confusion[r.label, r.prediction] += 1
        else:
            outside += 1
    correct = int(np.trace(confusion))
    # Over every window, labelled or not: all an unlabelled recording says about the model.
    predicted = Counter(r.prediction for r in recs)
    per_class = []
    for c in range(n_classes):
        total = int(confusion[c].sum())
        per_class.append(
            {
                "class_id": c,
                "label": result.labels[c],
                "windows": total,
                "accuracy": int(confusion[c, c]) / total if total else None,
                "predicted": int(predicted.get(c, 0)),
            }
        )
    stages = [s for s in STAGE_ORDER if any(s in r.latency_s for r in recs)]
    latency = {s: _pct([r.latency_s[s] * 1e3 for r in recs if s in r.latency_s]) for s in stages}
    latency["end_to_end"] = _pct([r.end_to_end() * 1e3 for r in recs])
    energy = {}
    for s in [*stages, "total"]:
        figs = [r.energy[s] for r in recs if s in r.energy]
        if not figs:
            continue
        avail = [f.energy_j for f in figs if f.source != SOURCE_UNAVAILABLE]
        power = [f.power_w for f in figs if not math.isnan(f.power_w)]
        fig_latency = [f.latency_s for f in figs if not math.isnan(f.latency_s)]
        energy[s] = {
            "windows": len(figs),
            "energy_mean_j": float(np.mean(avail)) if avail else None,
            "power_mean_w": float(np.mean(power)) if power else None,
            # the time each energy figure is averaged over (on the device that is modelled)
            "figure_latency_mean_ms": float(np.mean(fig_latency)) * 1e3 if fig_latency else None,
            "sources": dict(Counter(f.source for f in figs)),
            "devices": sorted({f.device for f in figs}),
            "methods": sorted({f.method for f in figs}),
        }
    if "total" in energy:
        # A total's own device text joins the stages' in the order their reports came (DDS: it
        # varies by window); list each stage's devices once, in pipeline order, instead.
        parts = [d for s in stages if s in energy for d in energy[s]["devices"]]
        energy["total"]["devices"] = list(dict.fromkeys(parts)) or energy["total"]["devices"]
        energy["total"]["lower_bound"] = _lower_bound_parts(energy, stages)
    layers: dict[str, dict[str, float]] = {}
    for r in recs:
        for d in r.layers:
            acc = layers.setdefault(str(d["layer"]), {"spikes": 0, "neuron_updates": 0})
            acc["spikes"] += int(d.get("spikes", 0))
            acc["neuron_updates"] += int(d.get("neuron_updates", 0))
    firing = [
        {
            "layer": name,
            "spikes": v["spikes"],
            "neuron_updates": v["neuron_updates"],
            "rate_per_neuron_step": v["spikes"] / v["neuron_updates"]
            if v["neuron_updates"]
            else None,
        }
        for name, v in layers.items()
    ]
    return {
        "model": result.settings.get("model", Path(result.bundle).name),
        "bag": result.bag,
        "mode": result.mode,
        "windows": len(recs),
        "labelled_windows": len(labelled),
        "correct": correct,
        "accuracy": correct / len(labelled) if labelled else None,
        "labels_outside_model": outside,
        "per_class": per_class,
        "confusion": confusion.tolist(),
        "latency_ms": latency,
        "energy": energy,
        "firing_rates": firing,
        "operating_range": compare_with_reference(recs, _reference(result.bundle)),
        "events_read": result.events_read,
        "events_per_window_mean": float(np.mean([r.n_events for r in recs])) if recs else None,
        "dropped": dict(result.dropped),
        "lost": dict(result.lost),
        "bag_report": result.bag_report,
        "settings": result.settings,
        "notes": list(result.notes),
    }


def _reference(bundle: str) -> dict[str, Any] | None:
    """The bundle's reference activity (operating_range.py), if its manifest has one."""
    try:
        doc = json.loads((Path(bundle) / "manifest.json").read_text())
        return doc.get("metrics", {}).get(REFERENCE_KEY)
    except (OSError, ValueError, AttributeError):
        return None  # no readable manifest here: the report goes without the comparison


def _lower_bound_parts(energy: dict[str, Any], stages: list[str]) -> dict[str, str]:
    """Stage -> why its figure only bounds the total from below: a method that says so (the
    arithmetic-only bridge, a classifier latency modelled from peak throughput), or windows
    without a figure (left out of the sum)."""
    parts = {}
    for stage in stages:
        v = energy.get(stage)
        if v is None:
            continue
        clauses = [
            c.strip() for m in v["methods"] for c in m.split(";") if "lower bound" in c.lower()
        ]
        missing = v["sources"].get(SOURCE_UNAVAILABLE, 0)
        if missing:
            clauses.append(f"no figure in {missing} of {v['windows']} windows, left out")
        if clauses:
            parts[stage] = "; ".join(dict.fromkeys(clauses))
    return parts


def unread_messages(bag_report: dict[str, Any]) -> dict[str, int]:
    """Per topic, messages the bag's index lists that reading did not return (a corrupt chunk,
    a cut file): without this, a damaged bag could read as "nothing dropped or skipped"."""
    read = bag_report.get("read", {}) or {}
    out = {}
    for topic, n in sorted((bag_report.get("expected", {}) or {}).items()):
        missing = int(n or 0) - int(read.get(topic, 0) or 0)
        if missing > 0:
            out[topic] = missing
    return out


def _fmt(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}g}"


def format_energy(joules: float | None) -> str:
    if joules is None or math.isnan(joules):
        return "n/a"
    for unit, scale in (("J", 1.0), ("mJ", 1e-3), ("uJ", 1e-6), ("nJ", 1e-9)):
        if abs(joules) >= scale:
            return f"{joules / scale:.3g} {unit}"
    return f"{joules / 1e-12:.3g} pJ"


def _total_energy(figure: dict[str, Any]) -> str:
    """The mean energy of a row, marked >= when it is a total that only bounds from below."""
    text = format_energy(figure.get("energy_mean_j"))
    return f">= {text}" if figure.get("lower_bound") and text != "n/a" else text


def _lost_line(summary: dict[str, Any]) -> list[str]:
    """Beside the accuracy: what never reached a node (an accuracy over the windows that came
    through says nothing about the ones that did not)."""
    lost = summary.get("lost") or {}
    if not lost:
        return ["- lost in transit: none counted"] if summary["mode"] == "dds" else []
    parts = ", ".join(f"{k}: {v}" for k, v in lost.items())
    return [f"- lost in transit ({sum(lost.values())} in all): {parts}"]


def to_text(summary: dict[str, Any]) -> str:
    """A run's summary for a terminal (the demo): accuracy, then per stage latency p50/p95 and
    mean energy per inference with its source, end to end, and how each figure was obtained."""
    s = summary
    lines = [
        f"windows classified: {s['windows']} (with labels: {s['labelled_windows']})",
        "accuracy: n/a (no labels)"
        if s["accuracy"] is None
        else f"accuracy: {s['accuracy'] * 100:.1f}% ({s['correct']}/{s['labelled_windows']})",
        "",
        f"{'stage':<12}{'windows':>8}{'p50 ms':>10}{'p95 ms':>10}{'energy/inference':>18}  source",
    ]
    latency, energy = s["latency_ms"], s["energy"]
    for stage in [k for k in latency if k != "end_to_end"] + ["end_to_end"]:
        lat, fig = latency[stage], energy.get("total" if stage == "end_to_end" else stage, {})
        name = "end-to-end" if stage == "end_to_end" else stage
        windows = "" if stage == "end_to_end" else str(lat["n"])
        lines.append(
            f"{name:<12}{windows:>8}{_fmt_ms(lat['p50']):>10}{_fmt_ms(lat['p95']):>10}"
            f"{_total_energy(fig) if fig else 'n/a':>18}  {'/'.join(fig.get('sources', {})) or '-'}"
        )
    lines += ["", "how each energy figure was obtained:"]
    for stage, fig in energy.items():
        if stage != "total":
            lines += [f"  {stage} on {', '.join(fig['devices'])}: {m}" for m in fig["methods"]]
    return "\n".join(lines)


def _fmt_ms(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def to_markdown(summary: dict[str, Any]) -> str:
    s = summary
    acc = (
        "n/a (no labelled windows)"
        if s["accuracy"] is None
        else (f"{s['accuracy'] * 100:.2f}% ({s['correct']}/{s['labelled_windows']})")
    )
    lines = [
        f"# Evaluation of `{s['model']}`",
        "",
        f"- bag: `{s['bag']}` ({s['mode']})",
        f"- windows: {s['windows']} (labelled: {s['labelled_windows']})",
        f"- accuracy: {acc}",
        *_lost_line(s),
        f"- events read: {s['events_read']}",
        "",
        "## Latency per stage (ms, on this host)",
        "",
        "| stage | p50 | p95 | p99 | mean |",
        "|---|---|---|---|---|",
    ]
    for stage, v in s["latency_ms"].items():
        lines.append(
            f"| {stage} | {_fmt(v['p50'])} | {_fmt(v['p95'])} | {_fmt(v['p99'])} | "
            f"{_fmt(v['mean'])} |"
        )
    lines += [
        "",
        "## Energy per inference",
        "",
        "| stage | energy (mean) | power (mean) | over (ms) | source | device |",
        "|---|---|---|---|---|---|",
    ]
    for stage, v in s["energy"].items():
        sources = ", ".join(f"{k} x{n}" for k, n in v["sources"].items())
        power = "n/a" if v["power_mean_w"] is None else f"{v['power_mean_w']:.3g} W"
        lines.append(
            f"| {stage} | {_total_energy(v)} | {power} | "
            f"{_fmt(v['figure_latency_mean_ms'])} | {sources} | "
            f"{'; '.join(v['devices'])} |"
        )
    lines += ["", "How each figure was obtained:", ""]
    for stage, v in s["energy"].items():
        for m in v["methods"]:
            lines.append(f"- **{stage}**: {m}")
    bounds = s["energy"].get("total", {}).get("lower_bound")
    if bounds:
        why = "; ".join(f"{stage}: {reason}" for stage, reason in bounds.items())
        lines.append(f"- **the total is a lower bound** (>=): {why}")
    lines += [
        "",
        "## Accuracy and predictions per class",
        "",
        "| class | label | windows | accuracy | predicted (all windows) |",
        "|---|---|---|---|---|",
    ]
    for c in s["per_class"]:
        a = "n/a" if c["accuracy"] is None else f"{c['accuracy'] * 100:.1f}%"
        lines.append(
            f"| {c['class_id']} | {c['label']} | {c['windows']} | {a} | {c.get('predicted', '')} |"
        )
    lines += ["", "## Confusion matrix (rows: truth, columns: prediction)", ""]
    n = len(s["confusion"])
    lines.append("| | " + " | ".join(str(i) for i in range(n)) + " |")
    lines.append("|---" * (n + 1) + "|")
    for i, row in enumerate(s["confusion"]):
        lines.append(f"| **{i}** | " + " | ".join(str(v) for v in row) + " |")
    if s["firing_rates"]:
        lines += [
            "",
            "## Firing rates of the spiking layers",
            "",
            "| layer | spikes | neuron updates | spikes per neuron per step |",
            "|---|---|---|---|",
        ]
        for f in s["firing_rates"]:
            lines.append(
                f"| {f['layer']} | {f['spikes']} | {f['neuron_updates']} | "
                f"{_fmt(f['rate_per_neuron_step'])} |"
            )
    if s.get("operating_range"):
        lines += ["", *markdown_lines(s["operating_range"])]
    lines += ["", "## Dropped and skipped", ""]
    dropped = {
        **s["dropped"],
        **{f"bag: {k}": v for k, v in s["bag_report"].get("skipped", {}).items()},
        **{
            f"bag: {topic} messages listed in the index but not readable (damaged bag?)": n
            for topic, n in unread_messages(s["bag_report"]).items()
        },
    }
    if dropped:
        lines += [f"- {k}: {v}" for k, v in dropped.items()]
    else:
        lines.append("- nothing dropped or skipped")
    notes = list(s["notes"]) + list(s["bag_report"].get("notes", []))
    if notes:  # one line each: a note may quote a multi-line parser message
        lines += ["", "## Notes", ""] + [f"- {' '.join(str(n).split())}" for n in notes]
    lines += ["", "## Settings", "", "```json", json.dumps(s["settings"], indent=2), "```", ""]
    return "\n".join(lines)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def _log_if_decades(values: list[float], decades: float = 2.0) -> bool:
    """Log scale when the positive values span ``decades`` or more: one slow window or a 30 nJ
    stage beside a mJ one must not squash the rest to nothing."""
    positive = [v for v in values if v > 0]
    return bool(positive) and max(positive) / min(positive) >= 10**decades


def latency_figure(result: ReplayResult) -> Any:
    """Per-stage latency as one horizontal box per stage (and end to end): box p25-p75, line the
    median, whiskers p5-p95, dots beyond; log axis when the latencies span decades."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    plt = _pyplot()
    data: dict[str, list[float]] = {}
    for stage in [*STAGE_ORDER, "end_to_end"]:
        if stage == "end_to_end":
            vals = [r.end_to_end() * 1e3 for r in result.records]
        else:
            vals = [r.latency_s[stage] * 1e3 for r in result.records if stage in r.latency_s]
        vals = [v for v in vals if not math.isnan(v)]
        if vals:
            data[stage] = vals
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.6 * max(len(data), 1)))
    ax.set_xlabel("latency per window (ms, this host)")
    if not data:  # no window was classified: say so rather than draw an empty, unlabelled plot
        ax.text(0.5, 0.5, "no classified window", ha="center", va="center", transform=ax.transAxes)
        fig.tight_layout()
        return fig
    stages = list(data)[::-1]  # first stage at the top
    import matplotlib

    # `orientation` came in matplotlib 3.10, which deprecates `vert` (distributions ship older).
    major, minor = (int(x) for x in matplotlib.__version__.split(".")[:2])
    across = {"orientation": "horizontal"} if (major, minor) >= (3, 10) else {"vert": False}
    ax.boxplot(
        [data[s] for s in stages],
        **across,
        whis=(5, 95),
        patch_artist=True,
        boxprops={"facecolor": "tab:blue", "alpha": 0.4},
        medianprops={"color": "black"},
        flierprops={"marker": ".", "markersize": 3},
    )
    ax.set_yticks(range(1, len(stages) + 1), [f"{s} (n={len(data[s])})" for s in stages])
    if _log_if_decades([v for vals in data.values() for v in vals]):
        ax.set_xscale("log")
    ax.grid(axis="x", which="both", alpha=0.3)
    ax.legend(
        handles=[
            Patch(facecolor="tab:blue", alpha=0.4, label="p25-p75"),
            Line2D([], [], color="black", label="median"),
            Line2D([], [], color="black", marker="|", linestyle="-", label="p5-p95"),
            Line2D([], [], marker=".", linestyle="", color="black", label="beyond"),
        ],
        fontsize=7,
        loc="best",
    )
    ax.set_title("latency per stage")
    fig.tight_layout()
    return fig


SOURCE_COLOURS = {"measured": "tab:green", "modelled": "tab:blue", "unavailable": "tab:gray"}


def energy_figure(summary: dict[str, Any]) -> Any:
    """Mean energy per inference of every stage and the total, one bar each, coloured by how it
    was obtained (legend), log axis when the figures span decades (so a 30 nJ stage shows beside
    a mJ one); a stage without a figure is marked n/a, a lower-bound total hatched."""
    from matplotlib.patches import Patch

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    names = list(summary["energy"])
    values = [summary["energy"][s]["energy_mean_j"] for s in names]
    known = [v for v in values if v is not None and v > 0]
    log = _log_if_decades(known)
    if log:
        ax.set_yscale("log")
        # Bars start a decade below the smallest figure: every known stage has a visible bar.
        ax.set_ylim(min(known) / 10, max(known) * 10)
    lower_bound = bool(summary["energy"].get("total", {}).get("lower_bound"))
    for i, (stage, v) in enumerate(zip(names, values, strict=True)):
        sources = summary["energy"][stage]["sources"]
        src = max(sources.items(), key=lambda kv: kv[1])[0]
        bottom = min(known) / 10 if log else 0
        if v is None or (log and v <= 0):
            ax.text(i, bottom, "n/a" if v is None else "0 J", ha="center", va="bottom", fontsize=8)
            continue
        hatch = "//" if stage == "total" and lower_bound else None
        ax.bar(i, v - bottom, bottom=bottom, color=SOURCE_COLOURS.get(src, "tab:gray"), hatch=hatch)
        label = format_energy(v)
        ax.text(i, v, f">= {label}" if hatch else label, ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("energy per inference (J)")
    handles = [Patch(color=c, label=k) for k, c in SOURCE_COLOURS.items()]
    if lower_bound:
        handles.append(Patch(facecolor="white", edgecolor="black", hatch="//", label="lower bound"))
    ax.legend(  # beside the axes: inside, it would hide a bar's label
        handles=handles,
        fontsize=8,
        title="how obtained",
        title_fontsize=8,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
    )
    ax.set_title("energy per stage")
    fig.tight_layout()
    return fig


def _plots(result: ReplayResult, summary: dict[str, Any], out: Path) -> dict[str, Path]:
    plt = _pyplot()

    paths: dict[str, Path] = {}
    cm = np.asarray(summary["confusion"])
    fig, ax = plt.subplots(figsize=(6, 5))
    im = ax.imshow(cm, cmap="Blues")
    ax.set_xlabel("prediction")
    ax.set_ylabel("truth")
    ax.set_title(f"confusion ({summary['model']})")
    ticks = range(len(result.labels))
    ax.set_xticks(list(ticks), result.labels, rotation=90, fontsize=7)
    ax.set_yticks(list(ticks), result.labels, fontsize=7)
    for (i, j), v in np.ndenumerate(cm):
        if v:
            ax.text(j, i, str(v), ha="center", va="center", fontsize=7)
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    paths["confusion"] = out / "confusion.png"
    fig.savefig(paths["confusion"], dpi=100)
    plt.close(fig)

    fig = latency_figure(result)
    paths["latency"] = out / "latency.png"
    fig.savefig(paths["latency"], dpi=100)
    plt.close(fig)

    fig = energy_figure(summary)
    paths["energy"] = out / "energy.png"
    fig.savefig(paths["energy"], dpi=100)
    plt.close(fig)
    return paths


def write_report(result: ReplayResult, out_dir: Path | str, plots: bool = True) -> dict[str, Path]:
    """Write report.json, report.md, result.json (per window) and the plots; return the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(result)
    paths = {
        "summary": out / "report.json",
        "markdown": out / "report.md",
        "result": out / "result.json",
    }
    paths["summary"].write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")
    paths["markdown"].write_text(to_markdown(summary))
    result.save(paths["result"])
    if plots:
        paths.update(_plots(result, summary, out))
    return paths


def family_table(summaries: list[dict[str, Any]]) -> str:
    """Markdown table comparing models (the paper's accuracy / latency / power / energy table)."""
    lines = [
        "| model | T/I | accuracy | latency p50 (ms, host) | SNN energy | ANN energy | "
        "total energy | total power | how obtained |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        e = s["energy"]
        acc = "n/a" if s["accuracy"] is None else f"{s['accuracy'] * 100:.2f}%"
        lat = s["latency_ms"]["end_to_end"]["p50"]
        total = e.get("total", {})
        power = total.get("power_mean_w")
        how = "; ".join(
            f"{stage}: {'/'.join(v['sources'])}" for stage, v in e.items() if stage != "total"
        )
        st = s["settings"]
        lines.append(
            f"| {s['model']} | {st.get('timesteps', '?')}/{st.get('interval', '?')} | {acc} | "
            f"{_fmt(lat)} | {format_energy(e.get('snn', {}).get('energy_mean_j'))} | "
            f"{format_energy(e.get('classifier', {}).get('energy_mean_j'))} | "
            f"{_total_energy(total)} | "
            f"{'n/a' if power is None else f'{power:.3g} W'} | {how} |"
        )
    return "\n".join(lines) + "\n"


def write_family_report(summaries: list[dict[str, Any]], out_dir: Path | str) -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md = out / "family.md"
    md.write_text(
        "# Model family comparison\n\n"
        + family_table(summaries)
        + "\nLatency is measured on this host; energy per stage says in the per-model reports "
        "whether it was measured, modelled (with the published source) or unavailable.\n"
    )
    js = out / "family.json"
    js.write_text(json.dumps(summaries, indent=2, allow_nan=False) + "\n")
    return {"markdown": md, "json": js}
