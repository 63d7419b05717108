"""Energy per inference: published per-operation models and power meters on the running machine.

Every figure says where it came from (:class:`EnergyFigure` ``source`` and ``method``):

* ``measured``: read from a power/energy counter of the hardware that ran the stage (RAPL on x86
  CPUs, NVML on NVIDIA GPUs, the INA3221 rail monitors of Jetson modules);
* ``modelled``: computed from operation counts or latency with published constants (below, each
  with its source);
* ``unavailable``: nothing could say; the energy and power are NaN, never 0.

All published constants live in this module, in the ``*_PROFILES`` tables, so there is one place
to check or change them.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from hsnn_perception.core.errors import EnergyAccountingError
from hsnn_perception.core.registry import POWER_METERS

if TYPE_CHECKING:
    from hsnn_perception.core.snn.runtime import OpCounts

SOURCE_MEASURED = "measured"
SOURCE_MODELLED = "modelled"
SOURCE_UNAVAILABLE = "unavailable"
SOURCES = (SOURCE_MEASURED, SOURCE_MODELLED, SOURCE_UNAVAILABLE)

STAGES = ("driver", "snn", "bridge", "classifier", "total")

PJ = 1e-12
NS = 1e-9


class EnergyError(EnergyAccountingError, ValueError):
    """An energy figure or model was asked for with invalid arguments."""


@dataclass
class EnergyFigure:
    """Energy of one pipeline stage (or of all, stage ``"total"``) for one inference."""

    stage: str
    device: str
    source: str
    method: str
    energy_j: float
    power_w: float
    latency_s: float
    synaptic_ops: int = 0
    neuron_updates: int = 0
    spikes: int = 0
    macs: int = 0

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise EnergyError(f"source must be one of {SOURCES}, got {self.source!r}")
        if self.source == SOURCE_UNAVAILABLE and not math.isnan(self.energy_j):
            raise EnergyError("an unavailable figure must have energy_j = NaN")

    @property
    def available(self) -> bool:
        return self.source != SOURCE_UNAVAILABLE and not math.isnan(self.energy_j)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (NaN becomes None, as JSON has no NaN)."""
        out = asdict(self)
        for key in ("energy_j", "power_w", "latency_s"):
            if isinstance(out[key], float) and math.isnan(out[key]):
                out[key] = None
        return out

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> EnergyFigure:
        """Inverse of :meth:`to_dict` (also accepts the fields of an EnergyReport message)."""
        try:
            kwargs = {
                "stage": str(doc["stage"]),
                "device": str(doc.get("device", "")),
                "source": str(doc["source"]),
                "method": str(doc.get("method", "")),
            }
            for key in ("energy_j", "power_w", "latency_s"):
                value = doc.get(key)
                kwargs[key] = math.nan if value is None else float(value)
            for key in ("synaptic_ops", "neuron_updates", "spikes", "macs"):
                kwargs[key] = int(doc.get(key) or 0)
        except (KeyError, TypeError, ValueError) as exc:
            raise EnergyError(f"not an energy figure: {exc}") from exc
        return cls(**kwargs)


def unavailable(stage: str, device: str, reason: str, latency_s: float = math.nan) -> EnergyFigure:
    """A figure saying that no energy could be measured or modelled for ``stage``, and why."""
    return EnergyFigure(
        stage=stage,
        device=device,
        source=SOURCE_UNAVAILABLE,
        method=reason,
        energy_j=math.nan,
        power_w=math.nan,
        latency_s=latency_s,
    )


def _power(energy_j: float, latency_s: float) -> float:
    if math.isnan(energy_j) or math.isnan(latency_s) or latency_s <= 0:
        return math.nan
    return energy_j / latency_s


# --------------------------------------------------------------------------------------------
# Neuromorphic chips: per-operation energies
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NeuromorphicProfile:
    name: str
    synaptic_op_j: float  # one synaptic spike operation (no learning)
    neuron_update_active_j: float
    neuron_update_inactive_j: float
    spike_within_tile_j: float  # sending one spike to a core in the same tile
    synaptic_op_s: float  # time per synaptic op (for the latency model)
    neuron_update_s: float  # time per active neuron update
    barrier_s: float  # end-of-timestep mesh barrier (one tile; grows to 465 ns at 32 tiles)
    static_chip_w: float  # leakage of one fully powered chip
    cores_per_chip: int
    source: str
    static_source: str


