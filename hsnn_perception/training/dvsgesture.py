"""IBM DvsGesture in its published form: AEDAT 3.1 recordings with ``*_labels.csv`` files.

The published folder (``DvsGesture/``) holds ``userNN_<lighting>.aedat`` recordings, one
``userNN_<lighting>_labels.csv`` per recording (header ``class,startTime_usec,endTime_usec``,
classes 1..11) and the split lists ``trials_to_train.txt`` / ``trials_to_test.txt`` (one
``.aedat`` file name per line). It cannot be downloaded here; the loader takes a path.

Preprocessing follows Seekings et al. 2024: 10 ms bins, 2 x 128 x 128 (optionally downsampled),
T = 16 bins per sample, samples cut from the labelled gesture spans (consecutive windows that lie
inside a span).

AEDAT 3.1 (iniVation file-format documentation): header lines starting with ``#`` and ending in
CRLF, the first ``#!AER-DAT3.1``, the last ``#!END-HEADER``; then packets, each a 28-byte
little-endian header (int16 eventType, int16 eventSource, int32 eventSize, int32 eventTSOffset,
int32 eventTSOverflow, int32 eventCapacity, int32 eventNumber, int32 eventValid) followed by
``eventCapacity * eventSize`` bytes of events. Polarity events (type 1) are 8 bytes: uint32 data
(bit 0 valid, bit 1 polarity, bits 2-16 y, bits 17-31 x; origin top left) and int32 timestamp
(us), extended to 64 bits as ``eventTSOverflow << 31 | timestamp``.

:func:`write_aedat31` and :func:`write_dvsgesture_folder` write that layout (from the same
description and IBM's dataset README: ``gesture_mapping.csv`` names the classes), so the reader and
the training recipe are tested on files of the published form (test/training/test_dvsgesture.py).
"""

from __future__ import annotations

import csv
import struct
from collections.abc import Iterable, Mapping, Sequence
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

AEDAT31_VERSION = b"#!AER-DAT3.1"
END_HEADER = b"#!END-HEADER"
PACKET_HEADER = np.dtype(
    [
        ("type", "<i2"),
        ("source", "<i2"),
        ("size", "<i4"),
        ("ts_offset", "<i4"),
        ("ts_overflow", "<i4"),
        ("capacity", "<i4"),
        ("number", "<i4"),
        ("valid", "<i4"),
    ]
)
POLARITY_EVENT = 1
POLARITY_DTYPE = np.dtype([("data", "<u4"), ("t", "<i4")])


class AedatError(DatasetError):
    """An AEDAT file or its labels cannot be parsed."""


def _split_header(raw: bytes, path: Path) -> int:
    """Offset of the first packet (after ``#!END-HEADER\\r\\n``); checks the version line."""
    if not raw.startswith(AEDAT31_VERSION):
        first = raw[:20].split(b"\n")[0]
        raise AedatError(f"{path}: not an AEDAT 3.1 file (first line {first!r})")
    pos = 0
    while pos < len(raw) and raw[pos : pos + 1] == b"#":
        end = raw.find(b"\n", pos)
        if end < 0:
            break
        line = raw[pos:end].rstrip(b"\r")
        pos = end + 1
        if line == END_HEADER:
            return pos
    raise AedatError(f"{path}: header has no {END_HEADER.decode()} line")


