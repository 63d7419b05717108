"""A built-in synthetic DVS gesture set: 11 classes of motion seen by a simulated event camera.

Each sample renders a moving shape (bar, cross, blob or a hand-like shape) as a log-intensity video
at ``substep_us`` resolution and turns it into events the way a DVS pixel does: an ON (OFF) event
each time the log intensity rises (falls) by the pixel's contrast threshold from its reference
level, with per-pixel threshold mismatch, a refractory period and uniformly scattered background
noise events. Between rendered frames the log intensity is interpolated linearly, so the events of
one sub-step get interpolated timestamps rather than all sharing the frame time.

The classes are built so that a classifier needs *temporal* information: the object's contrast
polarity is random (bright on dark or dark on bright), so an event-count image of a leftward swipe
of a bright object looks like a rightward swipe of a dark one; clockwise and counter-clockwise
rotations and orbits cover the same pixels; zoom in and out cover the same ring of pixels.

Coordinates: x to the right, y downwards (image convention). "Clockwise" is as seen on a screen
that shows the image that way, i.e. the angle measured from +x towards +y increases.

Everything is deterministic from ``seed``: the sensor (threshold mismatch) from ``seed`` alone, and
sample ``index`` from ``(seed, index)``. The shapes, the 11 motions and the pixel model are one
generator whose parameters depend on each other (a shipped model was trained on exactly this
output), so it stays one module, a little over 500 lines.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from hsnn_perception.core.errors import EventError
from hsnn_perception.core.events.codecs import EVENT_DTYPE

GESTURE_LABELS: tuple[str, ...] = (
    "swipe_left",
    "swipe_right",
    "swipe_up",
    "swipe_down",
    "rotate_cw",
    "rotate_ccw",
    "zoom_in",
    "zoom_out",
    "wave",
    "circle_cw",
    "circle_ccw",
)

SHAPES: tuple[str, ...] = ("bar", "cross", "blob", "hand")

# Streams draw their class sequence from a separate child of the seed so that sample(i) and the
# i-th stream sample are independent draws.
_STREAM_KEY = 0x5757
_SENSOR_KEY = 0x5E45


class SyntheticConfigError(EventError, ValueError):
    """Invalid parameters for the synthetic gesture generator."""


@dataclass(frozen=True)
class DvsParams:
    """Parameters of the simulated DVS pixel array."""

    threshold: float = 0.25  # mean contrast threshold, in natural-log intensity units
    threshold_sigma: float = 0.03  # per-pixel spread (mismatch) of the thresholds
    threshold_min: float = 0.05
    refractory_us: float = 500.0
    noise_hz: float = 0.2  # background noise events per pixel per second (both polarities)


class SyntheticGestures:
    """Deterministic generator of synthetic DVS gesture samples.

    ``sample(index)`` returns ``(events, class_id)`` for one ``sample_us`` long sample, with
    ``t`` in ``[0, sample_us)``; the class of sample ``index`` is ``index % 11`` (balanced sets)
    unless ``class_id`` is given. ``stream()`` yields back-to-back samples in absolute time with a
    random class sequence drawn from the seed.
    """

    def __init__(
        self,
        height: int = 128,
        width: int = 128,
        seed: int = 0,
        sample_us: int = 160_000,
        substep_us: int = 2000,
        dvs: DvsParams | None = None,
    ) -> None:
        if height < 16 or width < 16:
            raise SyntheticConfigError(f"sensor must be at least 16x16, got {height}x{width}")
        if height > 65535 or width > 65535:
            raise SyntheticConfigError(f"sensor {height}x{width} exceeds the uint16 event range")
        if sample_us < 1:
            raise SyntheticConfigError(f"sample_us must be positive, got {sample_us}")
        if not 1 <= substep_us <= sample_us:
            raise SyntheticConfigError(
                f"substep_us must be in [1, sample_us={sample_us}], got {substep_us}"
            )
        if seed < 0:
            raise SyntheticConfigError(f"seed must be >= 0, got {seed}")
        self.height = int(height)
        self.width = int(width)
        self.seed = int(seed)
        self.sample_us = int(sample_us)
        self.substep_us = int(substep_us)
        self.dvs = dvs or DvsParams()
        if self.dvs.threshold <= 0 or self.dvs.threshold_min <= 0:
            raise SyntheticConfigError("DVS thresholds must be positive")
        if self.dvs.refractory_us < 0 or self.dvs.noise_hz < 0:
            raise SyntheticConfigError("refractory_us and noise_hz must be >= 0")
        # The sensor: fixed per-pixel ON and OFF thresholds (mismatch), the same for every sample.
        rng = np.random.default_rng([self.seed, _SENSOR_KEY])
        shape = (self.height, self.width)
        p = self.dvs
        self._c_on = np.maximum(
            p.threshold + p.threshold_sigma * rng.standard_normal(shape), p.threshold_min
        ).astype(np.float32)
        self._c_off = np.maximum(
            p.threshold + p.threshold_sigma * rng.standard_normal(shape), p.threshold_min
        ).astype(np.float32)
        # Frame times: 0, substep, ..., sample_us (the last sub-step may be shorter).
        n = -(-self.sample_us // self.substep_us)
        self._times = np.minimum(np.arange(n + 1) * self.substep_us, self.sample_us).astype(
            np.float64
        )

    @property
    def num_classes(self) -> int:
        return len(GESTURE_LABELS)

    @property
    def labels(self) -> tuple[str, ...]:
        return GESTURE_LABELS

    # ------------------------------------------------------------------ public API

    def sample(self, index: int, class_id: int | None = None) -> tuple[NDArray[Any], int]:
        """Return ``(events, class_id)`` of sample ``index``: sorted by t, t in [0, sample_us)."""
        if index < 0:
            raise SyntheticConfigError(f"sample index must be >= 0, got {index}")
        if class_id is None:
            class_id = index % len(GESTURE_LABELS)
        self._check_class(class_id)
        rng = np.random.default_rng([self.seed, 1, int(index)])
        return self._render(int(class_id), rng), int(class_id)

    def stream(
        self, n_samples: int | None = None, start_us: int = 0
    ) -> Iterator[tuple[NDArray[Any], int, int, int]]:
        """Yield ``(events, class_id, t_start_us, t_end_us)`` for back-to-back samples.

        Times are absolute (``start_us`` + offset). ``n_samples=None`` streams forever.
        """
        if n_samples is not None and n_samples < 0:
            raise SyntheticConfigError(f"n_samples must be >= 0 or None, got {n_samples}")
        if start_us < 0:
            raise SyntheticConfigError(f"start_us must be >= 0, got {start_us}")
        class_rng = np.random.default_rng([self.seed, _STREAM_KEY])
        i = 0
        while n_samples is None or i < n_samples:
            class_id = int(class_rng.integers(len(GESTURE_LABELS)))
            rng = np.random.default_rng([self.seed, 2, i])
            events = self._render(class_id, rng)
            t0 = int(start_us) + i * self.sample_us
            events["t"] += t0
            yield events, class_id, t0, t0 + self.sample_us
            i += 1

    def render_log_intensity(self, class_id: int, index: int = 0) -> NDArray[Any]:
        """The log-intensity video ``(frames, H, W)`` behind a sample (for inspection and tests)."""
        self._check_class(class_id)
        rng = np.random.default_rng([self.seed, 1, int(index)])
        scene = self._scene(class_id, rng)
        return self._log_video(scene, 0, self.height, 0, self.width)

    # ------------------------------------------------------------------ scene

    def _check_class(self, class_id: int) -> None:
        if not 0 <= int(class_id) < len(GESTURE_LABELS):
            raise SyntheticConfigError(
                f"class_id must be in [0, {len(GESTURE_LABELS)}), got {class_id}"
            )

    def _scene(self, class_id: int, rng: np.random.Generator) -> dict[str, Any]:
        """Draw a scene: shape, contrast and the per-frame pose (cx, cy, angle, scale)."""
        h, w = self.height, self.width
        size = float(min(h, w))
        label = GESTURE_LABELS[class_id]
        u = self._times / self.sample_us  # normalised time in [0, 1]
        n = u.size
        if label in ("rotate_cw", "rotate_ccw"):
            shape = str(rng.choice(("bar", "cross", "hand")))
        elif label == "wave":
            shape = "hand"
        elif label in ("circle_cw", "circle_ccw"):
            shape = str(rng.choice(("blob", "bar", "hand")))
        else:
            shape = str(rng.choice(SHAPES))
        base = size * rng.uniform(0.14, 0.22)  # characteristic radius of the shape
        cx = np.full(n, w / 2 + rng.uniform(-0.1, 0.1) * size)
        cy = np.full(n, h / 2 + rng.uniform(-0.1, 0.1) * size)
        angle = np.full(n, rng.uniform(0, 2 * np.pi))
        scale = np.ones(n)
        if label.startswith("swipe"):
            dist = size * rng.uniform(0.35, 0.6)
            prog = u - 0.5  # constant speed, centred on the window's middle
            direction = {
                "swipe_left": (-1, 0),
                "swipe_right": (1, 0),
                "swipe_up": (0, -1),
                "swipe_down": (0, 1),
            }[label]
            cx = cx + direction[0] * dist * prog
            cy = cy + direction[1] * dist * prog
            base *= 0.85
            # A little tilt and perpendicular drift so the path is not a perfect line.
            drift = size * rng.uniform(-0.05, 0.05)
            cx = cx + (direction[1] != 0) * drift * u
            cy = cy + (direction[0] != 0) * drift * u
        elif label in ("rotate_cw", "rotate_ccw"):
            turns = rng.uniform(0.3, 0.55)  # revolutions in the window
            sign = 1.0 if label == "rotate_cw" else -1.0
            angle = angle + sign * 2 * np.pi * turns * u
            base *= 1.3
        elif label in ("zoom_in", "zoom_out"):
            ratio = rng.uniform(1.8, 2.6)
            s = ratio ** (u - 0.5)
            scale = s if label == "zoom_in" else 1.0 / s
            base *= 0.9
        elif label == "wave":
            amp = rng.uniform(0.35, 0.6)
            freq = rng.uniform(6.0, 9.0)  # Hz: about one full wave per 160 ms window
            phase = rng.uniform(0, 2 * np.pi)
            t_s = self._times * 1e-6
            swing = amp * np.sin(2 * np.pi * freq * t_s + phase)
            angle = -np.pi / 2 + swing  # fingers up, swinging about a pivot below the palm
            pivot = base * 1.6
            cx = cx + pivot * np.cos(angle)
            cy = cy + size * 0.2 + pivot * np.sin(angle)
            angle = angle + np.pi / 2  # hand frame: fingers along -v
        else:  # circle_cw / circle_ccw
            radius = size * rng.uniform(0.15, 0.25)
            turns = rng.uniform(0.6, 0.9)
            sign = 1.0 if label == "circle_cw" else -1.0
            theta0 = rng.uniform(0, 2 * np.pi)
            theta = theta0 + sign * 2 * np.pi * turns * u
            cx = cx + radius * np.cos(theta)
            cy = cy + radius * np.sin(theta)
            base *= 0.6
        log_bg = float(rng.uniform(np.log(0.2), np.log(0.8)))
        contrast = float(rng.uniform(0.7, 1.6)) * (1.0 if rng.random() < 0.5 else -1.0)
        return {
            "shape": shape,
            "radius": base,
            "cx": cx,
            "cy": cy,
            "angle": angle,
            "scale": scale,
            "log_bg": log_bg,
            "contrast": contrast,
            "edge": float(rng.uniform(0.8, 1.5)),
        }

    def _bbox(self, scene: dict[str, Any]) -> tuple[int, int, int, int]:
        """Pixel rows/cols ``[y0, y1) x [x0, x1)`` that the object can touch during the sample."""
        reach = scene["radius"] * float(np.max(scene["scale"])) * 1.9 + scene["edge"] + 2
        y0 = int(np.floor(np.min(scene["cy"]) - reach))
        y1 = int(np.ceil(np.max(scene["cy"]) + reach)) + 1
        x0 = int(np.floor(np.min(scene["cx"]) - reach))
        x1 = int(np.ceil(np.max(scene["cx"]) + reach)) + 1
        return (
            max(y0, 0),
            min(max(y1, 0), self.height),
            max(x0, 0),
            min(max(x1, 0), self.width),
        )

    def _log_video(self, scene: dict[str, Any], y0: int, y1: int, x0: int, x1: int) -> NDArray[Any]:
        """Log intensity ``(frames, y1-y0, x1-x0)`` float32 of the scene in a pixel window."""
        n = self._times.size
        if y1 <= y0 or x1 <= x0:
            return np.full((n, max(y1 - y0, 0), max(x1 - x0, 0)), scene["log_bg"], np.float32)
        ys = np.arange(y0, y1, dtype=np.float32)[None, :, None]
        xs = np.arange(x0, x1, dtype=np.float32)[None, None, :]
        f32 = np.float32
        cx = scene["cx"].astype(f32)[:, None, None]
        cy = scene["cy"].astype(f32)[:, None, None]
        scale = np.broadcast_to(np.asarray(scene["scale"], dtype=np.float64), (n,))
        # Rotation and 1/scale folded together so that u and v cost one full-size op each.
        cos = (np.cos(scene["angle"]) / scale).astype(f32)[:, None, None]
        sin = (np.sin(scene["angle"]) / scale).astype(f32)[:, None, None]
        dx = xs - cx
        dy = ys - cy
        # Object coordinates (u along the shape's axis, v across), in units of unscaled pixels.
        u = dx * cos + dy * sin
        v = dy * cos - dx * sin
        sd = _signed_distance(scene["shape"], u, v, scene["radius"])
        # alpha = clip(0.5 - sd_pixels / edge): the ramp is ~edge image pixels wide at any zoom.
        sd *= (-scale / scene["edge"]).astype(f32)[:, None, None]
        sd += f32(0.5)
        np.clip(sd, 0.0, 1.0, out=sd)
        sd *= f32(scene["contrast"])
        sd += f32(scene["log_bg"])
        return sd

    # ------------------------------------------------------------------ DVS

    def _render(self, class_id: int, rng: np.random.Generator) -> NDArray[Any]:
        scene = self._scene(class_id, rng)
        y0, y1, x0, x1 = self._bbox(scene)
        parts = []
        if y1 > y0 and x1 > x0:
            video = self._log_video(scene, y0, y1, x0, x1)
            parts.append(self._dvs_events(video, y0, x0))
        parts.append(self._noise_events(rng))
        t = np.concatenate([p[0] for p in parts])
        x = np.concatenate([p[1] for p in parts])
        y = np.concatenate([p[2] for p in parts])
        pol = np.concatenate([p[3] for p in parts])
        order = np.argsort(t, kind="stable")
        events = np.empty(order.size, dtype=EVENT_DTYPE)
        events["t"] = t[order]
        events["x"] = x[order]
        events["y"] = y[order]
        events["p"] = pol[order]
        return events

    def _dvs_events(
        self, video: NDArray[Any], y0: int, x0: int
    ) -> tuple[NDArray[Any], NDArray[Any], NDArray[Any], NDArray[Any]]:
        """Events of the pixels of ``video`` (frames, h, w) whose top-left is at (y0, x0)."""
        _, h, w = video.shape
        t, x, y, p = simulate_dvs(
            video,
            self._times,
            self._c_on[y0 : y0 + h, x0 : x0 + w],
            self._c_off[y0 : y0 + h, x0 : x0 + w],
            self.dvs.refractory_us,
        )
        t = np.minimum(t, self.sample_us - 1)
        return t, (x + x0).astype(np.uint16), (y + y0).astype(np.uint16), p

    def _noise_events(
        self, rng: np.random.Generator
    ) -> tuple[NDArray[Any], NDArray[Any], NDArray[Any], NDArray[Any]]:
        """Background activity: Poisson events at uniformly random pixels, times and polarities."""
        lam = self.dvs.noise_hz * self.height * self.width * self.sample_us * 1e-6
        n = int(rng.poisson(lam)) if lam > 0 else 0
        t = rng.integers(0, self.sample_us, n, dtype=np.int64)
        x = rng.integers(0, self.width, n).astype(np.uint16)
        y = rng.integers(0, self.height, n).astype(np.uint16)
        p = rng.integers(0, 2, n).astype(np.uint8)
        return t, x, y, p


def simulate_dvs(
    log_video: NDArray[Any],
    times_us: NDArray[Any],
    c_on: NDArray[Any],
    c_off: NDArray[Any],
    refractory_us: float = 0.0,
) -> tuple[NDArray[Any], NDArray[Any], NDArray[Any], NDArray[Any]]:
    """Turn a log-intensity video into DVS events; returns ``(t, x, y, p)`` arrays.

    ``log_video`` is ``(frames, h, w)`` at the (increasing) times ``times_us``; between frames the
    log intensity is taken as linear. A pixel emits an ON (OFF) event each time its log intensity
    rises (falls) by its threshold ``c_on`` (``c_off``, ``(h, w)`` or scalars) from its reference
    level, which starts at the first frame and moves by one threshold per crossing. Crossings less
    than ``refractory_us`` after the pixel's previous event are lost (the reference still moves).
    Event times are the interpolated crossing times, floored to whole microseconds; the result is
    grouped by sub-step, not sorted inside one.
    """
    video = np.asarray(log_video)
    times = np.asarray(times_us, dtype=np.float64)
    if video.ndim != 3 or times.shape != (video.shape[0],):
        raise SyntheticConfigError(
            f"log_video must be (frames, h, w) with one time per frame, got {video.shape} "
            f"and {times.shape} times"
        )
    if np.any(np.diff(times) < 0):
        raise SyntheticConfigError("times_us must be non-decreasing")
    n_frames, h, w = video.shape
    c_on = np.broadcast_to(np.asarray(c_on, dtype=np.float64), (h, w)).reshape(-1)
    c_off = np.broadcast_to(np.asarray(c_off, dtype=np.float64), (h, w)).reshape(-1)
    if np.any(c_on <= 0) or np.any(c_off <= 0):
        raise SyntheticConfigError("DVS thresholds must be positive")
    empty = np.zeros(0, np.int64)
    no_events = (empty, empty.astype(np.uint16), empty.astype(np.uint16), empty.astype(np.uint8))
    if n_frames < 2 or h * w == 0:
        return no_events
    flat = video.reshape(n_frames, h * w)
    # Only pixels whose intensity ever changes can fire: skip the rest of the window.
    active = np.flatnonzero(flat.max(axis=0) != flat.min(axis=0))
    if active.size == 0:
        return no_events
    lv = flat[:, active].astype(np.float64)
    c_on = c_on[active]
    c_off = c_off[active]
    ref = lv[0].copy()  # reference level: log intensity at the last reset
    refr = float(refractory_us)
    last_t = np.full(active.size, -np.inf)
    out_first: list[NDArray[Any]] = []
    out_step: list[NDArray[Any]] = []
    out_count: list[NDArray[Any]] = []
    out_idx: list[NDArray[Any]] = []
    out_pol: list[NDArray[Any]] = []
    for k in range(1, n_frames):
        t_prev = times[k - 1]
        dt = times[k] - t_prev
        if dt <= 0:
            continue
        l_prev, l_now = lv[k - 1], lv[k]
        diff = l_now - ref
        up = diff >= c_on
        down = -diff >= c_off
        fire = np.flatnonzero(up | down)
        if fire.size == 0:
            continue
        is_on = up[fire]
        sgn = np.where(is_on, 1.0, -1.0)
        c = np.where(is_on, c_on[fire], c_off[fire])
        # In the firing direction: a = offset from the reference at t_prev, b = at t_now.
        a = sgn * (l_prev[fire] - ref[fire])
        b = sgn * diff[fire]
        n_cross = np.floor(b / c).astype(np.int64)
        ref[fire] += sgn * n_cross * c  # the reference follows every crossing, fired or not
        slope = b - a  # > 0: a < c <= b whenever a crossing happened in this sub-step
        spacing = dt * c / slope  # time between successive crossings
        # Crossing j (1-based) happens at t_prev + dt * (j*c - a) / slope. The first one kept is
        # the first outside the refractory period of the pixel's last event, then every
        # `every`-th one (crossings are evenly spaced inside a sub-step).
        need = (last_t[fire] + refr - t_prev) / dt * slope + a
        j0 = np.maximum(1, np.ceil(need / c - 1e-9)).astype(np.int64)
        if refr > 0:
            every = np.maximum(1, np.ceil(refr / spacing - 1e-9)).astype(np.int64)
        else:
            every = np.ones_like(n_cross)
        count = np.where(j0 <= n_cross, 1 + (n_cross - j0) // every, 0)
        ok = count > 0
        if not ok.any():
            continue
        first = t_prev + dt * (j0[ok] * c[ok] - a[ok]) / slope[ok]
        step = spacing[ok] * every[ok]
        sel = fire[ok]
        last_t[sel] = first + (count[ok] - 1) * step
        out_first.append(first)
        out_step.append(step)
        out_count.append(count[ok])
        out_idx.append(active[sel])
        out_pol.append(is_on[ok])
    if not out_count:
        return no_events
    first = np.concatenate(out_first)
    step = np.concatenate(out_step)
    count = np.concatenate(out_count)
    idx = np.concatenate(out_idx)
    pol = np.concatenate(out_pol)
    total = int(count.sum())
    group = np.repeat(np.arange(count.size), count)
    # Position of each event inside its group: 0, 1, ..., count-1.
    offsets = np.arange(total) - np.repeat(np.cumsum(count) - count, count)
    t = np.floor(first[group] + offsets * step[group]).astype(np.int64)
    pix = idx[group]
    return t, (pix % w).astype(np.uint16), (pix // w).astype(np.uint16), pol[group].astype(np.uint8)


def _signed_distance(shape: str, u: NDArray[Any], v: NDArray[Any], r: float) -> NDArray[Any]:
    """Approximate signed distance (negative inside) of a shape of radius ``r`` at (u, v).

    Overwrites ``u`` and ``v`` (they are scratch arrays of the renderer): in-place ops keep the
    full-size temporaries few, which is most of the rendering time.
    """
    f32 = np.float32
    if shape == "blob":
        # An elliptic blob, so that a rotation or an orbit is not invisible to the sensor.
        np.square(u, out=u)
        np.square(v, out=v)
        v *= f32(1.6)
        u += v
        np.sqrt(u, out=u)
        u -= f32(r * 0.75)
        return u
    if shape == "bar":
        np.abs(u, out=u)
        u -= f32(r)
        np.abs(v, out=v)
        v -= f32(r * 0.28)
        return np.maximum(u, v, out=u)
    if shape == "cross":
        au = np.abs(u, out=u)
        av = np.abs(v, out=v)
        arm1 = np.maximum(au - f32(r), av - f32(r * 0.22))
        au -= f32(r * 0.22)
        av -= f32(r)
        np.maximum(au, av, out=au)
        cross: NDArray[Any] = np.minimum(arm1, au, out=arm1)
        return cross
    # hand: a palm disc with four fingers pointing to -v
    palm = np.square(u)
    palm += np.square(v)
    np.sqrt(palm, out=palm)
    palm -= f32(r * 0.55)
    pitch = f32(r * 0.27)
    # Fingers along |u| = pitch/2 and 3*pitch/2: distance to the nearest is ||u| - p| - p/2|.
    au = np.abs(u, out=u)
    au -= pitch
    np.abs(au, out=au)
    au -= pitch / 2
    np.abs(au, out=au)
    au -= f32(r * 0.09)
    v += f32(r * 0.75)
    np.abs(v, out=v)
    v -= f32(r * 0.45)
    np.maximum(au, v, out=au)
    hand: NDArray[Any] = np.minimum(palm, au, out=palm)
    return hand
