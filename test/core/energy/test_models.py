"""Tests of hsnn_perception.core.energy.models: the published per-operation models and each stage's
figure (measured, modelled or unavailable)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from core.energy.energy_fixtures import rapl_tree
from hsnn_perception.core.energy.figure import (
    SOURCE_MEASURED,
    SOURCE_MODELLED,
    SOURCE_UNAVAILABLE,
    EnergyError,
)
from hsnn_perception.core.energy.meters import (
    cpu_meter,
)
from hsnn_perception.core.energy.models import (
    LoihiMeasurement,
    accumulator_energy,
    ann_energy,
    bridge_stage_energy,
    classifier_stage_energy,
    driver_stage_energy,
    loihi_energy,
    loihi_latency,
    snn_stage_energy,
)
from hsnn_perception.core.energy.profiles import DEFAULT_ANN_DEVICE
from hsnn_perception.core.snn.runtime import OpCounts


def test_loihi_dynamic_energy_follows_davies_2018_table2():
    fig = loihi_energy(synaptic_ops=1000, neuron_updates=200, spikes=50, latency_s=math.nan)
    expected = 1000 * 23.6e-12 + 200 * 81e-12 + 50 * 1.7e-12
    assert fig.energy_j == pytest.approx(expected)
    assert fig.source == SOURCE_MODELLED
    assert "Davies" in fig.method and "upper bound" in fig.method
    assert math.isnan(fig.power_w)
    assert (fig.synaptic_ops, fig.neuron_updates, fig.spikes) == (1000, 200, 50)


def test_loihi_active_updates_and_static_power():
    dyn = loihi_energy(0, 100, 0, 1e-3, active_updates=40)
    assert dyn.energy_j == pytest.approx(40 * 81e-12 + 60 * 52e-12)
    with_static = loihi_energy(0, 100, 0, 1e-3, active_updates=40, n_cores=64)
    static = (3.34 / 32) * 0.5 * 1e-3
    assert with_static.energy_j - dyn.energy_j == pytest.approx(static)
    assert with_static.power_w == pytest.approx(with_static.energy_j / 1e-3)
    assert "Frady" in with_static.method


def test_loihi2_says_it_borrows_loihi1_figures():
    a = loihi_energy(10, 10, 10, math.nan, chip="loihi")
    b = loihi_energy(10, 10, 10, math.nan, chip="loihi2")
    assert a.energy_j == b.energy_j
    assert "no published Loihi 2" in b.method
    assert b.device.startswith("loihi2")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"synaptic_ops": -1, "neuron_updates": 0, "spikes": 0, "latency_s": 0.0},
        {
            "synaptic_ops": 0,
            "neuron_updates": 5,
            "spikes": 0,
            "latency_s": 0.0,
            "active_updates": 6,
        },
        {"synaptic_ops": 0, "neuron_updates": 0, "spikes": 0, "latency_s": 0.0, "chip": "tn"},
        {"synaptic_ops": 0, "neuron_updates": 0, "spikes": 0, "latency_s": 1.0, "n_cores": 0},
    ],
)
def test_loihi_bad_arguments_raise_energy_error(kwargs):
    with pytest.raises(EnergyError):
        loihi_energy(**kwargs)


def test_loihi_latency_model():
    t = loihi_latency(timesteps=16, synaptic_ops=1000, neuron_updates=100, n_cores=1)
    assert t == pytest.approx(16 * 113e-9 + 1000 * 3.5e-9 + 100 * 8.4e-9)
    assert loihi_latency(16, 1000, 100, n_cores=10) < t


def test_ann_energy_profiles_and_unavailable_cpu():
    fig = ann_energy(macs=1_000_000, latency_s=2e-3, device="jetson-orin-nano")
    assert fig.energy_j == pytest.approx(15.0 * 2e-3)
    assert fig.source == SOURCE_MODELLED and "datasheet" in fig.method
    modelled_latency = ann_energy(macs=1_000_000, latency_s=None, device="ncs2")
    assert modelled_latency.latency_s == pytest.approx(2e6 / 1e12)
    assert "lower bound" in modelled_latency.method
    cpu = ann_energy(macs=5, latency_s=1e-3, device="cpu")
    assert cpu.source == SOURCE_UNAVAILABLE and math.isnan(cpu.energy_j) and cpu.macs == 5
    given = ann_energy(5, 1e-3, device="cpu", power_w=20.0, power_source="RAPL avg")
    assert given.energy_j == pytest.approx(0.02) and "RAPL avg" in given.method
    with pytest.raises(EnergyError):
        ann_energy(-1, 1.0, "ncs2")


def test_accumulator_energy_counts_additions():
    from hsnn_perception.core.energy.profiles import FP32_ADD_J

    fig = accumulator_energy(1000, 1e-4)
    assert fig.source == "modelled" and "Horowitz" in fig.method
    assert fig.energy_j == pytest.approx(1000 * FP32_ADD_J)
    assert fig.power_w == pytest.approx(fig.energy_j / 1e-4)
    assert "given" in accumulator_energy(10, 1e-4, per_add_j=2e-12).method
    with pytest.raises(EnergyError):
        accumulator_energy(-1, 1e-4)


def _board_measurement() -> LoihiMeasurement:
    return LoihiMeasurement(
        energy_j=30e-6,
        dynamic_j=10e-6,
        static_j=20e-6,
        power_w=0.6,
        device_time_s=50e-6,
        rails_j={"vdd": 25e-6, "vdd_m": 4e-6, "vdd_io": 1e-6},
        steps=16,
        description="Lava Loihi2HWProfiler energy probe (lava-loihi)",
    )


def test_snn_stage_energy_prefers_the_board_measurement():
    ops = OpCounts(synaptic_ops=5000, neuron_updates=800, spikes=60)
    fig = snn_stage_energy(ops, 16, chip="loihi2", measurement=_board_measurement())
    assert fig.source == SOURCE_MEASURED and fig.stage == "snn"
    assert (fig.energy_j, fig.power_w, fig.latency_s) == (30e-6, 0.6, 50e-6)
    assert (fig.synaptic_ops, fig.neuron_updates, fig.spikes) == (5000, 800, 60)
    assert "Loihi2HWProfiler" in fig.method and "over 16 steps" in fig.method
    assert "dynamic + static energy" in fig.method and "vdd_m" in fig.method
    # One method text for every window (reports group figures by it).
    other = snn_stage_energy(ops, 16, measurement=replace(_board_measurement(), energy_j=1e-6))
    assert other.method == fig.method
    assert "measured" in fig.device


def test_snn_stage_energy_models_without_a_measurement_and_says_why():
    ops = OpCounts(synaptic_ops=5000, neuron_updates=800, spikes=60)
    fig = snn_stage_energy(
        ops, 16, chip="loihi", cores=4, ran_on="lava loihi2 hw", measurement_error="no lava-loihi"
    )
    chip_s = loihi_latency(16, 5000, 800, 4)
    want = loihi_energy(5000, 800, 60, chip_s, n_cores=4)
    assert fig.source == SOURCE_MODELLED
    assert fig.energy_j == pytest.approx(want.energy_j) and fig.latency_s == pytest.approx(chip_s)
    assert fig.device == "loihi (modelled; ran on lava loihi2 hw)"
    assert fig.method.endswith("not measured: no lava-loihi")
    assert "latency = modelled loihi chip time" in fig.method
    busier = OpCounts(synaptic_ops=9000, neuron_updates=800, spikes=70)
    assert (
        snn_stage_energy(busier, 16, cores=4, ran_on="lava loihi2 hw").method
        == (fig.method.split("; not measured")[0])
    )
    plain = snn_stage_energy(ops, 16)  # no cores: dynamic only, no complaint about measuring
    assert "dynamic energy only" in plain.method and "not measured" not in plain.method
    assert snn_stage_energy(None, 16).source == SOURCE_UNAVAILABLE


def test_bridge_and_classifier_stage_figures_measured_modelled_or_unavailable(tmp_path):
    rapl_tree(tmp_path, {"intel-rapl:0": 1_000_000})
    meter = cpu_meter(tmp_path)
    measured = bridge_stage_energy(1000, 40, 1e-4, meter, 2e-6)
    assert measured.source == SOURCE_MEASURED and measured.energy_j == 2e-6
    modelled = bridge_stage_energy(1000, 40, 1e-4)
    assert modelled.source == SOURCE_MODELLED and modelled.spikes == 40
    assert modelled.energy_j == pytest.approx(1000 * 0.9e-12)
    assert bridge_stage_energy(1000, 40, 1e-4, per_add_j=0).source == SOURCE_UNAVAILABLE
    fig = classifier_stage_energy(5000, 3e-4, "cpu", "onnxruntime[CPU]", meter, 4e-5)
    assert fig.source == SOURCE_MEASURED and fig.macs == 5000
    fig = classifier_stage_energy(5000, 3e-4, "cpu", "onnxruntime[CPU]")
    assert fig.device == f"{DEFAULT_ANN_DEVICE} (modelled)" and "ran here on onnx" in fig.method
    none = classifier_stage_energy(5000, 3e-4, "cpu", "ort", model_device="")
    assert none.source == SOURCE_UNAVAILABLE and none.macs == 5000


def test_driver_stage_figure_measured_or_timed_only(tmp_path):
    rapl_tree(tmp_path, {"intel-rapl:0": 1_000_000})
    meter = cpu_meter(tmp_path)
    fig = driver_stage_energy(2e-3, meter, 5e-5)
    assert fig.source == SOURCE_MEASURED and fig.energy_j == 5e-5 and fig.stage == "driver"
    timed = driver_stage_energy(2e-3)
    assert timed.source == SOURCE_UNAVAILABLE and "only timed" in timed.method
    assert timed.latency_s == 2e-3 and math.isnan(timed.energy_j)
    assert driver_stage_energy(2e-3, meter).source == SOURCE_UNAVAILABLE  # nothing measured
