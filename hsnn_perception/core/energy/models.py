"""The energy models of the pipeline's stages: Loihi per-operation energy and time for the SNN
(or a Loihi board's own measurement), device power x latency for the ANN, energy per addition for
the accumulator; and each stage's figure as its node and the offline evaluation give it
(:func:`snn_stage_energy`, :func:`bridge_stage_energy`, :func:`classifier_stage_energy`,
:func:`driver_stage_energy`): measured where a meter measured, else modelled, else unavailable.

The published constants are in :mod:`~hsnn_perception.core.energy.profiles`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hsnn_perception.core.energy.figure import (
    SOURCE_MEASURED,
    SOURCE_MODELLED,
    EnergyError,
    EnergyFigure,
    average_power,
    unavailable,
)
from hsnn_perception.core.energy.meters import PowerMeter, measured_figure
from hsnn_perception.core.energy.profiles import (
    ADD_SOURCE,
    ANN_DEVICE_PROFILES,
    DEFAULT_ANN_DEVICE,
    FP32_ADD_J,
    neuromorphic_profile,
)

if TYPE_CHECKING:
    from hsnn_perception.core.snn.runtime import OpCounts


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
    prof = neuromorphic_profile(chip)
    if timesteps < 0 or synaptic_ops < 0 or neuron_updates < 0 or n_cores < 1:
        raise EnergyError("timesteps, op counts must be >= 0 and n_cores >= 1")
    work = synaptic_ops * prof.synaptic_op_s + neuron_updates * prof.neuron_update_s
    return timesteps * prof.barrier_s + work / n_cores


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
    prof = neuromorphic_profile(chip)
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
        power_w=average_power(energy, latency),
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
        power_w=average_power(energy, latency),
        latency_s=latency,
        macs=int(macs),
    )


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
        power_w=average_power(energy, latency_s),
        latency_s=float(latency_s),
    )


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
