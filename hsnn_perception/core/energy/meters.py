"""Power meters on the running machine: Intel RAPL (CPU packages), NVML (NVIDIA GPUs), the INA3221
rail monitors of Jetson modules; :func:`meter_for` picks the one for a stage's device (the
``registry.POWER_METERS`` entries), :func:`measure` runs a function under one and
:func:`measured_figure` makes a ``measured`` :class:`EnergyFigure` of what it read.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

from hsnn_perception.core.energy.figure import SOURCE_MEASURED, EnergyFigure, average_power
from hsnn_perception.core.errors import EnergyAccountingError
from hsnn_perception.core.registry import POWER_METERS


@runtime_checkable
class PowerMeter(Protocol):
    available: bool
    description: str

    def start(self) -> None: ...

    def stop(self) -> tuple[float, float]:
        """Energy (J) and average power (W) since :meth:`start`."""
        ...


class PowerMeterError(EnergyAccountingError, ValueError):
    """A power meter was used wrongly (stop before start) or its counters became unreadable."""


RAPL_ROOT = Path("/sys/class/powercap")


class RaplMeter:
    """CPU package energy from Linux RAPL counters (``intel-rapl:N/energy_uj``).

    Only top-level package domains (``intel-rapl:N``) are summed: their sub-domains
    (``intel-rapl:N:M``, core/uncore/dram) are parts of the package figure. A counter that went
    down between start and stop wrapped once at ``max_energy_range_uj`` (a wrap takes minutes to
    hours, so intervals of one inference see at most one). Since Linux 5.10 ``energy_uj`` is
    readable by root only, which is why :func:`cpu_meter` may find none.
    """

    def __init__(self, domains: list[Path]) -> None:
        if not domains:
            raise PowerMeterError("RaplMeter needs at least one intel-rapl domain")
        self.domains = domains
        self.available = True
        names = []
        for d in domains:
            try:
                names.append(f"{d.name} ({(d / 'name').read_text().strip()})")
            except OSError:
                names.append(d.name)
        self.description = "RAPL " + ", ".join(names)
        self._ranges = [_read_int(d / "max_energy_range_uj") for d in domains]
        self._start: list[int] | None = None
        self._t0 = 0.0

    def _read(self) -> list[int]:
        return [_read_int(d / "energy_uj") for d in self.domains]

    def start(self) -> None:
        self._start = self._read()
        self._t0 = time.perf_counter()

    def stop(self) -> tuple[float, float]:
        if self._start is None:
            raise PowerMeterError("RaplMeter.stop() called before start()")
        end = self._read()
        elapsed = time.perf_counter() - self._t0
        total_uj = 0
        for a, b, span in zip(self._start, end, self._ranges, strict=True):
            total_uj += b - a if b >= a else b + span - a
        self._start = None
        energy = total_uj * 1e-6
        return energy, average_power(energy, elapsed)


def _read_int(path: Path) -> int:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError) as exc:
        raise PowerMeterError(f"cannot read counter {path}: {exc}") from exc


def cpu_meter(root: Path | str = RAPL_ROOT) -> RaplMeter | None:
    """A RAPL meter over all CPU packages, or None where RAPL is absent or not readable."""
    root = Path(root)
    try:
        domains = sorted(
            p for p in root.glob("intel-rapl:*") if p.name.count(":") == 1 and p.is_dir()
        )
    except OSError:
        return None
    if not domains:
        return None
    try:
        meter = RaplMeter(domains)
        meter._read()  # readable by this user?
    except PowerMeterError:
        return None
    return meter


class _SamplingMeter:
    """Integrates instantaneous power read by ``read_w`` on a background thread (trapezoid rule)."""

    def __init__(self, read_w: Callable[[], float], description: str, period_s: float) -> None:
        self._read_w = read_w
        self.description = description
        self.available = True
        self.period_s = period_s
        self._thread: threading.Thread | None = None
        self._stop_evt = threading.Event()
        self._energy = 0.0
        self._t0 = 0.0
        self._t_stop = 0.0
        self._error: Exception | None = None

    def _sample(self, first_w: float) -> None:
        last_t, last_p = self._t0, first_w
        while True:
            stopping = self._stop_evt.wait(self.period_s)
            try:
                p = self._read_w()
            except Exception as exc:  # a rail vanished: report at stop(), not on this thread
                self._error = exc
                return
            t = time.perf_counter()
            if stopping:  # the window ends when stop() was called, not when this thread woke up
                t = min(t, self._t_stop)
            self._energy += 0.5 * (p + last_p) * max(t - last_t, 0.0)
            last_t, last_p = t, p
            if stopping:
                return

    def start(self) -> None:
        first = self._read_w()  # fails here, on the caller's thread, if unreadable
        self._energy, self._error = 0.0, None
        self._stop_evt.clear()
        self._t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._sample, args=(first,), daemon=True)
        self._thread.start()

    def stop(self) -> tuple[float, float]:
        if self._thread is None:
            raise PowerMeterError(f"{self.description}: stop() called before start()")
        self._t_stop = time.perf_counter()
        self._stop_evt.set()
        self._thread.join()
        self._thread = None
        elapsed = self._t_stop - self._t0
        if self._error is not None:
            raise PowerMeterError(f"{self.description}: {self._error}") from self._error
        return self._energy, average_power(self._energy, elapsed)


class NvmlMeter:
    """GPU energy from NVML: the board's energy counter when supported (Volta and newer), else
    power sampling every ``period_s`` on a thread."""

    def __init__(self, index: int = 0, period_s: float = 0.005) -> None:
        import pynvml  # lazy: optional dependency (package nvidia-ml-py)

        self._nvml = pynvml
        pynvml.nvmlInit()
        self._handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        name = pynvml.nvmlDeviceGetName(self._handle)
        name = name.decode() if isinstance(name, bytes) else str(name)
        self.available = True
        self._sampler: _SamplingMeter | None = None
        try:
            pynvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)
            self.description = f"NVML total energy counter, GPU {index} ({name})"
        except pynvml.NVMLError:
            self._sampler = _SamplingMeter(
                lambda: pynvml.nvmlDeviceGetPowerUsage(self._handle) / 1000.0,
                f"NVML power sampling every {period_s * 1e3:g} ms, GPU {index} ({name})",
                period_s,
            )
            self.description = self._sampler.description
        self._start_mj: int | None = None
        self._t0 = 0.0

    def start(self) -> None:
        if self._sampler is not None:
            self._sampler.start()
            return
        self._start_mj = self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)
        self._t0 = time.perf_counter()

    def stop(self) -> tuple[float, float]:
        if self._sampler is not None:
            return self._sampler.stop()
        if self._start_mj is None:
            raise PowerMeterError("NvmlMeter.stop() called before start()")
        end = self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)
        elapsed = time.perf_counter() - self._t0
        energy = (end - self._start_mj) * 1e-3
        self._start_mj = None
        return energy, average_power(energy, elapsed)


def gpu_meter(index: int = 0) -> NvmlMeter | None:
    """An NVML meter for GPU ``index``, or None without pynvml, driver or GPU."""
    try:
        return NvmlMeter(index)
    except Exception:  # ImportError, NVMLError of any kind: no usable GPU meter here
        return None


# Jetson INA3221 power monitors. Two sysfs layouts exist:
#  * L4T r32 (Jetson Nano, TX2, Xavier): iio driver ``ina3221x``:
#      /sys/bus/i2c/drivers/ina3221x/<bus>-<addr>/iio:device*/in_power<N>_input  (mW)
#      with rail_name_<N> (e.g. POM_5V_IN, the module input)
#  * L4T r34+ / JetPack 5-6 (Orin): hwmon driver ``ina3221``:
#      /sys/bus/i2c/drivers/ina3221/<bus>-<addr>/hwmon/hwmon*/in<N>_input (mV),
#      curr<N>_input (mA), in<N>_label (e.g. VDD_IN, the module input)
JETSON_I2C_ROOT = Path("/sys/bus/i2c/drivers")
JETSON_TOTAL_RAILS = ("VDD_IN", "POM_5V_IN")  # whole-module input rails: prefer these alone


@dataclass(frozen=True)
class _Rail:
    name: str
    read_w: Callable[[], float]


def _milliwatts(power: Path) -> float:
    return _read_int(power) / 1000.0


def _volts_times_amps(volt: Path, curr: Path) -> float:
    return _read_int(volt) * _read_int(curr) * 1e-6  # mV x mA


def _jetson_rails(root: Path) -> list[_Rail]:
    rails: list[_Rail] = []
    for power in sorted(root.glob("ina3221x/*/iio:device*/in_power*_input")):
        idx = power.name[len("in_power") : -len("_input")]
        label_path = power.parent / f"rail_name_{idx}"
        name = label_path.read_text().strip() if label_path.is_file() else power.name
        rails.append(_Rail(name, partial(_milliwatts, power)))
    for volt in sorted(root.glob("ina3221/*/hwmon/hwmon*/in*_input")):
        idx = volt.name[len("in") : -len("_input")]
        curr = volt.parent / f"curr{idx}_input"
        if not curr.is_file():
            continue
        label_path = volt.parent / f"in{idx}_label"
        name = label_path.read_text().strip() if label_path.is_file() else volt.name
        if name.upper().startswith("NC"):  # unconnected channel
            continue
        rails.append(_Rail(name, partial(_volts_times_amps, volt, curr)))
    return rails


def jetson_meter(root: Path | str = JETSON_I2C_ROOT, period_s: float = 0.01) -> PowerMeter | None:
    """A sampling meter over a Jetson's INA3221 rails, or None where there are none.

    Uses the module input rail (VDD_IN / POM_5V_IN) alone when present (the other rails are parts
    of it); otherwise sums all connected rails.
    """
    try:
        rails = _jetson_rails(Path(root))
        totals = [r for r in rails if r.name.upper() in JETSON_TOTAL_RAILS]
        chosen = totals[:1] or rails
        if not chosen:
            return None
        for r in chosen:
            r.read_w()
    except (OSError, PowerMeterError):
        return None
    names = "+".join(r.name for r in chosen)
    return _SamplingMeter(
        lambda: sum(r.read_w() for r in chosen),
        f"Jetson INA3221 {names}, sampled every {period_s * 1e3:g} ms",
        period_s,
    )


def host_meter() -> PowerMeter | None:
    """The first meter of the host that works here: the Jetson module's rails (the whole board),
    then RAPL."""
    return jetson_meter() or cpu_meter()


def meter_for(device: str) -> PowerMeter | None:
    """A meter for a stage running on ``device`` ("cpu", "cuda:0", "jetson orin", ...), or None
    where nothing measures it here: the ``registry.POWER_METERS`` entry of the device's kind
    (the text before ":"), the host's ("cpu") for a kind no entry names."""
    kind = device.partition(":")[0]
    entry = POWER_METERS.entry(kind if kind in POWER_METERS else "cpu")
    factory: Callable[..., PowerMeter | None] = entry.load()
    return factory(**entry.options)


T = TypeVar("T")


def measure(
    meter: PowerMeter | None, fn: Callable[..., T], *args: Any, **kwargs: Any
) -> tuple[T, float, float, float]:
    """Run ``fn(*args, **kwargs)``; return (result, energy_j, power_w, latency_s).

    Energy and power are NaN without a meter.
    """
    if meter is None:
        t0 = time.perf_counter()
        result = fn(*args, **kwargs)
        return result, math.nan, math.nan, time.perf_counter() - t0
    meter.start()
    t0 = time.perf_counter()
    try:
        result = fn(*args, **kwargs)
    finally:
        latency = time.perf_counter() - t0
        energy, power = meter.stop()
    return result, energy, power, latency


def measured_figure(
    stage: str, device: str, meter: PowerMeter, energy_j: float, latency_s: float, **counts: int
) -> EnergyFigure:
    """An EnergyFigure for a measurement from ``meter`` (whole-device energy during the stage)."""
    return EnergyFigure(
        stage=stage,
        device=device,
        source=SOURCE_MEASURED,
        method=f"{meter.description} (whole device while the stage ran)",
        energy_j=float(energy_j),
        power_w=average_power(float(energy_j), latency_s),
        latency_s=float(latency_s),
        **counts,
    )
