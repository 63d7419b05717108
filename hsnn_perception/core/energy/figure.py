"""An energy figure: the energy of one stage (or of all) for one inference, and where it came from.

Every figure says where it came from (:class:`EnergyFigure` ``source`` and ``method``):

* ``measured``: read from a power/energy counter of the hardware that ran the stage
  (:mod:`~hsnn_perception.core.energy.meters`);
* ``modelled``: computed from operation counts or latency with published constants
  (:mod:`~hsnn_perception.core.energy.models` over :mod:`~hsnn_perception.core.energy.profiles`);
* ``unavailable``: nothing could say; the energy and power are NaN, never 0.

:func:`total` sums the stages' figures of one inference and labels the sum by its parts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from hsnn_perception.core.errors import EnergyAccountingError

SOURCE_MEASURED = "measured"
SOURCE_MODELLED = "modelled"
SOURCE_UNAVAILABLE = "unavailable"
SOURCES = (SOURCE_MEASURED, SOURCE_MODELLED, SOURCE_UNAVAILABLE)

STAGES = ("driver", "snn", "bridge", "classifier", "total")


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
            kwargs: dict[str, Any] = {
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


def average_power(energy_j: float, latency_s: float) -> float:
    """Energy / latency; NaN where either is unknown or the latency is not positive."""
    if math.isnan(energy_j) or math.isnan(latency_s) or latency_s <= 0:
        return math.nan
    return energy_j / latency_s


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
        power_w=average_power(energy, sum(have_latency)) if have_latency else math.nan,
        latency_s=latency,
        **counts,
    )