def read_aedat31(path: str | Path) -> np.ndarray:
    """Valid polarity events of an AEDAT 3.1 file as an EVENT_DTYPE array, sorted by time."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise AedatError(f"cannot read {path}: {exc}") from exc
    pos = _split_header(raw, path)
    chunks: list[np.ndarray] = []
    while pos < len(raw):
        if pos + PACKET_HEADER.itemsize > len(raw):
            raise AedatError(f"{path}: truncated packet header at byte {pos}")
        head = np.frombuffer(raw, PACKET_HEADER, 1, pos)[0]
        pos += PACKET_HEADER.itemsize
        size, capacity, number = int(head["size"]), int(head["capacity"]), int(head["number"])
        if size < 1 or capacity < 0 or not 0 <= number <= capacity:
            raise AedatError(
                f"{path}: bad packet header at byte {pos - PACKET_HEADER.itemsize} "
                f"(size {size}, capacity {capacity}, number {number})"
            )
        payload = capacity * size
        if pos + payload > len(raw):
            raise AedatError(f"{path}: packet at byte {pos} runs past the end of the file")
        if int(head["type"]) == POLARITY_EVENT:
            if size != POLARITY_DTYPE.itemsize:
                raise AedatError(f"{path}: polarity events of {size} bytes, expected 8")
            ev = np.frombuffer(raw, POLARITY_DTYPE, number, pos)
            data = ev["data"]
            valid = (data & 1) == 1
            t = (np.int64(int(head["ts_overflow"])) << 31) | ev["t"].astype(np.int64)
            out = np.empty(int(valid.sum()), EVENT_DTYPE)
            out["t"] = t[valid]
            out["x"] = ((data[valid] >> 17) & 0x7FFF).astype(np.uint16)
            out["y"] = ((data[valid] >> 2) & 0x7FFF).astype(np.uint16)
            out["p"] = ((data[valid] >> 1) & 1).astype(np.uint8)
            chunks.append(out)
        pos += payload
    if not chunks:
        return np.zeros(0, EVENT_DTYPE)
    events = np.concatenate(chunks)
    return events[np.argsort(events["t"], kind="stable")]


def read_labels_csv(path: str | Path, num_classes: int = 11) -> list[tuple[int, int, int]]:
    """``(class 0-based, start_us, end_us)`` rows of a DvsGesture ``*_labels.csv`` file."""
    path = Path(path)
    spans = []
    try:
        with path.open(newline="") as f:
            for lineno, row in enumerate(csv.reader(f), start=1):
                if not row or not "".join(row).strip():
                    continue
                if lineno == 1 and not row[0].strip().lstrip("-").isdigit():
                    continue  # header line
                if len(row) < 3:
                    raise AedatError(f"{path}:{lineno}: expected class,start,end, got {row}")
                try:
                    label, t0, t1 = (int(float(v)) for v in row[:3])
                except ValueError as exc:
                    raise AedatError(f"{path}:{lineno}: not numbers: {row}") from exc
                if not 1 <= label <= num_classes or t1 <= t0:
                    raise AedatError(
                        f"{path}:{lineno}: class must be 1..{num_classes} and end > start, "
                        f"got {row}"
                    )
                spans.append((label - 1, t0, t1))
    except OSError as exc:
        raise AedatError(f"cannot read label file {path}: {exc}") from exc
    return spans


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


SPECIAL_EVENT = 0  # cAER's timestamp-wrap/reset events: a reader skips them


def write_aedat31(
    path: str | Path,
    events: np.ndarray,
    packet_size: int = 4096,
    invalid_every: int = 0,
    source: str = "DVS128",
) -> Path:
    """Write ``events`` (EVENT_DTYPE, sorted by t) as an AEDAT 3.1 file of polarity packets.

    Header lines end in CRLF; a special-event packet comes first (as cAER writes one), then
    packets of at most ``packet_size`` events whose capacity exceeds their number by a few
    padding slots. Timestamps above ``2**31`` go into ``eventTSOverflow``: a packet is cut where
    the overflow changes. ``invalid_every`` > 0 clears the valid bit of every n-th event of a
    packet (a reader must drop them).
    """
    path = Path(path)
    if events.size and np.any(np.diff(events["t"]) < 0):
        raise AedatError(f"{path}: events must be sorted by time to be written")
    if events.size and (int(events["x"].max()) > 0x7FFF or int(events["y"].max()) > 0x7FFF):
        raise AedatError(f"{path}: x and y must fit in 15 bits")
    header = [AEDAT31_VERSION, b"#Format: RAW", f"#Source 1: {source}".encode(), END_HEADER]
    with path.open("wb") as f:
        f.write(b"".join(line + b"\r\n" for line in header))
        f.write(struct.pack("<hhiiiiii", SPECIAL_EVENT, 1, 8, 4, 0, 2, 2, 2) + b"\x00" * 16)
        overflow = events["t"].astype(np.int64) >> 31
        cuts = np.flatnonzero(np.diff(overflow)) + 1
        for part in np.split(events, cuts) if events.size else []:
            for start in range(0, part.size, packet_size):
                chunk = part[start : start + packet_size]
                data = (
                    (chunk["x"].astype(np.uint32) << 17)
                    | (chunk["y"].astype(np.uint32) << 2)
                    | (chunk["p"].astype(np.uint32) << 1)
                    | 1
                )
                if invalid_every:
                    data[::invalid_every] &= ~np.uint32(1)
                capacity = chunk.size + 3
                body = np.zeros(capacity, POLARITY_DTYPE)
                body["data"][: chunk.size] = data
                body["t"][: chunk.size] = (chunk["t"] & 0x7FFFFFFF).astype(np.int32)
                valid = int(np.count_nonzero(data & 1))
                high = int(chunk["t"][0]) >> 31
                f.write(struct.pack("<hhiiiiii", 1, 1, 8, 4, high, capacity, chunk.size, valid))
                f.write(body.tobytes())
    return path


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
