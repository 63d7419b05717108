"""Tests of the model family (hsnn_perception/training/models.py): shapes, names, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hsnn_perception.core.hybrid.accumulator import accumulate, frames_to_channels
from hsnn_perception.training.models import ArchSpec, ModelSpecError, build_model

SMALL = {"height": 16, "width": 16, "channels": (4, 8, 8, 8), "hidden": 16}


@pytest.mark.parametrize("k", range(7))
@pytest.mark.parametrize("interval", [2, 4, 8])
def test_every_member_of_the_family_runs_and_backpropagates(k, interval):
    torch.manual_seed(k)
    spec = ArchSpec(k=k, interval=interval, **SMALL)
    model = build_model(spec)
    x = (torch.rand(3, 2, 16, 16, 16) < 0.2).float()
    logits, outs = model(x)
    assert logits.shape == (3, 11)
    assert len(outs) == k
    feats, _ = model.features(x)
    assert tuple(feats.shape[1:]) == spec.ann_input_shape[1:]
    logits.sum().backward()  # gradients reach the first layer through the accumulator
    first = model.snn[0].synapse.weight if k else model.ann[0].weight
    assert first.grad is not None and torch.isfinite(first.grad).all()
    if k:
        # the spiking layers really spike (binary outputs)
        assert set(torch.unique(outs[-1]).tolist()) <= {0.0, 1.0}


def test_names_follow_the_paper():
    assert [ArchSpec(k=k).name for k in range(7)] == [
        "A6",
        "S1A5",
        "S2A4",
        "S3A3",
        "S4A2",
        "S5A1",
        "S6",
    ]


def test_ann_input_is_the_shared_accumulator_output():
    torch.manual_seed(0)
    spec = ArchSpec(k=1, interval=4, **SMALL)
    model = build_model(spec).eval()
    x = (torch.rand(2, 2, 16, 16, 16) < 0.2).float()
    with torch.no_grad():
        spikes, _ = model.run_snn(x)
        feats, _ = model.features(x)
    numpy_spikes = spikes.permute(0, 4, 1, 2, 3).numpy()  # (N, T, C, H, W) like the bridge
    expected = frames_to_channels(accumulate(numpy_spikes, 4, time_axis=1))
    np.testing.assert_array_equal(feats.numpy(), expected)
    assert feats.shape == (2, 4 * 4, 8, 8)


def test_snn_baseline_scores_are_output_spike_counts():
    torch.manual_seed(1)
    model = build_model(ArchSpec(k=6, interval=2, **SMALL)).eval()
    x = (torch.rand(2, 2, 16, 16, 16) < 0.3).float()
    with torch.no_grad():
        counts, outs = model(x)
    np.testing.assert_array_equal(counts.numpy(), outs[-1].sum(dim=-1).numpy())


def test_spec_round_trips_through_a_dict():
    spec = ArchSpec(k=3, interval=8, **SMALL)
    assert ArchSpec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"k": 7}, "k"),
        ({"k": -1}, "k"),
        ({"interval": 3}, "does not divide"),
        ({"interval": 0}, "interval"),
        ({"height": 20}, "multiples of 8"),
        ({"channels": (4, 8, 8)}, "channels"),
        ({"num_classes": 1}, "classes"),
    ],
)
def test_impossible_specs_are_rejected(kwargs, match):
    with pytest.raises(ModelSpecError, match=match):
        ArchSpec(**kwargs)
    assert issubclass(ModelSpecError, ValueError)
