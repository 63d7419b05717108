"""AEDAT4 recordings (read with dv-processing) labelled by CSV files, as a training dataset.

Folder layout::

    root/
      classes.txt              optional: class names, one per line (label i = line i)
      train/  NAME.aedat4  NAME_labels.csv   (also accepted: NAME.csv)
      test/   NAME.aedat4  NAME_labels.csv

A label file has rows ``class,start_us,end_us`` (an optional header line is skipped); ``class`` is
a 0-based index, or a name from ``classes.txt``. Times are in the recording's microseconds (the
timestamps dv-processing reports). Windows of T bins are cut inside each labelled span, as for
DvsGesture.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from hsnn_perception.core.events.codecs import EVENT_DTYPE
from hsnn_perception.training.data import (
    DatasetError,
    InputSpec,
    SpikeSet,
    stack_windows,
    windows_from_spans,
)


class LabelFileError(DatasetError):
    """A recording or its label file is missing or malformed."""


def read_aedat4_events(
    path: str | Path, timeout_s: float | None = None
) -> tuple[np.ndarray, tuple[int, int]]:
    """All events of an AEDAT4 file (EVENT_DTYPE, sorted) and the sensor ``(height, width)``.

    dv-processing reads in a worker process (see :class:`~hsnn_perception.core.sources.dv.
    Aedat4Reader`), so a damaged file that makes it hang or crash is a LabelFileError after
    ``timeout_s`` (default ``READ_TIMEOUT_S``) without progress.
    """
    from hsnn_perception.core.sources.dv import READ_TIMEOUT_S, Aedat4Reader, SourceError

    path = Path(path)
    if not path.is_file():
        raise LabelFileError(f"recording {path} does not exist")
    chunks = []
    try:
        reader = Aedat4Reader(path, timeout_s=timeout_s or READ_TIMEOUT_S)
    except SourceError as exc:
        raise LabelFileError(f"cannot open AEDAT4 recording {path}: {exc}") from exc
    with reader:
        width, height = reader.width, reader.height
        try:
            while (got := reader.next_batch()) is not None:
                chunks.append(got[0])
        except SourceError as exc:
            raise LabelFileError(f"cannot read AEDAT4 recording {path}: {exc}") from exc
    events = np.concatenate(chunks) if chunks else np.zeros(0, EVENT_DTYPE)
    return events[np.argsort(events["t"], kind="stable")], (int(height), int(width))


def read_label_csv(path: Path, class_names: tuple[str, ...] | None) -> list[tuple[int, int, int]]:
    """``(label, start_us, end_us)`` rows; labels are indices or names from ``class_names``."""
    spans = []
    try:
        with path.open(newline="") as f:
            for lineno, row in enumerate(csv.reader(f), start=1):
                if not row or not "".join(row).strip():
                    continue
                cells = [c.strip() for c in row]
                if lineno == 1 and cells[0].lower() in ("class", "label"):
                    continue
                if len(cells) < 3:
                    raise LabelFileError(f"{path}:{lineno}: expected class,start_us,end_us")
                name = cells[0]
                if name.lstrip("-").isdigit():
                    label = int(name)
                elif class_names is not None and name in class_names:
                    label = class_names.index(name)
                else:
                    raise LabelFileError(f"{path}:{lineno}: unknown class {name!r}")
                try:
                    t0, t1 = int(cells[1]), int(cells[2])
                except ValueError as exc:
                    raise LabelFileError(f"{path}:{lineno}: times must be integers") from exc
                n = len(class_names) if class_names is not None else None
                if label < 0 or (n is not None and label >= n) or t1 <= t0:
                    raise LabelFileError(f"{path}:{lineno}: bad class or span {cells[:3]}")
                spans.append((label, t0, t1))
    except OSError as exc:
        raise LabelFileError(f"cannot read label file {path}: {exc}") from exc
    return spans


def _label_file(recording: Path) -> Path:
    for cand in (
        recording.with_name(recording.stem + "_labels.csv"),
        recording.with_suffix(".csv"),
    ):
        if cand.is_file():
            return cand
    raise LabelFileError(f"{recording}: no label file ({recording.stem}_labels.csv)")


def load_aedat4_split(
    folder: Path, spec: InputSpec, class_names: tuple[str, ...] | None, progress: bool = False
) -> tuple[list[tuple[np.ndarray, int]], int]:
    files = sorted(folder.glob("*.aedat4"))
    if not files:
        raise LabelFileError(f"{folder}: no .aedat4 recordings")
    it: Iterable[Path] = files
    if progress:
        from tqdm import tqdm

        it = tqdm(files, desc=f"reading {folder.name}", unit="file")
    windows: list[tuple[np.ndarray, int]] = []
    max_label = -1
    for rec in it:
        events, (h, w) = read_aedat4_events(rec)
        if (h, w) != (spec.sensor_height, spec.sensor_width):
            raise LabelFileError(
                f"{rec}: sensor is {w}x{h}, the input spec says "
                f"{spec.sensor_width}x{spec.sensor_height}"
            )
        spans = read_label_csv(_label_file(rec), class_names)
        max_label = max([max_label] + [s[0] for s in spans])
        windows.extend(windows_from_spans(events, spans, spec))
    return windows, max_label


def load_aedat4_folder(
    root: str | Path, spec: InputSpec, progress: bool = False
) -> tuple[SpikeSet, SpikeSet]:
    """Train and test sets of a labelled AEDAT4 folder (layout in the module docstring)."""
    root = Path(root)
    if not root.is_dir():
        raise LabelFileError(f"dataset folder {root} does not exist")
    names_file = root / "classes.txt"
    class_names = None
    if names_file.is_file():
        class_names = tuple(ln.strip() for ln in names_file.read_text().splitlines() if ln.strip())
    parts = {}
    top = -1
    for part in ("train", "test"):
        if not (root / part).is_dir():
            raise LabelFileError(f"{root}: missing {part}/ folder")
        parts[part], m = load_aedat4_split(root / part, spec, class_names, progress)
        top = max(top, m)
    names = class_names or tuple(str(i) for i in range(top + 1))
    return (
        stack_windows(parts["train"], names, spec),
        stack_windows(parts["test"], names, spec),
    )
