"""Event filters: region of interest, polarity, background-activity noise (dv-processing) and
spatial mapping of the sensor geometry to the model's input geometry, composed as a chain.

Every filter is a callable ``events -> events`` with ``in_shape``/``out_shape`` ``(height,
width)``. All but the noise filter are numpy-vectorised. The noise filter is dv-processing's
``dv.noise.BackgroundActivityNoiseFilter`` (keeps an event only if a neighbouring pixel had an
event within ``time_window_us`` before it); it is stateful across packets, like the camera stream.
Its timestamp map starts at 0, so events in the first ``time_window_us`` of sensor time all pass.

Spatial mapping (:class:`SpatialMap`), e.g. DVXplorer 640x480 -> 128x128:

``mode="crop"`` (default, keeps the aspect ratio)
    Centre-crop the sensor to the output aspect ratio (640x480 -> the central 480x480, columns
    80..559), then map crop coordinates by ``x_out = (x - x0) * out_w // crop_w`` (same for y).
    With an integer ratio (e.g. 256 -> 128) this is exact block pooling; otherwise (480 -> 128,
    3.75 pixels per output pixel) output pixels collect 3 or 4 input columns/rows alternately.
``mode="stretch"`` (or ``"scale"``)
    No crop: ``x_out = x * out_w // in_w``, ``y_out = y * out_h // in_h`` (anisotropic).
``mode="pad"`` (keeps the aspect ratio and every event)
    Centre the sensor in the smallest frame of the output aspect ratio that holds it (346x260
    -> 346x346, rows shifted down by 43), then map frame coordinates as above.

With an integer ratio every mode pools blocks exactly as binning.EventWindower does itself.
:func:`model_input_chain` builds the SNN node's mapping (an optional ROI, then a SpatialMap);
:class:`MappedWindower` puts it in front of a windower.

dv-processing 2.0.4's Python API has no way to build an ``EventStore`` from numpy, so
:func:`to_dv_store` pushes events one by one (about 1 M events/s); :func:`from_dv_store` is
vectorised through ``EventStore.numpy()``. Sources that already hold a ``dv.EventStore``
(cameras, files) should run the noise filter before converting.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

import numpy as np
from numpy.typing import NDArray

from hsnn_perception.core.errors import EventError
from hsnn_perception.core.events.binning import EventWindower
from hsnn_perception.core.events.codecs import EVENT_DTYPE, check_events


class FilterConfigError(EventError, ValueError):
    """A filter or filter-chain configuration is invalid (names the offending key/value)."""


def to_dv_store(events: NDArray[Any]) -> Any:
    """Copy events into a new ``dv.EventStore`` (a Python loop: the 2.0.4 bindings offer no
    bulk constructor)."""
    import dv_processing as dv

    check_events(events)
    store = dv.EventStore()
    push = store.push_back
    for t, x, y, p in zip(
        events["t"].tolist(),
        events["x"].tolist(),
        events["y"].tolist(),
        events["p"].astype(bool).tolist(),
        strict=True,
    ):
        push(t, x, y, p)
    return store


def from_dv_store(store: Any) -> NDArray[Any]:
    """Convert a ``dv.EventStore`` (or ``dv.EventPacket``) to an :data:`EVENT_DTYPE` array."""
    if store is None:
        return np.zeros(0, dtype=EVENT_DTYPE)
    arr = store.numpy()
    out = np.empty(arr.shape[0], dtype=EVENT_DTYPE)
    out["t"] = arr["timestamp"]
    out["x"] = arr["x"]
    out["y"] = arr["y"]
    out["p"] = arr["polarity"]
    return out


def _positive_int(name: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise FilterConfigError(f"{name} must be a positive integer, got {v!r}")
    return int(v)


class _Filter:
    in_shape: tuple[int, int]
    out_shape: tuple[int, int]

    def __call__(self, events: NDArray[Any]) -> NDArray[Any]:  # pragma: no cover - interface
        raise NotImplementedError


class RoiCrop(_Filter):
    """Keep events inside the rectangle ``x..x+width-1, y..y+height-1`` and shift them so the
    rectangle's corner becomes (0, 0)."""

    def __init__(self, in_shape: tuple[int, int], x: int, y: int, width: int, height: int):
        ih, iw = in_shape
        if x < 0 or y < 0 or width < 1 or height < 1 or x + width > iw or y + height > ih:
            raise FilterConfigError(
                f"roi x={x} y={y} width={width} height={height} is not inside the {iw}x{ih} input"
            )
        self.in_shape, self.out_shape = (ih, iw), (int(height), int(width))
        self.x, self.y = int(x), int(y)

    def __call__(self, events: NDArray[Any]) -> NDArray[Any]:
        h, w = self.out_shape
        x = events["x"].astype(np.int32) - self.x
        y = events["y"].astype(np.int32) - self.y
        keep = (x >= 0) & (x < w) & (y >= 0) & (y < h)
        out = events[keep]
        out["x"] = x[keep]
        out["y"] = y[keep]
        return out


