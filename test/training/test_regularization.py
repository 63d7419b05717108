"""Tests of the percentile firing-rate regulariser (hsnn_perception/training/regularization.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hsnn_perception.training.data import InputSpec, synthetic_spikeset
from hsnn_perception.training.models import ArchSpec
from hsnn_perception.training.regularization import (
    RateTarget,
    RegularizationError,
    expand_targets,
    neuron_rates,
    rate_penalty,
    rate_summary,
)
from hsnn_perception.training.train import TrainConfig, layer_rates, train_model

SMALL = {"height": 16, "width": 16, "channels": (4, 8, 8, 8), "hidden": 16}


def _spikes(rates, batch=4, steps=50, seed=0):
    """Spike tensor (N, neurons, T) whose neurons fire with the given probabilities."""
    g = torch.Generator().manual_seed(seed)
    p = torch.tensor(rates, dtype=torch.float32)[None, :, None].expand(batch, len(rates), steps)
    return (torch.rand(p.shape, generator=g) < p).float().requires_grad_(True)


def test_rates_are_per_neuron_means_over_batch_and_time():
    s = torch.zeros(2, 3, 4, 10)
    s[:, 1, :, :5] = 1
    r = neuron_rates(s)
    assert r.shape == (12,)
    assert torch.allclose(r.reshape(3, 4)[1], torch.full((4,), 0.5))
    assert float(r.reshape(3, 4)[0].sum()) == 0


def test_penalty_is_zero_inside_the_range_and_grows_outside():
    target = RateTarget(percentile=90, low=0.05, high=0.3)
    inside = _spikes([0.1] * 20 + [0.2] * 20)
    assert float(rate_penalty([inside], [target], 1.0).detach()) == 0.0
    too_busy = _spikes([0.1] * 20 + [0.9] * 20)
    too_quiet = _spikes([0.0] * 40)
    busy = rate_penalty([too_busy], [target], 1.0)
    assert float(busy.detach()) > 0
    assert float(rate_penalty([too_quiet], [target], 1.0).detach()) > 0
    busy.backward()
    # lowering the busiest neurons' spikes lowers the penalty: their gradient is positive
    assert float(too_busy.grad[:, 20:].sum()) > 0
    tripled = rate_penalty([too_busy], [target], 3.0).detach()
    assert float(tripled) == pytest.approx(3 * float(busy.detach()))


def test_training_with_the_penalty_lowers_the_high_percentile_rate():
    spec_in = InputSpec(sensor_height=64, sensor_width=64, height=16, width=16)
    train = synthetic_spikeset(22, spec_in, seed=7)
    test = synthetic_spikeset(11, spec_in, seed=7, first_index=300)
    spec = ArchSpec(k=2, interval=4, **SMALL)
    target = RateTarget(percentile=95, low=0.0, high=0.01)
    common = {"epochs": 3, "batch_size": 11, "lr": 1e-2, "seed": 3}
    free = train_model(spec, train, test, TrainConfig(**common), progress=False)
    reg = train_model(
        spec,
        train,
        test,
        TrainConfig(**common, rate_targets=[target], rate_weight=200.0),
        progress=False,
    )
    # same seed, same start: the regulariser alone makes the difference
    before = [r["mean_rate"] for r in reg.rates_before]
    assert before == [r["mean_rate"] for r in free.rates_before]

    def p95(model):
        return [float(torch.quantile(r, 0.95)) for r in layer_rates(model, test)]

    assert p95(reg.model)[-1] < p95(free.model)[-1]
    assert all(r["percentile"] == 95 for r in reg.rates_after)


def test_targets_parse_validate_and_expand():
    assert RateTarget.parse("99:0.01:0.2") == RateTarget(99.0, 0.01, 0.2)
    with pytest.raises(RegularizationError, match="percentile:low:high"):
        RateTarget.parse("99-0.2")
    with pytest.raises(RegularizationError, match="percentile"):
        RateTarget(percentile=120)
    with pytest.raises(RegularizationError, match="low <= high"):
        RateTarget(low=0.5, high=0.1)
    t = RateTarget()
    assert expand_targets([t], 3) == [t, t, t]
    with pytest.raises(RegularizationError, match="one per spiking layer"):
        expand_targets([t, t], 3)
    with pytest.raises(RegularizationError, match="rate targets for"):
        rate_penalty([_spikes([0.1])], [t, t], 1.0)


def test_summary_reports_mean_and_percentile():
    rates = [torch.tensor(np.linspace(0, 1, 101), dtype=torch.float32)]
    (s,) = rate_summary(rates, [RateTarget(percentile=90)])
    assert s["layer"] == 1 and s["mean_rate"] == pytest.approx(0.5)
    assert s["percentile_rate"] == pytest.approx(0.9, abs=1e-6)
