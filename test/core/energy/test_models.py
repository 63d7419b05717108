"""Tests of hsnn_perception.core.energy.models: published models, RAPL/Jetson readers on fake sysfs
trees
(a fake tree isolates the reader from a machine that has no such hardware), and totals."""

from __future__ import annotations

import json
import math
import time
from dataclasses import replace
from pathlib import Path

import pytest

from hsnn_perception.core.energy import models as en
from hsnn_perception.core.energy.models import (
    SOURCE_MEASURED,
    SOURCE_MODELLED,
    SOURCE_UNAVAILABLE,
    EnergyError,
    EnergyFigure,
    PowerMeterError,
)
from hsnn_perception.core.snn.runtime import OpCounts


def test_loihi_dynamic_energy_follows_davies_2018_table2():
    fig = en.loihi_energy(synaptic_ops=1000, neuron_updates=200, spikes=50, latency_s=math.nan)
    expected = 1000 * 23.6e-12 + 200 * 81e-12 + 50 * 1.7e-12
    assert fig.energy_j == pytest.approx(expected)
    assert fig.source == SOURCE_MODELLED
    assert "Davies" in fig.method and "upper bound" in fig.method
    assert math.isnan(fig.power_w)
    assert (fig.synaptic_ops, fig.neuron_updates, fig.spikes) == (1000, 200, 50)


def test_loihi_active_updates_and_static_power():
    dyn = en.loihi_energy(0, 100, 0, 1e-3, active_updates=40)
    assert dyn.energy_j == pytest.approx(40 * 81e-12 + 60 * 52e-12)
    with_static = en.loihi_energy(0, 100, 0, 1e-3, active_updates=40, n_cores=64)
    static = (3.34 / 32) * 0.5 * 1e-3
    assert with_static.energy_j - dyn.energy_j == pytest.approx(static)
    assert with_static.power_w == pytest.approx(with_static.energy_j / 1e-3)
    assert "Frady" in with_static.method


def test_loihi2_says_it_borrows_loihi1_figures():
    a = en.loihi_energy(10, 10, 10, math.nan, chip="loihi")
    b = en.loihi_energy(10, 10, 10, math.nan, chip="loihi2")
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
        en.loihi_energy(**kwargs)


def test_loihi_latency_model():
    t = en.loihi_latency(timesteps=16, synaptic_ops=1000, neuron_updates=100, n_cores=1)
    assert t == pytest.approx(16 * 113e-9 + 1000 * 3.5e-9 + 100 * 8.4e-9)
    assert en.loihi_latency(16, 1000, 100, n_cores=10) < t


def test_ann_energy_profiles_and_unavailable_cpu():
    fig = en.ann_energy(macs=1_000_000, latency_s=2e-3, device="jetson-orin-nano")
    assert fig.energy_j == pytest.approx(15.0 * 2e-3)
    assert fig.source == SOURCE_MODELLED and "datasheet" in fig.method
    modelled_latency = en.ann_energy(macs=1_000_000, latency_s=None, device="ncs2")
    assert modelled_latency.latency_s == pytest.approx(2e6 / 1e12)
    assert "lower bound" in modelled_latency.method
    cpu = en.ann_energy(macs=5, latency_s=1e-3, device="cpu")
    assert cpu.source == SOURCE_UNAVAILABLE and math.isnan(cpu.energy_j) and cpu.macs == 5
    given = en.ann_energy(5, 1e-3, device="cpu", power_w=20.0, power_source="RAPL avg")
    assert given.energy_j == pytest.approx(0.02) and "RAPL avg" in given.method
    with pytest.raises(EnergyError):
        en.ann_energy(-1, 1.0, "ncs2")


def test_figure_rejects_bad_source_and_fake_zero():
    with pytest.raises(EnergyError):
        EnergyFigure("snn", "x", "guessed", "", 1.0, 1.0, 1.0)
    with pytest.raises(EnergyError):
        EnergyFigure("snn", "x", SOURCE_UNAVAILABLE, "", 0.0, math.nan, 1.0)


def test_figure_dict_round_trip_through_json():
    figs = [
        en.loihi_energy(3, 4, 5, 1e-3, n_cores=2),
        en.unavailable("driver", "cpu", "no RAPL", latency_s=1e-4),
    ]
    for fig in figs:
        back = EnergyFigure.from_dict(json.loads(json.dumps(fig.to_dict())))
        assert back.stage == fig.stage and back.source == fig.source
        for key in ("energy_j", "power_w", "latency_s"):
            a, b = getattr(fig, key), getattr(back, key)
            assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b)
    with pytest.raises(EnergyError):
        EnergyFigure.from_dict({"stage": "snn"})


