"""One event window through the hybrid model: the per-window chain that every user of a bundle runs.

::

    frames (T, 2, h, w)  event counts per bin, from core/events/binning.py
      -> input spikes     binary: a pixel spikes in a bin if it saw an event of that polarity
      -> SnnStage         the spiking layers (any SnnBackend)      -> (T, C, H, W) spikes, OpCounts
      -> BridgeStage      spike counts over I bins, stacked on the channel axis -> (1, T/I*C, H, W)
      -> ClassifierStage  the non-spiking layers (any ClassifierBackend, or a spike-count readout)
      -> class scores (softmax)

Each stage is an object that runs its step, times it (and measures its energy where a power
meter reads this device) and gives the stage's :class:`EnergyFigure`. The nodes run one stage
each (snn_node the SnnStage, the accumulator bridge the BridgeStage, the classifier node the
ClassifierStage); :class:`HybridPipeline` chains all three for the offline evaluator, TensorRT's
INT8 calibration, training export's check and the tests, so a window gives the same spikes,
features and scores wherever it is run.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np
from numpy.typing import NDArray

from hsnn_perception.core.ann.readout import softmax, spike_count_readout
from hsnn_perception.core.energy.figure import EnergyFigure, unavailable
from hsnn_perception.core.energy.meters import PowerMeter, measure, measured_figure
from hsnn_perception.core.energy.models import (
    bridge_stage_energy,
    classifier_stage_energy,
    snn_stage_energy,
)
from hsnn_perception.core.energy.profiles import FP32_ADD_J
from hsnn_perception.core.errors import ClassifierError
from hsnn_perception.core.hybrid.accumulator import accumulate, frames_to_channels

T = TypeVar("T")


class InvalidLogitsError(ClassifierError, ValueError):
    """The classifier gave the wrong number of scores, or NaN / infinite ones."""


def input_spikes(frames: NDArray[Any]) -> NDArray[Any]:
    """Binned event counts ``(T, 2, h, w)`` -> Loihi input spikes, uint8 in {0, 1}.

    Loihi's input spikes are binary, so a bin with several events of one polarity at a pixel is
    one spike (the training data is binarised the same way: training/data.py).
    """
    return (np.asarray(frames) > 0).astype(np.uint8)


def snn_features(spikes: NDArray[Any], interval: int) -> NDArray[Any]:
    """SNN output of one window ``(T, C, H, W)`` -> the ANN input ``(1, T/I*C, H, W)``, float32.

    The accumulator circuit: spike counts over each interval of ``interval`` bins, the
    intervals stacked on the channel axis (core/hybrid/accumulator.py).
    """
    frames = accumulate(np.asarray(spikes)[np.newaxis], interval)  # (1, T/I, C, H, W)
    return np.ascontiguousarray(frames_to_channels(frames), dtype=np.float32)


def check_logits(logits: Any, num_classes: int) -> NDArray[Any]:
    """Logits as a flat float32 array, refused where there are not ``num_classes`` finite ones."""
    flat = np.asarray(logits, dtype=np.float32).reshape(-1)
    if flat.size != num_classes or not np.isfinite(flat).all():
        raise InvalidLogitsError(
            f"the classifier gave invalid logits {flat[:16]} (expected {num_classes} finite)"
        )
    return flat


@dataclass(frozen=True)
class Timed(Generic[T]):
    """What a call returned, how long it took on the host, and the energy a meter saw meanwhile
    (NaN without a meter)."""

    value: T
    latency_s: float
    energy_j: float = math.nan

    @property
    def measured(self) -> bool:
        return not math.isnan(self.energy_j)


def timed(meter: PowerMeter | None, fn: Callable[..., T], *args: Any) -> Timed[T]:
    """Run ``fn(*args)``, timing it and, with a meter, measuring the device's energy meanwhile.

    ``energy.meters.measure`` does it (the meter is stopped whether or not ``fn`` raises, so a
    failed window leaves it ready for the next one); this gives the result a name per field.
    """
    value, energy_j, _, latency = measure(meter, fn, *args)
    return Timed(value, latency, float(energy_j))


@dataclass(frozen=True)
class StageOutput(Generic[T]):
    """A stage's result for one window, with its host latency and its energy figure."""

    value: T
    latency_s: float
    figure: EnergyFigure


class SnnStage:
    """Stage 2: input spikes through the spiking layers, with the stage's energy figure (measured
    on a Loihi board when the backend's profiler gave one, else modelled from the op counts)."""

    def __init__(self, snn: Any, timesteps: int, *, chip: str, cores: int) -> None:
        self.snn = snn  # an SnnBackend (core/snn)
        self.timesteps = int(timesteps)
        self.chip = chip
        self.cores = int(cores)

    def run(self, spikes: NDArray[Any]) -> StageOutput[tuple[NDArray[Any], Any]]:
        """Binary input spikes ``(T, 2, h, w)`` -> (output spikes, OpCounts or None)."""
        t = timed(None, self.snn.run_window, spikes)
        out, ops = t.value
        figure = snn_stage_energy(
            ops,
            self.timesteps,
            chip=self.chip,
            cores=self.cores,
            ran_on=str(getattr(self.snn, "backend_name", "snn")),
            measurement=getattr(self.snn, "last_measurement", None),
            measurement_error=getattr(self.snn, "probe_error", None),
        )
        if ops is None:  # nothing counted: the host's wall time is all that is known
            figure.latency_s = t.latency_s
        return StageOutput((out, ops), t.latency_s, figure)


