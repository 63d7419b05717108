import numpy as np
import pytest

from hsnn_perception.core.ann.readout import ReadoutError, softmax, spike_count_readout


def test_softmax_is_a_distribution_and_stable():
    p = softmax(np.array([1000.0, 1001.0, 999.0]))
    assert p.dtype == np.float32 and abs(p.sum() - 1) < 1e-6 and p.argmax() == 1


def test_spike_counts_sum_over_frames():
    frames = np.zeros((1, 3 * 4, 1, 1), dtype=np.float32)  # 3 frames of 4 class neurons
    frames[0, [1, 5, 9, 2], 0, 0] = [2, 1, 4, 3]
    np.testing.assert_array_equal(spike_count_readout(frames, 4), [0, 7, 3, 0])


def test_readout_needs_whole_classes():
    with pytest.raises(ReadoutError, match="11 classes"):
        spike_count_readout(np.zeros(10), 11)
