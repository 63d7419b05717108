"""The debug image: ON events red, OFF blue, spikes yellow, each model pixel one enlarged square,
panels side by side at a viewable size."""

from __future__ import annotations

import numpy as np
import pytest

from hsnn_perception.core.events.debug_image import (
    GAP,
    polarity_panel,
    render_debug_image,
    spike_map,
    spike_panel,
)


def test_polarity_colours_and_scale():
    frames = np.zeros((4, 2, 32, 32), np.uint16)
    frames[:, 1, 3, 5] = 2  # ON only: 8 events
    frames[0, 0, 10, 20] = 2  # OFF only: 2 events
    frames[1, 0, 7, 7] = frames[1, 1, 7, 7] = 8  # both
    panel = polarity_panel(frames)
    assert panel.shape == (32, 32, 3) and panel.dtype == np.uint8
    assert tuple(panel[3, 5]) == (255, 0, 0)  # the busiest pixel: full red
    assert panel[10, 20, 2] == round(255 * 0.5) and panel[10, 20, :2].tolist() == [0, 0]
    assert panel[7, 7, 0] == panel[7, 7, 2] == 255 and panel[7, 7, 1] == 0
    quiet = np.ones((32, 32), bool)
    quiet[[3, 10, 7], [5, 20, 7]] = False
    assert not panel[quiet].any()


def test_spike_map_sums_time_and_channels_and_lays_out_flat_outputs():
    spikes = np.zeros((16, 32, 8, 8), np.uint8)
    spikes[0, 0, 1, 2] = spikes[5, 31, 1, 2] = spikes[3, 4, 6, 6] = 1
    counts = spike_map(spikes)
    assert counts.shape == (8, 8) and counts[1, 2] == 2 and counts[6, 6] == 1 and counts.sum() == 3
    flat = np.zeros((16, 10), np.uint8)
    flat[:, 9] = 1
    square = spike_map(flat)
    assert square.shape == (4, 4) and square.reshape(-1)[9] == 16 and square.sum() == 16
    panel = spike_panel(spikes)
    assert tuple(panel[1, 2]) == (255, 220, 0) and not panel[0, 0].any()


def test_render_window_beside_spikes_enlarged_by_whole_pixels():
    frames = np.zeros((16, 2, 32, 32), np.uint16)
    frames[:, 1, 0, 0] = 1
    spikes = np.zeros((16, 32, 8, 8), np.uint8)
    spikes[:, :, 7, 7] = 1
    image = render_debug_image(frames, spikes)
    assert image.dtype == np.uint8 and image.shape == (256, 256 + GAP + 256, 3)
    assert (image[:8, :8] == (255, 0, 0)).all() and not image[8, 8].any()  # 1 pixel = 8x8
    spikes_at = image[:, 256 + GAP :]
    # Model pixel (7, 7) of 8x8 is the last 32x32 block; the rest of the panel is black.
    assert (spikes_at[224:, 224:] == (255, 220, 0)).all() and not spikes_at[:224].any()
    assert (image[:, 256 : 256 + GAP] == 48).all()
    alone = render_debug_image(frames)
    assert alone.shape == (256, 256, 3) and (alone == image[:, :256]).all()


def test_empty_window_is_black_and_bad_frames_are_refused():
    assert not render_debug_image(np.zeros((2, 2, 4, 4), np.uint16)).any()
    with pytest.raises(ValueError, match=r"\(T, 2, h, w\)"):
        polarity_panel(np.zeros((2, 3, 4, 4)))