# Davies et al., "Loihi: A Neuromorphic Manycore Processor with On-Chip Learning", IEEE Micro 38(1),
# 2018, Table 2 ("Loihi pre-silicon performance and energy measurements", values at 0.75 V, from
# SDF/SPICE simulation "consistent with early post-silicon characterization"):
#   energy per synaptic spike op (min) 23.6 pJ; per synaptic update (pairwise STDP) 120 pJ
#   (not used: no on-chip learning here); per neuron update active / inactive 81 pJ / 52 pJ;
#   within-tile spike energy 1.7 pJ; per tile hop E-W / N-S 3.0 / 4.0 pJ (not used: the mapping
#   is unknown);
#   time per synaptic spike op (max) 3.5 ns; per neuron update active / inactive 8.4 / 5.3 ns;
#   mesh-wide barrier sync 113-465 ns (1-32 tiles); 128 neuromorphic cores per chip.
# Static power: Frady et al., "Neuromorphic Nearest-Neighbor Search Using Intel's Pohoiki Springs",
# NICE 2020, Table 1: 3.34 W static power for the 32-chip board, i.e. 3.34 W / 32 = 104 mW per chip,
# measured at the wall at an unstated supply voltage (so mixing it with Table 2 is approximate).
LOIHI = NeuromorphicProfile(
    name="loihi",
    synaptic_op_j=23.6 * PJ,
    neuron_update_active_j=81.0 * PJ,
    neuron_update_inactive_j=52.0 * PJ,
    spike_within_tile_j=1.7 * PJ,
    synaptic_op_s=3.5 * NS,
    neuron_update_s=8.4 * NS,
    barrier_s=113.0 * NS,
    static_chip_w=3.34 / 32,
    cores_per_chip=128,
    source="Davies et al. 2018 (IEEE Micro 38(1)) Table 2 per-op energies at 0.75 V",
    static_source="Frady et al. 2020 (NICE) Table 1 static power 3.34 W / 32 chips",
)

# Loihi 2: Intel has published no per-operation energy table for Loihi 2 (the 2021 technology
# brief "Taking Neuromorphic Computing to the Next Level with Loihi 2" gives only relative
# speed-ups), nor a static power per chip. The Loihi 1 figures stand in and every figure says so.
LOIHI2 = replace(
    LOIHI,
    name="loihi2",
    source="no published Loihi 2 per-op energies; Loihi 1 values stand in: " + LOIHI.source,
    static_source="no published Loihi 2 static power; Loihi 1 value stands in: "
    + LOIHI.static_source,
)

NEUROMORPHIC_PROFILES: dict[str, NeuromorphicProfile] = {"loihi": LOIHI, "loihi2": LOIHI2}


def loihi_latency(
    timesteps: int,
    synaptic_ops: int,
    neuron_updates: int,
    n_cores: int = 1,
    chip: str = "loihi",
) -> float:
    """Modelled wall time of ``timesteps`` on Loihi, from Davies 2018 Table 2 operation times.

    Work is spread evenly over ``n_cores`` cores running in parallel, plus one barrier per timestep.
    With the default single core this is an upper bound.
    """
    prof = _neuromorphic_profile(chip)
    if timesteps < 0 or synaptic_ops < 0 or neuron_updates < 0 or n_cores < 1:
        raise EnergyError("timesteps, op counts must be >= 0 and n_cores >= 1")
    work = synaptic_ops * prof.synaptic_op_s + neuron_updates * prof.neuron_update_s
    return timesteps * prof.barrier_s + work / n_cores


def _neuromorphic_profile(chip: str) -> NeuromorphicProfile:
    try:
        return NEUROMORPHIC_PROFILES[chip]
    except KeyError:
        raise EnergyError(
            f"unknown neuromorphic chip {chip!r}; known: {sorted(NEUROMORPHIC_PROFILES)}"
        ) from None


