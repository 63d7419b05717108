"""Tests of hsnn_perception.core.energy.figure: figures that say where they
came from, their dict form, totals."""

from __future__ import annotations

import json
import math

import pytest

from hsnn_perception.core.energy.figure import (
    SOURCE_MEASURED,
    SOURCE_MODELLED,
    SOURCE_UNAVAILABLE,
    EnergyError,
    EnergyFigure,
    total,
    unavailable,
)
from hsnn_perception.core.energy.models import (
    accumulator_energy,
    ann_energy,
    loihi_energy,
)


def test_figure_rejects_bad_source_and_fake_zero():
    with pytest.raises(EnergyError):
        EnergyFigure("snn", "x", "guessed", "", 1.0, 1.0, 1.0)
    with pytest.raises(EnergyError):
        EnergyFigure("snn", "x", SOURCE_UNAVAILABLE, "", 0.0, math.nan, 1.0)


def test_figure_dict_round_trip_through_json():
    figs = [
        loihi_energy(3, 4, 5, 1e-3, n_cores=2),
        unavailable("driver", "cpu", "no RAPL", latency_s=1e-4),
    ]
    for fig in figs:
        back = EnergyFigure.from_dict(json.loads(json.dumps(fig.to_dict())))
        assert back.stage == fig.stage and back.source == fig.source
        for key in ("energy_j", "power_w", "latency_s"):
            a, b = getattr(fig, key), getattr(back, key)
            assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b)
    with pytest.raises(EnergyError):
        EnergyFigure.from_dict({"stage": "snn"})


def test_total_measured_modelled_and_unavailable_parts():
    meas = EnergyFigure("driver", "cpu", SOURCE_MEASURED, "RAPL", 0.5, 50.0, 0.01)
    meas2 = EnergyFigure("bridge", "cpu", SOURCE_MEASURED, "RAPL", 0.25, 25.0, 0.01)
    model = loihi_energy(1000, 10, 1, 0.02, n_cores=1)
    gone = unavailable("classifier", "cpu", "no meter", latency_s=0.03)

    all_measured = total([meas, meas2])
    assert all_measured.source == SOURCE_MEASURED
    assert all_measured.energy_j == pytest.approx(0.75)
    assert all_measured.power_w == pytest.approx(0.75 / 0.02)

    mixed = total([meas, model, gone])
    assert mixed.source == SOURCE_MODELLED
    assert mixed.energy_j == pytest.approx(0.5 + model.energy_j)
    assert mixed.latency_s == pytest.approx(0.06)
    assert "modelled: snn" in mixed.method and "classifier" in mixed.method
    assert "lower bound" in mixed.method
    assert mixed.synaptic_ops == 1000

    nothing = total([gone])
    assert nothing.source == SOURCE_UNAVAILABLE and math.isnan(nothing.energy_j)
    with pytest.raises(EnergyError):
        total([])


def test_total_is_in_pipeline_order_whatever_the_arrival_order():
    snn = loihi_energy(10, 10, 1, 1e-3)
    bridge = accumulator_energy(10, 1e-5)
    ann = ann_energy(100, None, "ncs2")
    a, b = total([ann, snn, bridge]), total([bridge, ann, snn])
    assert a.device == b.device == " + ".join([snn.device, bridge.device, ann.device])
    assert a.method == b.method and a.energy_j == pytest.approx(b.energy_j)