# ---- RAPL on a fake sysfs tree ------------------------------------------------------------


def _rapl_tree(root: Path, packages: dict[str, int], max_range: int = 1000) -> None:
    for name, value in packages.items():
        d = root / name
        d.mkdir(parents=True)
        (d / "energy_uj").write_text(f"{value}\n")
        (d / "max_energy_range_uj").write_text(f"{max_range}\n")
        (d / "name").write_text(f"package-{name[-1]}\n")


def _set(root: Path, name: str, value: int) -> None:
    (root / name / "energy_uj").write_text(f"{value}\n")


def test_rapl_meter_sums_packages_and_ignores_subdomains(tmp_path):
    _rapl_tree(tmp_path, {"intel-rapl:0": 100, "intel-rapl:1": 200, "intel-rapl:0:0": 5})
    meter = en.cpu_meter(tmp_path)
    assert meter is not None and isinstance(meter, en.PowerMeter)
    assert "intel-rapl:0 (package-0)" in meter.description
    assert "intel-rapl:0:0" not in meter.description
    meter.start()
    _set(tmp_path, "intel-rapl:0", 400)
    _set(tmp_path, "intel-rapl:1", 250)
    _set(tmp_path, "intel-rapl:0:0", 999)  # must not count
    time.sleep(0.01)
    energy, power = meter.stop()
    assert energy == pytest.approx(350e-6)
    assert power > 0


def test_rapl_meter_handles_wraparound(tmp_path):
    _rapl_tree(tmp_path, {"intel-rapl:0": 900}, max_range=1000)
    meter = en.cpu_meter(tmp_path)
    meter.start()
    _set(tmp_path, "intel-rapl:0", 50)  # wrapped: 900 -> 1000 -> 0 -> 50
    energy, _ = meter.stop()
    assert energy == pytest.approx(150e-6)


def test_rapl_stop_before_start_and_vanishing_counter(tmp_path):
    _rapl_tree(tmp_path, {"intel-rapl:0": 1})
    meter = en.cpu_meter(tmp_path)
    with pytest.raises(PowerMeterError):
        meter.stop()
    meter.start()
    (tmp_path / "intel-rapl:0" / "energy_uj").unlink()
    with pytest.raises(PowerMeterError, match="energy_uj"):
        meter.stop()


def test_cpu_meter_none_without_readable_counters(tmp_path):
    assert en.cpu_meter(tmp_path / "absent") is None
    _rapl_tree(tmp_path, {"intel-rapl:0": 1})
    (tmp_path / "intel-rapl:0" / "energy_uj").write_text("garbage")
    assert en.cpu_meter(tmp_path) is None


def test_cpu_meter_on_this_machine_works_or_is_none():
    meter = en.cpu_meter()
    if meter is None:
        return  # no RAPL or not readable (Linux >= 5.10 restricts it to root)
    result, energy, power, latency = en.measure(meter, sum, range(100_000))
    assert result == sum(range(100_000))
    assert energy >= 0 and latency > 0


def test_gpu_meter_on_this_machine_works_or_is_none():
    meter = en.gpu_meter()
    if meter is None:
        return  # no pynvml, driver or GPU here
    _, energy, _, latency = en.measure(meter, time.sleep, 0.05)
    assert energy >= 0 and latency >= 0.05


# ---- Jetson INA3221 on fake sysfs trees ------------------------------------------------------


def _hwmon_tree(root: Path, rails: dict[int, tuple[str, int, int]]) -> Path:
    hw = root / "ina3221" / "1-0040" / "hwmon" / "hwmon3"
    hw.mkdir(parents=True)
    for idx, (label, mv, ma) in rails.items():
        (hw / f"in{idx}_label").write_text(label + "\n")
        (hw / f"in{idx}_input").write_text(f"{mv}\n")
        (hw / f"curr{idx}_input").write_text(f"{ma}\n")
    return hw


def test_jetson_meter_orin_layout_prefers_module_input_rail(tmp_path):
    _hwmon_tree(tmp_path, {1: ("VDD_IN", 5000, 1000), 2: ("VDD_CPU_GPU_CV", 5000, 400)})
    meter = en.jetson_meter(tmp_path, period_s=0.002)
    assert meter is not None and "VDD_IN" in meter.description
    assert "VDD_CPU_GPU_CV" not in meter.description
    _, energy, power, latency = en.measure(meter, time.sleep, 0.05)
    assert power == pytest.approx(5.0, rel=0.05)  # 5000 mV x 1000 mA, constant
    # The meter's window (start() to stop()) encloses the call, and can be much longer on a
    # loaded machine: the energy is at least that of the call, at the constant 5 W.
    assert energy >= 5.0 * latency * 0.98


