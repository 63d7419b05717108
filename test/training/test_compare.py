"""Tests of the family comparison (hsnn_perception/training/compare.py, ``hsnn-compare``)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from hsnn_perception.core.energy.models import loihi_energy, loihi_latency
from hsnn_perception.core.hybrid.bundle import ModelBundle
from hsnn_perception.training.cli import compare_main
from hsnn_perception.training.data import InputSpec, synthetic_spikeset
from hsnn_perception.training.export import predict_bundle

TINY = [
    "--n-train", "22", "--n-test", "11", "--epochs", "1", "--max-steps", "1",
    "--sensor-height", "64", "--sensor-width", "64", "--height", "16", "--width", "16",
    "--channels", "4,8,8,8", "--hidden", "16", "--batch-size", "11", "--no-progress",
    "--latency-runs", "3", "--no-cache",
]  # fmt: skip


@pytest.fixture(scope="module")
def comparison(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare")
    assert compare_main(["--out", str(out), "--ks", "0,2,6", "--intervals", "2,8"] + TINY) == 0
    return out


def test_every_model_and_interval_has_a_row(comparison):
    with (comparison / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [(r["model"], r["interval"]) for r in rows] == [
        ("A6", "2"),
        ("A6", "8"),
        ("S2A4", "2"),
        ("S2A4", "8"),
        ("S6", "2"),
        ("S6", "8"),
    ]
    for r in rows:
        assert 0.0 <= float(r["accuracy"]) <= 1.0
        has_snn, has_ann = r["model"] != "A6", r["model"] != "S6"
        assert (r["snn_synaptic_ops"] != "") == has_snn
        assert (r["ann_macs"] != "") == has_ann
        assert float(r["total_energy_uj"]) > 0
    md = (comparison / "results.md").read_text()
    assert md.count("| S2A4 |") == 2
    for png in ("accuracy.png", "energy.png", "latency.png"):
        assert (comparison / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_figures_come_from_the_runtime_counts_and_the_energy_model(comparison):
    rows = {
        (r["model"], r["interval"]): r
        for r in json.loads((comparison / "results.json").read_text())
    }
    row = rows[("S2A4", 8)]
    bundle = ModelBundle.load(comparison / "bundles" / "S2A4-I8")
    test = synthetic_spikeset(11, InputSpec(64, 64, 16, 16), seed=0, first_index=1_000_000)
    run = predict_bundle(bundle, test.spikes)
    syn, neu, spk = (int(round(v)) for v in run.snn_counts.sum(axis=(1, 2)).mean(axis=0))
    assert (row["snn_synaptic_ops"], row["snn_neuron_updates"], row["snn_spikes"]) == (
        syn,
        neu,
        spk,
    )
    assert row["accuracy"] == pytest.approx(float(np.mean(run.predictions == test.labels)))
    fig = loihi_energy(syn, neu, spk, loihi_latency(16, syn, neu))
    assert row["snn_loihi_energy_uj"] == pytest.approx(fig.energy_j * 1e6)
    # a longer interval gives the ANN fewer input frames, hence fewer MACs in its first layer
    assert rows[("S2A4", 8)]["ann_macs"] < rows[("S2A4", 2)]["ann_macs"]


def test_bad_family_selection_is_reported(tmp_path, capsys):
    assert compare_main(["--out", str(tmp_path), "--ks", "7"] + TINY) == 1
    assert "--ks must be within 0..6" in capsys.readouterr().err
    assert compare_main(["--out", str(tmp_path), "--intervals", "a"] + TINY) == 1
    assert "comma-separated integers" in capsys.readouterr().err