def loihi_energy(
    synaptic_ops: int,
    neuron_updates: int,
    spikes: int,
    latency_s: float,
    chip: str = "loihi",
    n_cores: int | None = None,
    stage: str = "snn",
    active_updates: int | None = None,
    device: str | None = None,
) -> EnergyFigure:
    """Modelled energy of one inference of an SNN on Loihi (Davies et al. 2018 per-op energies).

    dynamic = synaptic_ops x 23.6 pJ + neuron updates x (81 pJ active, 52 pJ inactive)
    + spikes x 1.7 pJ (within-tile; inter-tile hops are left out as the mapping is unknown).
    ``active_updates`` says how many of ``neuron_updates`` were active; when None all are charged
    as active (an upper bound). static = chip leakage x (n_cores / 128) x ``latency_s``, added only
    when ``n_cores`` and a finite ``latency_s`` are given (``latency_s`` is the time on Loihi, e.g.
    from :func:`loihi_latency`; a CPU simulation's wall time means nothing here).
    """
    prof = _neuromorphic_profile(chip)
    counts = (synaptic_ops, neuron_updates, spikes)
    if any(int(c) < 0 for c in counts):
        raise EnergyError(f"operation counts must be >= 0, got {counts}")
    if active_updates is None:
        active, inactive = neuron_updates, 0
    else:
        if not 0 <= active_updates <= neuron_updates:
            raise EnergyError(
                f"active_updates {active_updates} not within 0..neuron_updates {neuron_updates}"
            )
        active, inactive = active_updates, neuron_updates - active_updates
    dynamic = (
        synaptic_ops * prof.synaptic_op_j
        + active * prof.neuron_update_active_j
        + inactive * prof.neuron_update_inactive_j
        + spikes * prof.spike_within_tile_j
    )
    parts = [prof.source]
    if active_updates is None:
        parts.append("all neuron updates charged as active (upper bound)")
    energy = dynamic
    latency = float(latency_s) if latency_s is not None else math.nan
    if n_cores is not None and not math.isnan(latency):
        if n_cores < 1:
            raise EnergyError(f"n_cores must be >= 1, got {n_cores}")
        static_w = prof.static_chip_w * min(n_cores, prof.cores_per_chip) / prof.cores_per_chip
        energy += static_w * latency
        parts.append(f"+ static {static_w * 1e3:.2f} mW x latency ({prof.static_source})")
    else:
        parts.append("dynamic energy only (no core count or latency for static power)")
    return EnergyFigure(
        stage=stage,
        device=device or f"{chip} (modelled)",
        source=SOURCE_MODELLED,
        method="; ".join(parts),
        energy_j=energy,
        power_w=_power(energy, latency),
        latency_s=latency,
        synaptic_ops=int(synaptic_ops),
        neuron_updates=int(neuron_updates),
        spikes=int(spikes),
    )


@dataclass(frozen=True)
class LoihiMeasurement:
    """Energy of one window as a Loihi board measured it (see ``core/snn/loihi_profiler.py``)."""

    energy_j: float  # total = dynamic + static
    dynamic_j: float
    static_j: float
    power_w: float  # average total power over the run
    device_time_s: float  # time on the chip: energy / power
    rails_j: dict[str, float]  # energy per supply rail (vdd: cores, vdd_m: memory, vdd_io: I/O)
    steps: int
    description: str  # what measured it


def loihi_measured_energy(
    measurement: LoihiMeasurement,
    synaptic_ops: int = 0,
    neuron_updates: int = 0,
    spikes: int = 0,
    stage: str = "snn",
) -> EnergyFigure:
    """A ``measured`` figure from a Loihi board's own energy measurement of one window."""
    m = measurement
    # The method says how, not how much (one text for every window of a run): the per-window
    # split into dynamic / static and rails is in the measurement, not in the figure.
    return EnergyFigure(
        stage=stage,
        device="loihi2 (measured on the board)",
        source=SOURCE_MEASURED,
        method=(
            f"{m.description} over {m.steps} steps: the board's dynamic + static energy "
            "(supply rails vdd, vdd_m, vdd_io); latency = energy / average power"
        ),
        energy_j=m.energy_j,
        power_w=m.power_w,
        latency_s=m.device_time_s,
        synaptic_ops=int(synaptic_ops),
        neuron_updates=int(neuron_updates),
        spikes=int(spikes),
    )