class BridgeStage:
    """Stage 3, the accumulator circuit on the host CPU: one addition per element of the SNN
    output window; energy measured where the host has a readable counter, else modelled."""

    def __init__(
        self,
        interval: int,
        meter: PowerMeter | None = None,
        energy_per_add_j: float = FP32_ADD_J,
    ) -> None:
        self.interval = int(interval)
        self.meter = meter
        self.energy_per_add_j = energy_per_add_j

    def run(self, spikes: NDArray[Any]) -> StageOutput[NDArray[Any]]:
        t = timed(self.meter, snn_features, spikes, self.interval)
        figure = bridge_stage_energy(
            int(spikes.size),
            int(np.asarray(spikes).sum(dtype=np.float64)),
            t.latency_s,
            self.meter,
            t.energy_j if t.measured else None,
            self.energy_per_add_j,
        )
        return StageOutput(t.value, t.latency_s, figure)


class ClassifierStage:
    """Stage 4: features through the non-spiking layers to class scores.

    With a ``backend`` (a ClassifierBackend: ONNX Runtime, TensorRT) the figure is measured by the
    device's meter or modelled from ``macs`` on ``model_device``; without one (an S6 model, all
    layers spiking) the scores are the output spike counts per class (core/ann/readout.py).
    """

    def __init__(
        self,
        backend: Any | None,
        num_classes: int,
        *,
        macs: int = 0,
        meter: PowerMeter | None = None,
        model_device: str = "",
    ) -> None:
        self.backend = backend
        self.num_classes = int(num_classes)
        self.macs = int(macs)
        self.meter = meter
        self.model_device = model_device

    def run(self, features: NDArray[Any]) -> StageOutput[NDArray[Any]]:
        """Features ``(1, F, H, W)`` -> class scores (softmax), float32 ``(num_classes,)``."""
        if self.backend is None:
            t = timed(self.meter, spike_count_readout, features, self.num_classes)
            figure = self._host_figure(t)
        else:
            t = timed(self.meter, self.backend.infer, features.astype(np.float32, copy=False))
            device = str(getattr(self.backend, "device", "cpu"))
            figure = classifier_stage_energy(
                self.macs,
                t.latency_s,
                device,
                str(getattr(self.backend, "name", device)),
                self.meter,
                t.energy_j if t.measured else None,
                self.model_device,
            )
        scores = softmax(check_logits(t.value, self.num_classes))
        return StageOutput(scores, t.latency_s, figure)

    def _host_figure(self, t: Timed[Any]) -> EnergyFigure:
        if self.meter is not None and t.measured:
            return measured_figure("classifier", "cpu", self.meter, t.energy_j, t.latency_s)
        return unavailable("classifier", "cpu", "no readable CPU energy counter", t.latency_s)


@dataclass
class WindowResult:
    """Everything one window gave, stage by stage."""

    scores: NDArray[Any]
    output_spikes: NDArray[Any]
    features: NDArray[Any]
    ops: Any  # OpCounts, or None where the backend does not count (or there is no SNN)
    latency_s: dict[str, float] = field(default_factory=dict)
    figures: dict[str, EnergyFigure] = field(default_factory=dict)


class HybridPipeline:
    """The three stages after binning, chained: what the four nodes compute between them.

    ``snn`` None passes the input spikes straight to the accumulator (an A6 model, all layers
    ANN); ``classifier`` None stops after the features (INT8 calibration needs no scores).
    """

    def __init__(
        self, snn: SnnStage | None, bridge: BridgeStage, classifier: ClassifierStage | None
    ) -> None:
        self.snn = snn
        self.bridge = bridge
        self.classifier = classifier

    def features(self, frames: NDArray[Any]) -> NDArray[Any]:
        """Frames -> ANN input, without timing or energy (calibration, export checks)."""
        spikes = input_spikes(frames)
        out = spikes if self.snn is None else self.snn.snn.run_window(spikes)[0]
        return snn_features(out, self.bridge.interval)

    def window(self, frames: NDArray[Any]) -> WindowResult:
        """Frames ``(T, 2, h, w)`` of one window -> its scores, intermediate results and figures."""
        if self.classifier is None:
            raise ValueError("this pipeline has no classifier stage: use features()")
        spikes = input_spikes(frames)
        latency: dict[str, float] = {}
        figures: dict[str, EnergyFigure] = {}
        ops = None
        out = spikes
        if self.snn is not None:
            s = self.snn.run(spikes)
            out, ops = s.value
            latency["snn"], figures["snn"] = s.latency_s, s.figure
        b = self.bridge.run(out)
        latency["bridge"], figures["bridge"] = b.latency_s, b.figure
        c = self.classifier.run(b.value)
        latency["classifier"], figures["classifier"] = c.latency_s, c.figure
        return WindowResult(c.value, out, b.value, ops, latency, figures)
