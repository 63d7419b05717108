"""A picture of what the SNN saw and did, for a person watching the pipeline (rviz2, Foxglove):
the event window as accumulated polarity beside the output spike map. numpy only, RGB uint8
``(height, width, 3)``, ready for a sensor_msgs/Image with encoding ``rgb8``.

Left panel: events of the window summed over its bins, ON (``p == 1``, channel 1) red, OFF
(channel 0) blue, both where a pixel saw both. Right panel: output spikes summed over time and
channels, yellow. Each panel is normalised to its own maximum with a square root, so a few busy
pixels do not leave the rest black. Panels are enlarged by whole-pixel repetition (no smoothing:
one model pixel stays one visible square).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

MIN_PANEL_HEIGHT = 256  # px: a 32x32 model input is too small to see in a viewer at 1:1
GAP = 4  # px of dark grey between the panels
_GAP_COLOUR = 48
_SPIKE_COLOUR = np.array([255, 220, 0], np.float32)  # yellow: neither polarity colour


def _norm(counts: NDArray[Any]) -> NDArray[Any]:
    """``counts`` -> [0, 1], square-root scaled to the maximum (all zero stays zero)."""
    counts = counts.astype(np.float32)
    peak = float(counts.max()) if counts.size else 0.0
    return np.sqrt(counts / peak) if peak > 0 else np.zeros_like(counts)


def _enlarge(image: NDArray[Any], factor: int) -> NDArray[Any]:
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def polarity_panel(frames: NDArray[Any]) -> NDArray[Any]:
    """Frames ``(T, 2, h, w)`` (channel 0 OFF, channel 1 ON) -> RGB ``(h, w, 3)`` uint8."""
    if frames.ndim != 4 or frames.shape[1] != 2:
        raise ValueError(f"frames must be (T, 2, h, w), got shape {frames.shape}")
    summed = frames.sum(axis=0, dtype=np.int64)
    # One scale for both polarities: their relative strength stays visible.
    scaled = _norm(summed)
    rgb = np.zeros((*summed.shape[1:], 3), np.float32)
    rgb[..., 0] = scaled[1]  # ON red
    rgb[..., 2] = scaled[0]  # OFF blue
    image: NDArray[Any] = np.rint(rgb * 255).astype(np.uint8)
    return image


def spike_map(spikes: NDArray[Any]) -> NDArray[Any]:
    """Output spikes -> a 2-D count map: ``(T, C, h, w)`` summed over T and C; ``(T, C, n)``
    over T; a flat output (``(T, n)`` or ``(n,)``) summed over T and laid out in a square."""
    counts: NDArray[Any]
    if spikes.ndim >= 4:
        counts = spikes.reshape(-1, *spikes.shape[-2:]).sum(axis=0, dtype=np.int64)
        return counts
    if spikes.ndim == 3:
        counts = spikes.sum(axis=0, dtype=np.int64)
        return counts
    flat = spikes.reshape(-1) if spikes.ndim < 2 else spikes.sum(axis=0, dtype=np.int64)
    side = max(1, math.ceil(math.sqrt(flat.size)))
    square = np.zeros(side * side, np.int64)
    square[: flat.size] = flat
    return square.reshape(side, side)


def spike_panel(spikes: NDArray[Any]) -> NDArray[Any]:
    """Output spikes (any shape :func:`spike_map` takes) -> RGB ``(h, w, 3)`` uint8."""
    scaled = _norm(spike_map(spikes))
    image: NDArray[Any] = np.rint(scaled[..., None] * _SPIKE_COLOUR).astype(np.uint8)
    return image


def render_debug_image(
    frames: NDArray[Any], spikes: NDArray[Any] | None = None, min_height: int = MIN_PANEL_HEIGHT
) -> NDArray[Any]:
    """The window's polarity panel, and the spike panel beside it when ``spikes`` is given, as
    one RGB uint8 image. Both panels are enlarged by whole factors to at least ``min_height``
    (the taller one sets the height; the other is centred vertically on a black background)."""
    panels = [polarity_panel(frames)]
    if spikes is not None:
        panels.append(spike_panel(spikes))
    panels = [_enlarge(p, max(1, math.ceil(min_height / p.shape[0]))) for p in panels]
    height = max(p.shape[0] for p in panels)
    width = sum(p.shape[1] for p in panels) + GAP * (len(panels) - 1)
    image = np.zeros((height, width, 3), np.uint8)
    x = 0
    for i, panel in enumerate(panels):
        if i:
            image[:, x : x + GAP] = _GAP_COLOUR
            x += GAP
        top = (height - panel.shape[0]) // 2
        image[top : top + panel.shape[0], x : x + panel.shape[1]] = panel
        x += panel.shape[1]
    return image