def test_jetson_meter_sums_rails_without_input_rail_and_skips_nc(tmp_path):
    _hwmon_tree(tmp_path, {1: ("VDD_GPU", 1000, 1000), 2: ("VDD_CPU", 1000, 500), 3: ("NC", 1, 1)})
    meter = en.jetson_meter(tmp_path, period_s=0.002)
    assert "VDD_GPU+VDD_CPU" in meter.description
    _, _, power, _ = en.measure(meter, time.sleep, 0.03)
    assert power == pytest.approx(1.5, rel=0.05)


def test_jetson_meter_nano_iio_layout(tmp_path):
    dev = tmp_path / "ina3221x" / "6-0040" / "iio:device0"
    dev.mkdir(parents=True)
    for idx, (name, mw) in enumerate([("POM_5V_IN", 3000), ("POM_5V_GPU", 800)]):
        (dev / f"rail_name_{idx}").write_text(name + "\n")
        (dev / f"in_power{idx}_input").write_text(f"{mw}\n")
    meter = en.jetson_meter(tmp_path, period_s=0.002)
    assert "POM_5V_IN" in meter.description
    _, _, power, _ = en.measure(meter, time.sleep, 0.03)
    assert power == pytest.approx(3.0, rel=0.05)


def test_jetson_meter_none_here_or_without_rails(tmp_path):
    assert en.jetson_meter(tmp_path) is None
    meter = en.jetson_meter()  # this machine: a Jetson or nothing
    assert meter is None or meter.available


def test_sampling_meter_reports_vanished_rail(tmp_path):
    hw = _hwmon_tree(tmp_path, {1: ("VDD_IN", 5000, 1000)})
    meter = en.jetson_meter(tmp_path, period_s=0.002)
    meter.start()
    (hw / "curr1_input").unlink()
    time.sleep(0.02)
    with pytest.raises(PowerMeterError):
        meter.stop()


# ---- measure and total ---------------------------------------------------------------------------


def test_measure_without_meter_gives_nan_energy():
    result, energy, power, latency = en.measure(None, max, 3, 7)
    assert result == 7 and math.isnan(energy) and math.isnan(power) and latency >= 0


def test_total_measured_modelled_and_unavailable_parts():
    meas = EnergyFigure("driver", "cpu", SOURCE_MEASURED, "RAPL", 0.5, 50.0, 0.01)
    meas2 = EnergyFigure("bridge", "cpu", SOURCE_MEASURED, "RAPL", 0.25, 25.0, 0.01)
    model = en.loihi_energy(1000, 10, 1, 0.02, n_cores=1)
    gone = en.unavailable("classifier", "cpu", "no meter", latency_s=0.03)

    all_measured = en.total([meas, meas2])
    assert all_measured.source == SOURCE_MEASURED
    assert all_measured.energy_j == pytest.approx(0.75)
    assert all_measured.power_w == pytest.approx(0.75 / 0.02)

    mixed = en.total([meas, model, gone])
    assert mixed.source == SOURCE_MODELLED
    assert mixed.energy_j == pytest.approx(0.5 + model.energy_j)
    assert mixed.latency_s == pytest.approx(0.06)
    assert "modelled: snn" in mixed.method and "classifier" in mixed.method
    assert "lower bound" in mixed.method
    assert mixed.synaptic_ops == 1000

    nothing = en.total([gone])
    assert nothing.source == SOURCE_UNAVAILABLE and math.isnan(nothing.energy_j)
    with pytest.raises(EnergyError):
        en.total([])


def test_accumulator_energy_counts_additions():
    from hsnn_perception.core.energy.models import FP32_ADD_J, accumulator_energy

    fig = accumulator_energy(1000, 1e-4)
    assert fig.source == "modelled" and "Horowitz" in fig.method
    assert fig.energy_j == pytest.approx(1000 * FP32_ADD_J)
    assert fig.power_w == pytest.approx(fig.energy_j / 1e-4)
    assert "given" in accumulator_energy(10, 1e-4, per_add_j=2e-12).method
    with pytest.raises(EnergyError):
        accumulator_energy(-1, 1e-4)