def snn_stage_energy(
    ops: OpCounts | None,
    timesteps: int,
    chip: str = "loihi",
    cores: int = 0,
    ran_on: str = "",
    measurement: LoihiMeasurement | None = None,
    measurement_error: str | None = None,
) -> EnergyFigure:
    """The SNN stage's figure for one window, as the SNN node and the offline evaluation give it.

    ``ops`` is the window's ``OpCounts`` (None: the model has no SNN part). A board measurement
    (``measurement``, from Lava's profiler on Loihi 2 hardware) wins; otherwise the energy is
    modelled on ``chip`` from the op counts (Davies et al. 2018), over the modelled chip time of
    ``timesteps`` steps on ``cores`` cores (0: dynamic energy only, one core for the time).
    ``measurement_error`` says why a measurement was wanted and is missing; it goes in ``method``.
    """
    if ops is None:
        return unavailable("snn", "none", "no SNN part in this model")
    if measurement is not None:
        return loihi_measured_energy(measurement, ops.synaptic_ops, ops.neuron_updates, ops.spikes)
    cores = max(int(cores), 0)
    chip_s = loihi_latency(timesteps, ops.synaptic_ops, ops.neuron_updates, max(cores, 1), chip)
    fig = loihi_energy(
        ops.synaptic_ops,
        ops.neuron_updates,
        ops.spikes,
        chip_s,
        chip=chip,
        n_cores=cores or None,
        device=f"{chip} (modelled; ran on {ran_on})" if ran_on else None,
    )
    # latency_s is the modelled chip time (the power is averaged over it), not the host's time;
    # the method stays the same text for every window, so reports can group by it.
    fig.method += f"; latency = modelled {chip} chip time (Davies et al. 2018 Table 2 op times)"
    if measurement_error:
        fig.method += f"; not measured: {measurement_error}"
    return fig


# --------------------------------------------------------------------------------------------
# ANN accelerators: board power x latency
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AnnDeviceProfile:
    name: str
    power_w: float  # module power of the named power mode (upper bound of what inference draws)
    peak_ops_per_s: float  # dense peak throughput (ops = 2 per MAC), for a latency lower bound
    source: str


# NVIDIA datasheets: Jetson Nano module 472 GFLOPS (FP16), 5 W / 10 W power modes; Jetson Orin Nano
# 8 GB module 40 TOPS INT8 sparse (20 TOPS dense), 7 W - 15 W power modes; Jetson AGX Orin 64 GB
# 275 TOPS INT8 sparse (about 138 dense), 15 W - 60 W. Intel Movidius Myriad X (Neural Compute
# Stick 2): 1 TOPS from its two neural compute engines (Intel, "Optimize Networks for the Intel
# Neural Compute Stick 2", 2018) at a VPU power budget of about 1 W (Intel's figure for Movidius
# VPUs). These are power-mode caps, so power x latency is an upper bound of the energy.
ANN_DEVICE_PROFILES: dict[str, AnnDeviceProfile] = {
    "jetson-nano": AnnDeviceProfile(
        "jetson-nano", 10.0, 472e9, "NVIDIA Jetson Nano datasheet: 10 W mode, 472 GFLOPS FP16"
    ),
    "jetson-orin-nano": AnnDeviceProfile(
        "jetson-orin-nano",
        15.0,
        20e12,
        "NVIDIA Jetson Orin Nano 8GB datasheet: 15 W mode, 20 TOPS INT8 dense (40 sparse)",
    ),
    "jetson-agx-orin": AnnDeviceProfile(
        "jetson-agx-orin",
        60.0,
        137.5e12,
        "NVIDIA Jetson AGX Orin 64GB datasheet: 60 W mode, 275 TOPS INT8 sparse (half dense)",
    ),
    "ncs2": AnnDeviceProfile(
        "ncs2",
        1.0,
        1e12,
        "Intel NCS2 (Myriad X): 1 TOPS neural compute engines, ~1 W VPU power budget (Intel)",
    ),
}


def ann_energy(
    macs: int,
    latency_s: float | None,
    device: str = "cpu",
    stage: str = "classifier",
    power_w: float | None = None,
    power_source: str = "",
) -> EnergyFigure:
    """Modelled energy of one ANN inference: device power x latency.

    ``device`` is a key of :data:`ANN_DEVICE_PROFILES` (module power of its top power mode, so the
    result is an upper bound), or any name when ``power_w`` is given (say where it came from in
    ``power_source``). Without ``latency_s`` (NaN or None) the latency is modelled as
    2 x ``macs`` / dense peak throughput (a lower bound). For "cpu" / "gpu-generic" with no
    ``power_w`` there is no published figure to use: the result is ``unavailable``; measure instead
    (:func:`cpu_meter`, :func:`gpu_meter`).
    """
    if macs < 0:
        raise EnergyError(f"macs must be >= 0, got {macs}")
    latency = math.nan if latency_s is None else float(latency_s)
    profile = ANN_DEVICE_PROFILES.get(device)
    notes = []
    if power_w is not None:
        if not power_w >= 0:
            raise EnergyError(f"power_w must be >= 0, got {power_w}")
        power, source = float(power_w), power_source or "power given by caller"
    elif profile is not None:
        power, source = profile.power_w, profile.source
    else:
        fig = unavailable(
            stage,
            device,
            f"no published power figure for {device!r}; measure it (known: "
            f"{sorted(ANN_DEVICE_PROFILES)})",
            latency,
        )
        fig.macs = int(macs)
        return fig
    if math.isnan(latency):
        if profile is None:
            fig = unavailable(stage, device, "no latency and no peak throughput to model it")
            fig.macs = int(macs)
            return fig
        latency = 2 * macs / profile.peak_ops_per_s
        notes.append("latency modelled as 2 x MACs / dense peak ops/s (lower bound)")
    notes.insert(0, f"{power:g} W x latency ({source})")
    energy = power * latency
    return EnergyFigure(
        stage=stage,
        device=f"{device} (modelled)",
        source=SOURCE_MODELLED,
        method="; ".join(notes),
        energy_j=energy,
        power_w=_power(energy, latency),
        latency_s=latency,
        macs=int(macs),
    )


