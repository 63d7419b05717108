"""Percentile-based firing-rate regularisation (after Patel et al. 2021).

Patel, Hunsberger, Batir & Eliasmith, "A spiking neural network for image segmentation" (2021),
keep the activity of each layer inside a target range by penalising a *percentile* of the
per-neuron firing rates rather than the mean: a few very active neurons cost energy on Loihi and a
layer of silent neurons carries no information. Here, for each spiking layer with a target
``(percentile, low, high)`` (rates in spikes per neuron per timestep)::

    r_p     = percentile_p over neurons of (mean over batch and time of the neuron's spikes)
    penalty = relu(low - r_p)^2 + relu(r_p - high)^2

summed over layers and scaled by ``weight``. torch is imported by the caller (tensors in, tensor
out); nothing here imports it at module level.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hsnn_perception.core.errors import ConfigurationError


class RegularizationError(ConfigurationError, ValueError):
    """An invalid firing-rate target."""


@dataclass(frozen=True)
class RateTarget:
    """Keep the ``percentile``-th percentile of a layer's per-neuron rates in ``[low, high]``."""

    percentile: float = 99.0
    low: float = 0.0
    high: float = 0.25

    def __post_init__(self) -> None:
        if not 0.0 <= self.percentile <= 100.0:
            raise RegularizationError(f"percentile must be in [0, 100], got {self.percentile}")
        if not 0.0 <= self.low <= self.high <= 1.0:
            raise RegularizationError(
                f"rate range must satisfy 0 <= low <= high <= 1, got [{self.low}, {self.high}]"
            )

    @classmethod
    def parse(cls, text: str) -> RateTarget:
        """Parse ``"percentile:low:high"`` (e.g. ``"99:0.01:0.2"``)."""
        try:
            p, lo, hi = (float(v) for v in text.split(":"))
        except ValueError as exc:
            raise RegularizationError(
                f"rate target {text!r} is not 'percentile:low:high' (e.g. 99:0.01:0.2)"
            ) from exc
        return cls(p, lo, hi)


def neuron_rates(spikes: Any) -> Any:
    """Per-neuron rate of a slayer spike tensor ``(N, ..., T)``: mean over batch and time."""
    flat = spikes.reshape(spikes.shape[0], -1, spikes.shape[-1])
    return flat.mean(dim=(0, 2))


def rate_penalty(spike_list: Sequence[Any], targets: Sequence[RateTarget], weight: float) -> Any:
    """The regularisation term for the spiking layers' outputs (one target per layer)."""
    if len(targets) != len(spike_list):
        raise RegularizationError(
            f"{len(targets)} rate targets for {len(spike_list)} spiking layers"
        )
    import torch

    total = torch.zeros(())
    for spikes, target in zip(spike_list, targets, strict=True):
        rates = neuron_rates(spikes)
        r_p = torch.quantile(rates, target.percentile / 100.0)
        total = total + torch.relu(target.low - r_p) ** 2 + torch.relu(r_p - target.high) ** 2
    return weight * total


def expand_targets(targets: Sequence[RateTarget], n_layers: int) -> list[RateTarget]:
    """One target per layer: a single target applies to all layers; otherwise counts must match."""
    if n_layers == 0:
        return []
    if len(targets) == 1:
        return [targets[0]] * n_layers
    if len(targets) != n_layers:
        raise RegularizationError(
            f"give one rate target, or one per spiking layer ({n_layers}), got {len(targets)}"
        )
    return list(targets)


def rate_summary(rates: Sequence[Any], targets: Sequence[RateTarget] | None = None) -> list[dict]:
    """Per layer: mean rate, and the rate at the target percentile (99th if no targets)."""
    import torch

    out = []
    for i, r in enumerate(rates):
        p = targets[i].percentile if targets else 99.0
        out.append(
            {
                "layer": i + 1,
                "mean_rate": float(r.mean()),
                "percentile": p,
                "percentile_rate": float(torch.quantile(r.float(), p / 100.0)),
            }
        )
    return out
