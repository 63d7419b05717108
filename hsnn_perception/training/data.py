"""Datasets of input spike tensors for training: events -> binned binary spikes.

Every source (the synthetic set, DvsGesture AEDAT 3.1, AEDAT4 + label CSV) ends up as a
:class:`SpikeSet`: ``spikes`` ``(N, T, 2, h, w)`` uint8 in {0, 1} and integer ``labels``. The
events are binned by :func:`hsnn_perception.core.events.binning.bin_events` (the code the nodes
run) and
binarised with ``> 0``: a pixel spikes in a bin if it had at least one event of that polarity.

No torch here: tensors are made by the training loop.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hsnn_perception.core.errors import EventSourceError
from hsnn_perception.core.events.binning import bin_events


class DatasetError(EventSourceError, ValueError):
    """A dataset cannot be read or built (names the file or parameter at fault)."""


@dataclass(frozen=True)
class InputSpec:
    """Sensor geometry and how events become the SNN input (paper: 10 ms bins, T = 16)."""

    sensor_height: int = 128
    sensor_width: int = 128
    height: int = 32
    width: int = 32
    bin_us: int = 10_000
    timesteps: int = 16

    def __post_init__(self) -> None:
        for name in ("sensor_height", "sensor_width", "height", "width", "bin_us", "timesteps"):
            if int(getattr(self, name)) < 1:
                raise DatasetError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.sensor_height % self.height or self.sensor_width % self.width:
            raise DatasetError(
                f"input {self.height}x{self.width} must divide the sensor "
                f"{self.sensor_height}x{self.sensor_width} (integer downsampling)"
            )

    @property
    def downsample(self) -> tuple[int, int]:
        return (self.sensor_height // self.height, self.sensor_width // self.width)

    @property
    def window_us(self) -> int:
        return self.bin_us * self.timesteps

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class SpikeSet:
    """Binary input spikes ``(N, T, 2, h, w)`` uint8 with labels ``(N,)`` int64."""

    spikes: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.spikes.ndim != 5 or self.spikes.shape[0] != self.labels.shape[0]:
            raise DatasetError(
                f"spikes must be (N, T, C, H, W) with one label each, got {self.spikes.shape} "
                f"and {self.labels.shape} labels"
            )

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, index: Sequence[int] | np.ndarray) -> SpikeSet:
        idx = np.asarray(index)
        return SpikeSet(self.spikes[idx], self.labels[idx], self.class_names)

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=len(self.class_names))


def events_to_spikes(events: np.ndarray, t_start_us: int, spec: InputSpec) -> np.ndarray:
    """One window of binary input spikes ``(T, 2, h, w)`` uint8 starting at ``t_start_us``."""
    counts = bin_events(
        events,
        int(t_start_us),
        spec.bin_us,
        spec.timesteps,
        spec.sensor_height,
        spec.sensor_width,
        downsample=spec.downsample,
    )
    return (counts > 0).astype(np.uint8)


def bin_activity(
    events: np.ndarray, height: int, width: int, bin_us: int, t0: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Events per ``bin_us`` bin and the fraction of the ``height x width`` pixels with at least
    one event (either polarity) in it, from ``t0`` (default: the first event) to the last event:
    the statistics the synthetic set is compared with real recordings by (docs/results)."""
    if events.size == 0:
        return np.zeros(0), np.zeros(0)
    start = int(events["t"].min()) if t0 is None else int(t0)
    b = (events["t"].astype(np.int64) - start) // int(bin_us)
    if b.min() < 0:
        raise DatasetError(f"events before t0={t0}")
    n_bins = int(b.max()) + 1
    counts = np.bincount(b, minlength=n_bins).astype(np.float64)
    pix = (b * height + events["y"].astype(np.int64)) * width + events["x"].astype(np.int64)
    active = np.bincount(np.unique(pix) // (height * width), minlength=n_bins)
    return counts, active / float(height * width)


def stack_windows(
    windows: Iterable[tuple[np.ndarray, int]], class_names: Sequence[str], spec: InputSpec
) -> SpikeSet:
    """Build a :class:`SpikeSet` from ``(spikes (T, 2, h, w), label)`` pairs."""
    shape = (spec.timesteps, 2, spec.height, spec.width)
    spikes, labels = [], []
    for s, label in windows:
        if s.shape != shape:
            raise DatasetError(f"window of shape {s.shape}, expected {shape}")
        spikes.append(s)
        labels.append(int(label))
    if not spikes:
        raise DatasetError("the dataset is empty: no labelled window was found")
    return SpikeSet(np.stack(spikes), np.asarray(labels, dtype=np.int64), tuple(class_names))


def save_spikeset(data: SpikeSet, path: Path, meta: dict[str, Any] | None = None) -> None:
    """Save bit-packed (spikes are binary) to an ``.npz``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # A name of this process's own: two runs filling the same cache entry at once (the family
    # split over processes) must not replace each other's half-written file.
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez_compressed(
        tmp,
        packed=np.packbits(data.spikes.astype(bool), axis=-1),
        shape=np.asarray(data.spikes.shape),
        labels=data.labels,
        class_names=np.asarray(data.class_names),
        meta=np.asarray(json.dumps(meta or {})),
    )
    tmp.replace(path)


def load_spikeset(path: Path) -> SpikeSet:
    try:
        with np.load(path) as z:
            shape = tuple(int(d) for d in z["shape"])
            spikes = np.unpackbits(z["packed"], axis=-1, count=shape[-1]).astype(np.uint8)
            return SpikeSet(
                spikes.reshape(shape),
                z["labels"].astype(np.int64),
                tuple(str(c) for c in z["class_names"]),
            )
    except (OSError, KeyError, ValueError) as exc:
        raise DatasetError(f"cannot read cached dataset {path}: {exc}") from exc


def synthetic_spikeset(
    n_samples: int,
    spec: InputSpec,
    seed: int = 0,
    first_index: int = 0,
    cache_dir: Path | None = None,
    progress: bool = False,
) -> SpikeSet:
    """Samples ``first_index .. first_index + n_samples - 1`` of the synthetic gesture set.

    Class of sample ``i`` is ``i % 11`` (balanced). With ``cache_dir`` the spikes are cached on
    disk under a key of all parameters, since rendering is most of the cost of a short run.
    """
    from hsnn_perception.core.events.synthetic import GESTURE_LABELS, SyntheticGestures

    if n_samples < 1:
        raise DatasetError(f"n_samples must be >= 1, got {n_samples}")
    key = {
        "kind": "synthetic/1",
        "n": n_samples,
        "first": first_index,
        "seed": seed,
        **spec.to_dict(),
    }
    cache = None
    if cache_dir is not None:
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        cache = Path(cache_dir) / f"synthetic-{digest}.npz"
        if cache.is_file():
            return load_spikeset(cache)
    gen = SyntheticGestures(
        height=spec.sensor_height, width=spec.sensor_width, seed=seed, sample_us=spec.window_us
    )
    indices: Iterable[int] = range(first_index, first_index + n_samples)
    if progress:
        from tqdm import tqdm

        indices = tqdm(indices, desc="rendering synthetic gestures", unit="sample")

    def windows() -> Iterable[tuple[np.ndarray, int]]:
        for i in indices:
            events, class_id = gen.sample(i)
            yield events_to_spikes(events, 0, spec), class_id

    data = stack_windows(windows(), GESTURE_LABELS, spec)
    if cache is not None:
        save_spikeset(data, cache, key)
    return data


def windows_from_spans(
    events: np.ndarray,
    spans: Iterable[tuple[int, int, int]],
    spec: InputSpec,
    stride_us: int | None = None,
) -> Iterable[tuple[np.ndarray, int]]:
    """Cut ``(spikes, label)`` windows of ``T`` bins out of labelled spans ``(label, t0, t1)``.

    Windows lie entirely inside their span, start at the span's start and advance by
    ``stride_us`` (default: one window, no overlap); a span shorter than a window gives none.
    """
    window = spec.window_us
    stride = int(stride_us or window)
    if stride < 1:
        raise DatasetError(f"stride_us must be positive, got {stride_us}")
    t = events["t"]
    for label, t0, t1 in spans:
        start = int(t0)
        while start + window <= int(t1):
            lo, hi = np.searchsorted(t, [start, start + window])
            yield events_to_spikes(events[lo:hi], start, spec), int(label)
            start += stride