# --------------------------------------------------------------------------------------------
# The accumulator between the parts: additions on the host
# --------------------------------------------------------------------------------------------

# Horowitz, "Computing's energy problem (and what we can do about it)", ISSCC 2014, 45 nm, 0.9 V:
# a 32-bit floating-point add costs 0.9 pJ (8-bit integer add 0.03 pJ, 32-bit 0.1 pJ). Arithmetic
# only: the memory traffic of reading spikes and writing frames is not included (a lower bound).
FP32_ADD_J = 0.9 * PJ
ADD_SOURCE = "Horowitz ISSCC 2014 (45 nm): 0.9 pJ per fp32 add, arithmetic only (lower bound)"


def accumulator_energy(
    additions: int, latency_s: float, per_add_j: float = FP32_ADD_J, stage: str = "bridge"
) -> EnergyFigure:
    """Modelled energy of the accumulator: ``additions`` x energy per addition."""
    if additions < 0 or per_add_j < 0:
        raise EnergyError(f"additions and per_add_j must be >= 0, got {additions}, {per_add_j}")
    source = ADD_SOURCE if per_add_j == FP32_ADD_J else f"{per_add_j:g} J per addition (given)"
    energy = additions * per_add_j
    return EnergyFigure(
        stage=stage,
        device="host cpu (modelled)",
        source=SOURCE_MODELLED,
        method=f"{additions} additions x {source}",
        energy_j=energy,
        power_w=_power(energy, latency_s),
        latency_s=float(latency_s),
    )


# --------------------------------------------------------------------------------------------
# Power meters
# --------------------------------------------------------------------------------------------


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
        return energy, _power(energy, elapsed)


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
        return self._energy, _power(self._energy, elapsed)


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
        return energy, _power(energy, elapsed)


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


def _jetson_rails(root: Path) -> list[_Rail]:
    rails: list[_Rail] = []
    for power in sorted(root.glob("ina3221x/*/iio:device*/in_power*_input")):
        idx = power.name[len("in_power") : -len("_input")]
        label_path = power.parent / f"rail_name_{idx}"
        name = label_path.read_text().strip() if label_path.is_file() else power.name
        rails.append(_Rail(name, lambda p=power: _read_int(p) / 1000.0))
    for volt in sorted(root.glob("ina3221/*/hwmon/hwmon*/in*_input")):
        idx = volt.name[len("in") : -len("_input")]
        curr = volt.parent / f"curr{idx}_input"
        if not curr.is_file():
            continue
        label_path = volt.parent / f"in{idx}_label"
        name = label_path.read_text().strip() if label_path.is_file() else volt.name
        if name.upper().startswith("NC"):  # unconnected channel
            continue
        rails.append(
            _Rail(name, lambda v=volt, c=curr: _read_int(v) * _read_int(c) * 1e-6)  # mV x mA
        )
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
    return entry.load()(**entry.options)


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
        power_w=_power(float(energy_j), latency_s),
        latency_s=float(latency_s),
        **counts,
    )


# The ANN device the classifier stage is modelled for when nothing measures it (node and
# offline evaluation alike).
DEFAULT_ANN_DEVICE = "jetson-orin-nano"


