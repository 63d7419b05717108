import numpy as np
import pytest
import torch

from hsnn_perception.core.hybrid.accumulator import (
    AccumulatorError,
    accumulate,
    check_interval,
    frames_to_channels,
)


@pytest.mark.parametrize("interval", [1, 2, 4, 8, 16])
def test_accumulate_sums_each_interval(interval):
    rng = np.random.default_rng(interval)
    spikes = (rng.random((3, 16, 2, 5, 4)) < 0.3).astype(np.uint8)
    out = accumulate(spikes, interval)
    assert out.shape == (3, 16 // interval, 2, 5, 4) and out.dtype == np.float32
    for f in range(16 // interval):
        expected = spikes[:, f * interval : (f + 1) * interval].sum(axis=1)
        np.testing.assert_array_equal(out[:, f], expected)
    assert out.sum() == spikes.sum()


def test_numpy_and_torch_give_the_same_frames():
    spikes = (np.random.default_rng(0).random((2, 8, 3, 4, 4)) < 0.5).astype(np.float32)
    np_out = accumulate(spikes, 4)
    torch_out = accumulate(torch.from_numpy(spikes), 4)
    assert isinstance(torch_out, torch.Tensor)
    np.testing.assert_array_equal(torch_out.numpy(), np_out)


def test_other_time_axis():
    spikes = np.ones((2, 3, 8), dtype=np.uint8)  # time last, as slayer's NCHWT
    out = accumulate(spikes, 2, time_axis=-1)
    assert out.shape == (2, 3, 4) and (out == 2).all()


def test_frames_to_channels_keeps_time_order():
    frames = np.arange(2 * 4 * 3 * 2 * 2).reshape(2, 4, 3, 2, 2)
    stacked = frames_to_channels(frames)
    assert stacked.shape == (2, 12, 2, 2)
    np.testing.assert_array_equal(stacked[:, 3:6], frames[:, 1])


@pytest.mark.parametrize(("timesteps", "interval"), [(16, 3), (16, 0), (10, 4)])
def test_interval_must_divide_timesteps(timesteps, interval):
    with pytest.raises(AccumulatorError):
        check_interval(timesteps, interval)


def test_frames_to_channels_needs_five_dims():
    with pytest.raises(AccumulatorError):
        frames_to_channels(np.zeros((2, 3, 4)))