def _board_measurement() -> en.LoihiMeasurement:
    return en.LoihiMeasurement(
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
    fig = en.snn_stage_energy(ops, 16, chip="loihi2", measurement=_board_measurement())
    assert fig.source == SOURCE_MEASURED and fig.stage == "snn"
    assert (fig.energy_j, fig.power_w, fig.latency_s) == (30e-6, 0.6, 50e-6)
    assert (fig.synaptic_ops, fig.neuron_updates, fig.spikes) == (5000, 800, 60)
    assert "Loihi2HWProfiler" in fig.method and "over 16 steps" in fig.method
    assert "dynamic + static energy" in fig.method and "vdd_m" in fig.method
    # One method text for every window (reports group figures by it).
    other = en.snn_stage_energy(ops, 16, measurement=replace(_board_measurement(), energy_j=1e-6))
    assert other.method == fig.method
    assert "measured" in fig.device


def test_snn_stage_energy_models_without_a_measurement_and_says_why():
    ops = OpCounts(synaptic_ops=5000, neuron_updates=800, spikes=60)
    fig = en.snn_stage_energy(
        ops, 16, chip="loihi", cores=4, ran_on="lava loihi2 hw", measurement_error="no lava-loihi"
    )
    chip_s = en.loihi_latency(16, 5000, 800, 4)
    want = en.loihi_energy(5000, 800, 60, chip_s, n_cores=4)
    assert fig.source == SOURCE_MODELLED
    assert fig.energy_j == pytest.approx(want.energy_j) and fig.latency_s == pytest.approx(chip_s)
    assert fig.device == "loihi (modelled; ran on lava loihi2 hw)"
    assert fig.method.endswith("not measured: no lava-loihi")
    assert "latency = modelled loihi chip time" in fig.method
    busier = OpCounts(synaptic_ops=9000, neuron_updates=800, spikes=70)
    assert (
        en.snn_stage_energy(busier, 16, cores=4, ran_on="lava loihi2 hw").method
        == (fig.method.split("; not measured")[0])
    )
    plain = en.snn_stage_energy(ops, 16)  # no cores: dynamic only, no complaint about measuring
    assert "dynamic energy only" in plain.method and "not measured" not in plain.method
    assert en.snn_stage_energy(None, 16).source == SOURCE_UNAVAILABLE


def test_bridge_and_classifier_stage_figures_measured_modelled_or_unavailable(tmp_path):
    _rapl_tree(tmp_path, {"intel-rapl:0": 1_000_000})
    meter = en.cpu_meter(tmp_path)
    measured = en.bridge_stage_energy(1000, 40, 1e-4, meter, 2e-6)
    assert measured.source == SOURCE_MEASURED and measured.energy_j == 2e-6
    modelled = en.bridge_stage_energy(1000, 40, 1e-4)
    assert modelled.source == SOURCE_MODELLED and modelled.spikes == 40
    assert modelled.energy_j == pytest.approx(1000 * 0.9e-12)
    assert en.bridge_stage_energy(1000, 40, 1e-4, per_add_j=0).source == SOURCE_UNAVAILABLE
    fig = en.classifier_stage_energy(5000, 3e-4, "cpu", "onnxruntime[CPU]", meter, 4e-5)
    assert fig.source == SOURCE_MEASURED and fig.macs == 5000
    fig = en.classifier_stage_energy(5000, 3e-4, "cpu", "onnxruntime[CPU]")
    assert fig.device == f"{en.DEFAULT_ANN_DEVICE} (modelled)" and "ran here on onnx" in fig.method
    none = en.classifier_stage_energy(5000, 3e-4, "cpu", "ort", model_device="")
    assert none.source == SOURCE_UNAVAILABLE and none.macs == 5000


def test_total_is_in_pipeline_order_whatever_the_arrival_order():
    snn = en.loihi_energy(10, 10, 1, 1e-3)
    bridge = en.accumulator_energy(10, 1e-5)
    ann = en.ann_energy(100, None, "ncs2")
    a, b = en.total([ann, snn, bridge]), en.total([bridge, ann, snn])
    assert a.device == b.device == " + ".join([snn.device, bridge.device, ann.device])
    assert a.method == b.method and a.energy_j == pytest.approx(b.energy_j)


def test_driver_stage_figure_measured_or_timed_only(tmp_path):
    _rapl_tree(tmp_path, {"intel-rapl:0": 1_000_000})
    meter = en.cpu_meter(tmp_path)
    fig = en.driver_stage_energy(2e-3, meter, 5e-5)
    assert fig.source == SOURCE_MEASURED and fig.energy_j == 5e-5 and fig.stage == "driver"
    timed = en.driver_stage_energy(2e-3)
    assert timed.source == SOURCE_UNAVAILABLE and "only timed" in timed.method
    assert timed.latency_s == 2e-3 and math.isnan(timed.energy_j)
    assert en.driver_stage_energy(2e-3, meter).source == SOURCE_UNAVAILABLE  # nothing measured