def bridge_stage_energy(
    additions: int,
    spikes: int,
    latency_s: float,
    meter: PowerMeter | None = None,
    measured_j: float | None = None,
    per_add_j: float = FP32_ADD_J,
) -> EnergyFigure:
    """The accumulator bridge's figure for one window, as its node and the offline evaluation
    give it: measured by ``meter`` when it measured (``measured_j``), else ``additions`` x
    ``per_add_j`` (Horowitz 2014), else (``per_add_j`` 0) unavailable."""
    if meter is not None and measured_j is not None:
        return measured_figure("bridge", "cpu", meter, measured_j, latency_s, spikes=int(spikes))
    if per_add_j > 0:
        figure = accumulator_energy(additions, latency_s, per_add_j)
    else:
        figure = unavailable(
            "bridge", "cpu", "no readable CPU energy counter and no energy per addition", latency_s
        )
    figure.spikes = int(spikes)
    return figure


def classifier_stage_energy(
    macs: int,
    latency_s: float,
    device: str,
    ran_on: str,
    meter: PowerMeter | None = None,
    measured_j: float | None = None,
    model_device: str = DEFAULT_ANN_DEVICE,
) -> EnergyFigure:
    """The classifier's figure for one window, as its node and the offline evaluation give it:
    measured by ``meter`` (on ``device``) when it measured, else modelled for ``model_device``
    from the MACs (its own modelled latency, not this host's), else unavailable."""
    if meter is not None and measured_j is not None:
        return measured_figure("classifier", device, meter, measured_j, latency_s, macs=int(macs))
    if not model_device:
        figure = unavailable(
            "classifier", device, "no power meter here and no ANN device to model", latency_s
        )
        figure.macs = int(macs)
        return figure
    figure = ann_energy(macs, None, device=model_device)
    figure.method += f"; ran here on {ran_on}"
    return figure


def driver_stage_energy(
    latency_s: float, meter: PowerMeter | None = None, energy_j: float = math.nan
) -> EnergyFigure:
    """The event driver's figure for one window: its host work (reading the source, encoding and
    publishing the window's packets) measured by ``meter`` (RAPL) when there is one, else
    unavailable (the work is only timed: there is no per-operation model of host I/O)."""
    if meter is not None and not math.isnan(energy_j):
        return measured_figure("driver", "cpu", meter, energy_j, latency_s)
    return unavailable(
        "driver",
        "cpu",
        "no readable CPU energy counter (RAPL): the driver's work is only timed",
        latency_s,
    )


def total(figures: Iterable[EnergyFigure], stage: str = "total") -> EnergyFigure:
    """Sum the stage figures of one inference.

    Source is ``measured`` only when every part is measured, ``modelled`` when some part is
    modelled, ``unavailable`` when no part is available. Unavailable parts are left out of the sum
    and named in ``method`` (so the total is then a lower bound). Latencies add up (the stages run
    one after the other for one inference); the power is averaged over the latencies of the parts
    whose energy is known.
    """
    # In pipeline order, whatever order the reports came in: the same text for every window.
    order = {name: i for i, name in enumerate(STAGES)}
    figs = sorted(figures, key=lambda f: order.get(f.stage, len(order)))
    if not figs:
        raise EnergyError("total() of no figures")
    have = [f for f in figs if f.available]
    missing = [f.stage for f in figs if not f.available]
    latencies = [f.latency_s for f in figs if not math.isnan(f.latency_s)]
    latency = sum(latencies) if latencies else math.nan
    counts = {
        k: sum(getattr(f, k) for f in figs)
        for k in ("synaptic_ops", "neuron_updates", "spikes", "macs")
    }
    device = " + ".join(dict.fromkeys(f.device for f in figs))
    if not have:
        fig = unavailable(stage, device, "no stage has an energy figure: " + ", ".join(missing))
        fig.latency_s = latency
        for k, v in counts.items():
            setattr(fig, k, v)
        return fig
    modelled = [f.stage for f in have if f.source == SOURCE_MODELLED]
    measured = [f.stage for f in have if f.source == SOURCE_MEASURED]
    source = SOURCE_MODELLED if modelled else SOURCE_MEASURED
    parts = []
    if measured:
        parts.append("measured: " + ", ".join(measured))
    if modelled:
        parts.append("modelled: " + ", ".join(modelled))
    if missing:
        parts.append("unavailable, not included (lower bound): " + ", ".join(missing))
    energy = sum(f.energy_j for f in have)
    # Average power over the time of the parts whose energy is known (an unavailable part's
    # time without its energy would dilute it).
    have_latency = [f.latency_s for f in have if not math.isnan(f.latency_s)]
    return EnergyFigure(
        stage=stage,
        device=device,
        source=source,
        method="sum of stages; " + "; ".join(parts),
        energy_j=energy,
        power_w=_power(energy, sum(have_latency)) if have_latency else math.nan,
        latency_s=latency,
        **counts,
    )
