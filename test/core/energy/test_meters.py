"""Tests of hsnn_perception.core.energy.meters: RAPL/Jetson readers on fake sysfs trees (a fake
tree isolates the reader from a machine that has no such hardware), the meters of this
machine, measure."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest

from core.energy.energy_fixtures import rapl_tree
from hsnn_perception.core.energy.meters import (
    PowerMeter,
    PowerMeterError,
    cpu_meter,
    gpu_meter,
    jetson_meter,
    measure,
)


def _set(root: Path, name: str, value: int) -> None:
    (root / name / "energy_uj").write_text(f"{value}\n")


def test_rapl_meter_sums_packages_and_ignores_subdomains(tmp_path):
    rapl_tree(tmp_path, {"intel-rapl:0": 100, "intel-rapl:1": 200, "intel-rapl:0:0": 5})
    meter = cpu_meter(tmp_path)
    assert meter is not None and isinstance(meter, PowerMeter)
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
    rapl_tree(tmp_path, {"intel-rapl:0": 900}, max_range=1000)
    meter = cpu_meter(tmp_path)
    meter.start()
    _set(tmp_path, "intel-rapl:0", 50)  # wrapped: 900 -> 1000 -> 0 -> 50
    energy, _ = meter.stop()
    assert energy == pytest.approx(150e-6)


def test_rapl_stop_before_start_and_vanishing_counter(tmp_path):
    rapl_tree(tmp_path, {"intel-rapl:0": 1})
    meter = cpu_meter(tmp_path)
    with pytest.raises(PowerMeterError):
        meter.stop()
    meter.start()
    (tmp_path / "intel-rapl:0" / "energy_uj").unlink()
    with pytest.raises(PowerMeterError, match="energy_uj"):
        meter.stop()


def test_cpu_meter_none_without_readable_counters(tmp_path):
    assert cpu_meter(tmp_path / "absent") is None
    rapl_tree(tmp_path, {"intel-rapl:0": 1})
    (tmp_path / "intel-rapl:0" / "energy_uj").write_text("garbage")
    assert cpu_meter(tmp_path) is None


def test_cpu_meter_on_this_machine_works_or_is_none():
    meter = cpu_meter()
    if meter is None:
        return  # no RAPL or not readable (Linux >= 5.10 restricts it to root)
    result, energy, power, latency = measure(meter, sum, range(100_000))
    assert result == sum(range(100_000))
    assert energy >= 0 and latency > 0


def test_gpu_meter_on_this_machine_works_or_is_none():
    meter = gpu_meter()
    if meter is None:
        return  # no pynvml, driver or GPU here
    _, energy, _, latency = measure(meter, time.sleep, 0.05)
    assert energy >= 0 and latency >= 0.05


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
    meter = jetson_meter(tmp_path, period_s=0.002)
    assert meter is not None and "VDD_IN" in meter.description
    assert "VDD_CPU_GPU_CV" not in meter.description
    _, energy, power, latency = measure(meter, time.sleep, 0.05)
    assert power == pytest.approx(5.0, rel=0.05)  # 5000 mV x 1000 mA, constant
    # The meter's window (start() to stop()) encloses the call, and can be much longer on a
    # loaded machine: the energy is at least that of the call, at the constant 5 W.
    assert energy >= 5.0 * latency * 0.98


def test_jetson_meter_sums_rails_without_input_rail_and_skips_nc(tmp_path):
    _hwmon_tree(tmp_path, {1: ("VDD_GPU", 1000, 1000), 2: ("VDD_CPU", 1000, 500), 3: ("NC", 1, 1)})
    meter = jetson_meter(tmp_path, period_s=0.002)
    assert "VDD_GPU+VDD_CPU" in meter.description
    _, _, power, _ = measure(meter, time.sleep, 0.03)
    assert power == pytest.approx(1.5, rel=0.05)


def test_jetson_meter_nano_iio_layout(tmp_path):
    dev = tmp_path / "ina3221x" / "6-0040" / "iio:device0"
    dev.mkdir(parents=True)
    for idx, (name, mw) in enumerate([("POM_5V_IN", 3000), ("POM_5V_GPU", 800)]):
        (dev / f"rail_name_{idx}").write_text(name + "\n")
        (dev / f"in_power{idx}_input").write_text(f"{mw}\n")
    meter = jetson_meter(tmp_path, period_s=0.002)
    assert "POM_5V_IN" in meter.description
    _, _, power, _ = measure(meter, time.sleep, 0.03)
    assert power == pytest.approx(3.0, rel=0.05)


def test_jetson_meter_none_here_or_without_rails(tmp_path):
    assert jetson_meter(tmp_path) is None
    meter = jetson_meter()  # this machine: a Jetson or nothing
    assert meter is None or meter.available


def test_sampling_meter_reports_vanished_rail(tmp_path):
    hw = _hwmon_tree(tmp_path, {1: ("VDD_IN", 5000, 1000)})
    meter = jetson_meter(tmp_path, period_s=0.002)
    meter.start()
    (hw / "curr1_input").unlink()
    time.sleep(0.02)
    with pytest.raises(PowerMeterError):
        meter.stop()


def test_measure_without_meter_gives_nan_energy():
    result, energy, power, latency = measure(None, max, 3, 7)
    assert result == 7 and math.isnan(energy) and math.isnan(power) and latency >= 0