class PolarityFilter(_Filter):
    """Keep only ``"on"`` (p=1) or ``"off"`` (p=0) events."""

    def __init__(self, in_shape: tuple[int, int], keep: str):
        if keep not in ("on", "off"):
            raise FilterConfigError(f"polarity keep must be 'on' or 'off', got {keep!r}")
        self.in_shape = self.out_shape = (int(in_shape[0]), int(in_shape[1]))
        self.p = 1 if keep == "on" else 0

    def __call__(self, events: NDArray[Any]) -> NDArray[Any]:
        kept: NDArray[Any] = events[events["p"] == self.p]
        return kept


class BackgroundActivityFilter(_Filter):
    """dv-processing's background-activity noise filter (stateful across packets)."""

    def __init__(self, in_shape: tuple[int, int], time_window_us: int = 2000):
        import dv_processing as dv

        self.in_shape = self.out_shape = (int(in_shape[0]), int(in_shape[1]))
        self.time_window_us = _positive_int("time_window_us", time_window_us)
        h, w = self.in_shape
        self._filter = dv.noise.BackgroundActivityNoiseFilter(
            (w, h), backgroundActivityDuration=timedelta(microseconds=self.time_window_us)
        )

    def filter_store(self, store: Any) -> Any:
        """Filter a ``dv.EventStore`` directly (no numpy round trip)."""
        self._filter.accept(store)
        return self._filter.generateEvents()

    def __call__(self, events: NDArray[Any]) -> NDArray[Any]:
        if events.size == 0:
            return events
        return from_dv_store(self.filter_store(to_dv_store(events)))


