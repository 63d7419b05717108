"""IBM DvsGesture in its published form: AEDAT 3.1 recordings with ``*_labels.csv`` files.

The published folder (``DvsGesture/``) holds ``userNN_<lighting>.aedat`` recordings, one
``userNN_<lighting>_labels.csv`` per recording (header ``class,startTime_usec,endTime_usec``,
classes 1..11) and the split lists ``trials_to_train.txt`` / ``trials_to_test.txt`` (one
``.aedat`` file name per line). It cannot be downloaded here; the loader takes a path.

Preprocessing follows Seekings et al. 2024: 10 ms bins, 2 x 128 x 128 (optionally downsampled),
T = 16 bins per sample, samples cut from the labelled gesture spans (consecutive windows that lie
inside a span).

The AEDAT 3.1 files are read and written by :mod:`hsnn_perception.core.io.aedat31` (also used
by ``hsnn-bag convert aedat31`` to replay DvsGesture through the nodes);
:func:`write_dvsgesture_folder` writes the whole layout (IBM's dataset README:
``gesture_mapping.csv`` names the classes), so the loader and the training recipe are tested on
folders of the published form (test/training/test_dvsgesture.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from hsnn_perception.core.io.aedat31 import AedatError, read_aedat31, write_aedat31
from hsnn_perception.training.data import (
    InputSpec,
    SpikeSet,
    stack_windows,
    windows_from_spans,
)

DVSGESTURE_LABELS: tuple[str, ...] = (
    "hand_clapping",
    "right_hand_wave",
    "left_hand_wave",
    "right_arm_clockwise",
    "right_arm_counter_clockwise",
    "left_arm_clockwise",
    "left_arm_counter_clockwise",
    "arm_roll",
    "air_drums",
    "air_guitar",
    "other_gestures",
)


def read_labels_csv(path: str | Path, num_classes: int = 11) -> list[tuple[int, int, int]]:
    """``(class 0-based, start_us, end_us)`` rows of a DvsGesture ``*_labels.csv`` file (classes
    1..``num_classes``), read by the bag converter's label reader."""
    from hsnn_perception.core.io.bag.convert import read_label_csv
    from hsnn_perception.core.io.bag.msgtypes import BagError

    try:
        labels = read_label_csv(path, class_base=1, names=DVSGESTURE_LABELS[:num_classes])
    except BagError as exc:
        raise AedatError(str(exc)) from exc
    return [(lab.class_id, lab.start_us, lab.end_us) for lab in labels]


def read_trials(path: Path) -> list[str]:
    try:
        return [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    except OSError as exc:
        raise AedatError(f"cannot read trial list {path}: {exc}") from exc


def recording_windows(
    aedat: Path, spec: InputSpec, stride_us: int | None = None
) -> Iterable[tuple[np.ndarray, int]]:
    labels = aedat.with_name(aedat.stem + "_labels.csv")
    if not labels.is_file():
        raise AedatError(f"{aedat}: label file {labels.name} is missing")
    events = read_aedat31(aedat)
    if events.size and (
        int(events["x"].max()) >= spec.sensor_width or int(events["y"].max()) >= spec.sensor_height
    ):
        raise AedatError(
            f"{aedat}: events beyond the {spec.sensor_width}x{spec.sensor_height} sensor"
        )
    return windows_from_spans(events, read_labels_csv(labels), spec, stride_us)


def load_split(
    root: Path, trials: list[str], spec: InputSpec, stride_us: int | None, progress: bool
) -> SpikeSet:
    files: Iterable[str] = trials
    if progress:
        from tqdm import tqdm

        files = tqdm(trials, desc=f"reading {root.name}", unit="file")

    def windows() -> Iterable[tuple[np.ndarray, int]]:
        for name in files:
            path = root / name
            if not path.is_file():
                raise AedatError(f"{path}: listed in the trial list but missing")
            yield from recording_windows(path, spec, stride_us)

    return stack_windows(windows(), DVSGESTURE_LABELS, spec)


def load_dvsgesture(
    root: str | Path,
    spec: InputSpec,
    train_stride_us: int | None = None,
    progress: bool = False,
) -> tuple[SpikeSet, SpikeSet]:
    """The train and test sets of a DvsGesture folder (split by its trial lists)."""
    root = Path(root)
    if not root.is_dir():
        raise AedatError(f"DvsGesture folder {root} does not exist")
    if (spec.sensor_height, spec.sensor_width) != (128, 128):
        raise AedatError("DvsGesture was recorded with a 128x128 DVS128: use a 128x128 sensor")
    split = {}
    for part in ("train", "test"):
        listing = root / f"trials_to_{part}.txt"
        if not listing.is_file():
            raise AedatError(f"{root}: {listing.name} is missing")
        split[part] = read_trials(listing)
    train = load_split(root, split["train"], spec, train_stride_us, progress)
    test = load_split(root, split["test"], spec, None, progress)
    return train, test


def write_dvsgesture_folder(
    root: str | Path,
    recordings: Mapping[str, tuple[np.ndarray, Sequence[tuple[int, int, int]]]],
    test: Sequence[str],
) -> Path:
    """Write a DvsGesture folder: ``NAME.aedat`` + ``NAME_labels.csv`` per recording (spans as
    ``(class 0-based, start_us, end_us)``, written 1-based), ``gesture_mapping.csv`` and the
    trial lists (``test`` names go to ``trials_to_test.txt``, the rest to train)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for name, (events, spans) in recordings.items():
        if not name.endswith(".aedat"):
            raise AedatError(f"recording names end in .aedat, got {name!r}")
        write_aedat31(root / name, events)
        rows = ["class,startTime_usec,endTime_usec"]
        rows += [f"{c + 1},{t0},{t1}" for c, t0, t1 in spans]
        (root / name.replace(".aedat", "_labels.csv")).write_text("\r\n".join(rows) + "\r\n")
    mapping = ["action,label"] + [f"{n},{i + 1}" for i, n in enumerate(DVSGESTURE_LABELS)]
    (root / "gesture_mapping.csv").write_text("\n".join(mapping) + "\n")
    unknown = set(test) - set(recordings)
    if unknown:
        raise AedatError(f"test trials {sorted(unknown)} are not among the recordings")
    train = [n for n in recordings if n not in set(test)]
    (root / "trials_to_train.txt").write_text("".join(f"{n}\n" for n in train))
    (root / "trials_to_test.txt").write_text("".join(f"{n}\n" for n in test))
    return root