class SpatialMap(_Filter):
    """Map sensor coordinates to the model's input geometry (see the module docstring)."""

    def __init__(self, in_shape: tuple[int, int], height: int, width: int, mode: str = "crop"):
        ih, iw = (
            _positive_int("input height", in_shape[0]),
            _positive_int("input width", in_shape[1]),
        )
        oh, ow = _positive_int("height", height), _positive_int("width", width)
        if oh > ih or ow > iw:
            raise FilterConfigError(f"cannot map {iw}x{ih} up to a larger {ow}x{oh}")
        if mode == "crop":
            # Largest centred crop with the output's aspect ratio.
            if iw * oh >= ow * ih:
                ch, cw = ih, (ih * ow) // oh
            else:
                ch, cw = (iw * oh) // ow, iw
            y0, x0 = (ih - ch) // 2, (iw - cw) // 2
        elif mode in ("stretch", "scale"):
            ch, cw, y0, x0 = ih, iw, 0, 0
        elif mode == "pad":
            # Smallest centred frame with the output's aspect ratio (negative origin: padding).
            if iw * oh >= ow * ih:
                ch, cw = -(-iw * oh // ow), iw
            else:
                ch, cw = ih, -(-ih * ow // oh)
            y0, x0 = -((ch - ih) // 2), -((cw - iw) // 2)
        else:
            raise FilterConfigError(
                f"spatial map mode must be 'crop', 'stretch' (or 'scale') or 'pad', got {mode!r}"
            )
        self.in_shape, self.out_shape = (ih, iw), (oh, ow)
        self.mode, self.crop = mode, (x0, y0, cw, ch)

    def __call__(self, events: NDArray[Any]) -> NDArray[Any]:
        x0, y0, cw, ch = self.crop
        oh, ow = self.out_shape
        x = events["x"].astype(np.int64) - x0
        y = events["y"].astype(np.int64) - y0
        keep = (x >= 0) & (x < cw) & (y >= 0) & (y < ch)
        out = events[keep] if not keep.all() else events.copy()
        out["x"] = (x[keep] * ow) // cw
        out["y"] = (y[keep] * oh) // ch
        return out


_STAGES = {
    "roi": (RoiCrop, {"x", "y", "width", "height"}),
    "polarity": (PolarityFilter, {"keep"}),
    "background_activity": (BackgroundActivityFilter, {"time_window_us"}),
    "spatial_map": (SpatialMap, {"height", "width", "mode"}),
}


class EventFilterChain:
    """Filters applied in order; the geometry of each stage is the output of the previous one."""

    def __init__(self, sensor_shape: tuple[int, int], stages: Sequence[_Filter] = ()):
        self.in_shape = (int(sensor_shape[0]), int(sensor_shape[1]))
        self.stages = list(stages)
        shape = self.in_shape
        for s in self.stages:
            if tuple(s.in_shape) != shape:
                raise FilterConfigError(
                    f"{type(s).__name__} expects input {s.in_shape}, previous stage gives {shape}"
                )
            shape = (int(s.out_shape[0]), int(s.out_shape[1]))
        self.out_shape = shape

    @classmethod
    def from_config(
        cls,
        config: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None,
        sensor_shape: tuple[int, int],
    ) -> EventFilterChain:
        """Build from ``[{"type": "roi", "x": .., ...}, {"type": "polarity", "keep": "on"},
        {"type": "background_activity", "time_window_us": 2000},
        {"type": "spatial_map", "height": 128, "width": 128, "mode": "crop"}]``
        (or ``{"stages": [...]}``; ``None``/empty = pass-through)."""
        if config is None:
            return cls(sensor_shape)
        if isinstance(config, Mapping):
            extra = set(config) - {"stages"}
            if extra:
                raise FilterConfigError(f"unknown filter chain keys {sorted(extra)}; use 'stages'")
            config = config.get("stages") or []
        stages: list[_Filter] = []
        shape = (int(sensor_shape[0]), int(sensor_shape[1]))
        for i, spec in enumerate(config):
            if not isinstance(spec, Mapping) or "type" not in spec:
                raise FilterConfigError(f"filter stage {i} must be a mapping with a 'type' key")
            kind = spec["type"]
            if kind not in _STAGES:
                raise FilterConfigError(
                    f"unknown filter type {kind!r} in stage {i}; known: {', '.join(_STAGES)}"
                )
            ctor, allowed = _STAGES[kind]
            params = {k: v for k, v in spec.items() if k != "type"}
            unknown = set(params) - allowed
            if unknown:
                raise FilterConfigError(
                    f"unknown keys {sorted(unknown)} for filter {kind!r} "
                    f"(allowed: {sorted(allowed)})"
                )
            try:
                stage = ctor(shape, **params)
            except TypeError as exc:
                raise FilterConfigError(f"filter {kind!r} in stage {i}: {exc}") from exc
            stages.append(stage)
            shape = stage.out_shape
        return cls(sensor_shape, stages)

    def __call__(self, events: NDArray[Any]) -> NDArray[Any]:
        check_events(events)
        for stage in self.stages:
            events = stage(events)
        return events

    def axis_maps(
        self, width: int, height: int
    ) -> tuple[NDArray[np.int64], NDArray[np.int64]] | None:
        """Where the chain sends each sensor column ``0..width-1`` and row ``0..height-1``
        (-1: left out), or None when a stage is not a pure pixel mapping (polarity, noise).
        ROI and spatial maps keep an event iff its column and its row are kept, and map each
        on its own: the compiled front end (``fused.py``) maps by these tables."""
        axes = [np.arange(width, dtype=np.int64), np.arange(height, dtype=np.int64)]
        keep = [np.ones(width, bool), np.ones(height, bool)]
        for stage in self.stages:
            oh, ow = stage.out_shape
            if isinstance(stage, RoiCrop):  # a shift: (c * size) // size = c
                shifts, sizes, outs = (stage.x, stage.y), (ow, oh), (ow, oh)
            elif isinstance(stage, SpatialMap):
                x0, y0, cw, ch = stage.crop
                shifts, sizes, outs = (x0, y0), (cw, ch), (ow, oh)
            else:
                return None
            for a in (0, 1):
                c = axes[a] - shifts[a]
                keep[a] &= (c >= 0) & (c < sizes[a])
                axes[a] = (c * outs[a]) // sizes[a]
        xmap, ymap = (np.where(k, c, -1) for k, c in zip(keep, axes, strict=True))
        return xmap, ymap


# The SNN node's ``input_mapping`` values (SpatialMap modes).
INPUT_MAPPINGS = ("scale", "crop", "pad")


def model_input_chain(
    sensor_shape: tuple[int, int],
    model_shape: tuple[int, int],
    mapping: str = "scale",
    roi: Sequence[int] = (),
) -> EventFilterChain:
    """Sensor events -> model input coordinates: ``roi`` (x, y, width, height on the sensor;
    empty or width 0 = the whole sensor), then a :class:`SpatialMap` of mode ``mapping`` to
    ``model_shape`` (height, width)."""
    if mapping not in INPUT_MAPPINGS:
        raise FilterConfigError(
            f"input mapping must be one of {', '.join(INPUT_MAPPINGS)}, got {mapping!r}"
        )
    roi = [int(v) for v in roi]
    if roi and len(roi) != 4:
        raise FilterConfigError(f"roi must be [x, y, width, height], got {roi}")
    stages: list[_Filter] = []
    shape = (int(sensor_shape[0]), int(sensor_shape[1]))
    if roi and roi[2] > 0:
        stages.append(RoiCrop(shape, *roi))
        shape = stages[-1].out_shape
    stages.append(SpatialMap(shape, int(model_shape[0]), int(model_shape[1]), mapping))
    return EventFilterChain(sensor_shape, stages)


class MappedWindower:
    """A windower fed through a mapping: ``push`` maps events first; everything else is the
    windower's. ``mapped_out_events`` counts events the mapping left out (outside ROI/crop)."""

    def __init__(self, mapping: EventFilterChain, windower: Any) -> None:
        self.mapping, self.windower = mapping, windower
        self.mapped_out_events = 0
        self._maps: tuple[tuple[int, int], Any] = ((-1, -1), None)  # geometry, its tables

    def push(self, events: NDArray[Any]) -> Any:
        mapped = self.mapping(events)
        self.mapped_out_events += int(events.size - mapped.size)
        return self.windower.push(mapped)

    def push_payload(
        self,
        raw: NDArray[np.uint8],
        encoding: str,
        time_base_ns: int,
        width: int,
        height: int,
        **decode: Any,
    ) -> tuple[int, list[Any]] | None:
        """``push`` of a checked payload's events, decoded, mapped and windowed in compiled
        passes (``fused.push_payload``, same keywords): (events decoded, windows), or None
        with nothing changed where the caller must decode first."""
        if not isinstance(self.windower, EventWindower) or self.windower.engine != "numba":
            return None  # fused.py imports numba: only where the windower runs compiled
        from hsnn_perception.core.events import fused

        if self._maps[0] != (width, height):  # one geometry kept: memory stays bounded
            self._maps = (
                (width, height),
                fused.payload_maps(self.windower, self.mapping, width, height),
            )
        maps = self._maps[1]
        if maps is None:
            return None
        got = fused.push_payload(
            self.windower, maps, raw, encoding, time_base_ns, width, height, **decode
        )
        if got is None:
            return None
        kept, left_out, windows = got
        self.mapped_out_events += left_out
        return kept, windows

    def __getattr__(self, name: str) -> Any:
        return getattr(self.windower, name)
