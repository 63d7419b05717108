"""Recordings of other formats -> labelled event bags: AEDAT4 (dv-processing), AEDAT 3.1 (jAER /
cAER, IBM DvsGesture) and Prophesee EVT 3.0 ``.raw`` files, re-cut into packets on a fixed grid of
sensor time; label CSV files.
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from hsnn_perception.core.events.codecs import EVENT_DTYPE, EventCodecError, decode_packet
from hsnn_perception.core.io.bag.msgtypes import BagError, EventPacketData, Label
from hsnn_perception.core.io.bag.write import packetize, write_event_bag


def read_label_csv(
    path: Path | str, class_base: int = 0, names: Iterable[str] | None = None
) -> list[Label]:
    """Read ``class,start_us,end_us`` rows (a header row is skipped; DvsGesture's label files have
    one and count classes from 1: pass ``class_base=1``). ``class`` may also be a name in ``names``.
    """
    names = list(names or [])
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise BagError(f"cannot read label file {path}: {exc}") from exc
    labels = []
    for lineno, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        if len(row) < 3:
            raise BagError(f"{path}:{lineno}: expected class,start_us,end_us, got {row}")
        cls, start, end = (c.strip() for c in row[:3])
        try:
            start_us, end_us = int(float(start)), int(float(end))
        except ValueError:
            if lineno == 1:
                continue  # header
            raise BagError(f"{path}:{lineno}: start/end are not numbers: {row}") from None
        if cls in names:
            class_id = names.index(cls)
        else:
            try:
                class_id = int(cls) - class_base
            except ValueError:
                raise BagError(f"{path}:{lineno}: unknown class {cls!r}") from None
        if class_id < 0 or (names and class_id >= len(names)):
            raise BagError(f"{path}:{lineno}: class {cls} out of range")
        if end_us <= start_us:
            raise BagError(f"{path}:{lineno}: end {end_us} is not after start {start_us}")
        name = names[class_id] if names and class_id < len(names) else str(class_id)
        labels.append(Label(class_id, name, start_us, end_us))
    if not labels:
        raise BagError(f"{path}: no labels")
    return labels


LABELS_OUTSIDE = "labels outside the recording"
# Told the fraction (0..1) of the input a conversion has covered so far.
Progress = Callable[[float], None]


def aedat4_to_bag(
    aedat_path: Path | str,
    labels_csv: Path | str | None,
    path: Path | str,
    storage: str = "mcap",
    packet_us: int = 10_000,
    encoding: str = "mono",
    class_base: int = 0,
    names: Iterable[str] | None = None,
    read_timeout_s: float | None = None,
    compression: str = "none",
    max_us: int = 0,
    progress: Progress | None = None,
) -> dict[str, int]:
    """AEDAT4 recording (+ label CSV) -> labelled event bag, via dv-processing.

    dv-processing reads in a worker process; ``read_timeout_s`` (default the reader's
    ``READ_TIMEOUT_S``) without progress on a damaged file is a BagError.

    ``max_us`` > 0 keeps only the first ``max_us`` of sensor time. ``compression`` "zstd":
    compressed MCAP chunks. ``progress`` gets the fraction of the recording's sensor time (up to
    ``max_us``) read so far, after each batch.

    Returns the messages written per topic, and under ``"labels outside the recording"`` how
    many label spans cover none of the recording's time (a CSV of another recording, or times
    in another unit); they are written all the same.
    """
    from hsnn_perception.core.sources.dv import READ_TIMEOUT_S, Aedat4Reader, SourceError

    aedat_path = Path(aedat_path)
    if not aedat_path.is_file():
        raise BagError(f"no AEDAT4 file at {aedat_path}")
    labels = read_label_csv(labels_csv, class_base, names) if labels_csv is not None else []
    try:
        # dv-processing reads in a worker process: a damaged file that makes it hang or crash
        # becomes a BagError instead of a process stuck for ever
        reader = Aedat4Reader(aedat_path, timeout_s=read_timeout_s or READ_TIMEOUT_S)
    except SourceError as exc:
        raise BagError(f"cannot open {aedat_path} as AEDAT4: {exc}") from exc
    width, height = reader.width, reader.height
    t_lo, t_hi = reader.time_range
    span = min(t_hi - t_lo, max_us) if max_us else t_hi - t_lo

    seen: dict[str, int | None] = {"first": None, "last": None}  # sensor time it covers

    def batches() -> Iterator[NDArray[Any]]:
        while True:
            try:
                got = reader.next_batch()
            except SourceError as exc:
                raise BagError(f"reading {aedat_path} failed: {exc}") from exc
            if got is None:
                return
            if progress is not None and got[0].size and span > 0:
                progress(min(1.0, (int(got[0]["t"][-1]) - t_lo) / span))
            yield got[0]

    packets = _batch_packets(batches(), packet_us, width, height, encoding, max_us, seen)
    try:
        counts = write_event_bag(
            path,
            packets,
            labels,
            storage,
            {"hsnn.source": f"aedat4 {aedat_path.name}"},
            compression,
        )
    finally:
        reader.close()
    _count_labels_outside(counts, labels, seen)
    return counts


def _count_labels_outside(
    counts: dict[str, int], labels: list[Label], seen: dict[str, int | None]
) -> None:
    first, last = seen["first"], seen["last"]
    if labels and first is not None and last is not None:
        outside = sum(1 for lab in labels if lab.end_us <= first or lab.start_us > last)
        if outside:
            counts[LABELS_OUTSIDE] = outside


def aedat31_to_bag(
    aedat_path: Path | str,
    labels_csv: Path | str | None,
    path: Path | str,
    storage: str = "mcap",
    packet_us: int = 10_000,
    encoding: str = "mono",
    class_base: int = 0,
    names: Iterable[str] | None = None,
    width: int = 128,
    height: int = 128,
    compression: str = "none",
    max_us: int = 0,
    progress: Progress | None = None,
) -> dict[str, int]:
    """AEDAT 3.1 recording (jAER / cAER; IBM DvsGesture's ``userNN_<light>.aedat`` with its
    ``_labels.csv``: ``class_base`` 1) + label CSV -> labelled event bag of a ``width`` x
    ``height`` sensor (the files do not state it; DvsGesture's DVS128: 128 x 128).

    Options as :func:`aedat4_to_bag`; ``progress`` gets the fraction of the recording's sensor
    time written. Returns the messages written per topic (and labels outside the recording)."""
    from hsnn_perception.core.io.aedat31 import AedatError, read_aedat31

    aedat_path = Path(aedat_path)
    if not aedat_path.is_file():
        raise BagError(f"no AEDAT 3.1 file at {aedat_path}")
    labels = read_label_csv(labels_csv, class_base, names) if labels_csv is not None else []
    try:
        events = read_aedat31(aedat_path)
    except AedatError as exc:
        raise BagError(str(exc)) from exc
    if events.size and (int(events["x"].max()) >= width or int(events["y"].max()) >= height):
        raise BagError(
            f"{aedat_path}: events up to x={int(events['x'].max())}, y={int(events['y'].max())} "
            f"do not fit a {width}x{height} sensor (give the sensor's size)"
        )
    span = int(events["t"][-1] - events["t"][0]) if events.size else 0
    span = min(span, max_us) if max_us else span

    def batches() -> Iterator[NDArray[Any]]:
        step = 1 << 18  # the file is in memory; hand it on in slices for the progress
        for start in range(0, events.size, step):
            chunk = events[start : start + step]
            if progress is not None and span > 0:
                progress(min(1.0, int(chunk["t"][-1] - events["t"][0]) / span))
            yield chunk

    seen: dict[str, int | None] = {"first": None, "last": None}
    packets = _batch_packets(batches(), packet_us, width, height, encoding, max_us, seen)
    counts = write_event_bag(
        path, packets, labels, storage, {"hsnn.source": f"aedat3.1 {aedat_path.name}"}, compression
    )
    _count_labels_outside(counts, labels, seen)
    return counts


def _batch_packets(
    batches: Iterable[NDArray[Any]],
    packet_us: int,
    width: int,
    height: int,
    encoding: str,
    max_us: int,
    seen: dict[str, int | None],
) -> Iterator[EventPacketData]:
    """Event batches of a recording (time-sorted each) -> packets on a fixed grid of sensor time,
    so batch edges do not matter; ``max_us`` > 0 stops after that much sensor time. ``seen``
    gets the first and last event times."""
    seq = 0
    carry = np.zeros(0, dtype=EVENT_DTYPE)
    for ev in batches:
        if ev.size == 0:
            continue
        first = seen["first"]
        if first is None:
            first = seen["first"] = int(ev["t"][0])
        cut = bool(max_us) and int(ev["t"][-1]) >= first + max_us
        if cut:
            ev = ev[ev["t"] < first + max_us]
        if ev.size:
            seen["last"] = int(ev["t"][-1])
            ev = np.concatenate([carry, ev])
            # the last (possibly incomplete) slot waits for the next batch
            slot = ev["t"] // packet_us
            keep = slot == slot[-1]
            done, carry = ev[~keep], ev[keep]
            for pkt in _grid_packets(done, packet_us, width, height, encoding, seq):
                seq += 1
                yield pkt
        if cut:
            break
    yield from _grid_packets(carry, packet_us, width, height, encoding, seq)


RAW_READ_BYTES = 1 << 20


def read_evt3_raw_header(raw_path: Path) -> tuple[int, int, int]:
    """(width, height, offset of the event data) of a Prophesee EVT 3.0 ``.raw`` file: its
    header is text lines starting with ``%`` (``% geometry WxH`` or ``% format
    EVT3;height=H;width=W``)."""
    with raw_path.open("rb") as f:
        offset, lines = 0, []
        while True:
            if f.read(1) != b"%":
                break
            line = f.readline(4096)
            if not line.endswith(b"\n"):
                raise BagError(f"{raw_path}: header line at byte {offset} is not terminated")
            lines.append(line.decode("ascii", errors="replace").strip())
            offset = f.tell()
    text = "\n".join(lines)
    if lines and not re.search(r"\bevt ?3|EVT3", text, re.IGNORECASE):
        raise BagError(f"{raw_path}: the header names no EVT 3.0 format ({lines[:3]}...)")
    geo = re.search(r"geometry\s+(\d+)x(\d+)", text)
    if geo:
        return int(geo.group(1)), int(geo.group(2)), offset
    w, h = re.search(r"width=(\d+)", text), re.search(r"height=(\d+)", text)
    if w and h:
        return int(w.group(1)), int(h.group(1)), offset
    raise BagError(f"{raw_path}: no sensor geometry in the header (% geometry WxH)")


def evt3_raw_to_bag(
    raw_path: Path | str,
    path: Path | str,
    storage: str = "mcap",
    packet_us: int = 10_000,
    encoding: str = "evt3",
    max_us: int = 0,
    compression: str = "none",
    progress: Progress | None = None,
) -> dict[str, int]:
    """A Prophesee EVT 3.0 ``.raw`` recording -> event bag (no labels), re-cut into packets of
    ``packet_us`` of sensor time and written in ``encoding``; ``max_us`` > 0: only the first
    ``max_us`` of sensor time. Words that are no events (triggers, padding) are counted by the
    decoder and left out. ``progress`` gets the fraction read so far (of the file's bytes, or of
    ``max_us`` sensor time) after each read."""
    from hsnn_perception.core.events.codecs import Evt3State

    raw_path = Path(raw_path)
    if not raw_path.is_file():
        raise BagError(f"no EVT3 .raw file at {raw_path}")
    width, height, offset = read_evt3_raw_header(raw_path)
    data_bytes = raw_path.stat().st_size - offset
    drops: Counter[str] = Counter()
    seen: dict[str, int | None] = {"first": None, "last": None}

    first: list[int] = []  # the first event's time, once read

    def report(read: int, ev: NDArray[Any]) -> None:
        if progress is None:
            return
        if ev.size and not first:
            first.append(int(ev["t"][0]))
        if max_us and first and ev.size:
            progress(min(1.0, (int(ev["t"][-1]) - first[0]) / max_us))
        elif not max_us and data_bytes > 0:
            progress(min(1.0, read / data_bytes))

    def batches() -> Iterator[NDArray[Any]]:
        state = Evt3State()  # the stream is cut into reads anywhere: carry the decoder state
        with raw_path.open("rb") as f:
            f.seek(offset)
            read = 0
            while chunk := f.read(RAW_READ_BYTES):
                read += len(chunk)
                try:
                    ev = decode_packet(
                        chunk, "evt3", 0, width, height, strict=False, drops=drops, evt3_state=state
                    )
                except EventCodecError as exc:
                    raise BagError(f"{raw_path}: {exc}") from exc
                # sensor readout order is nearly, not exactly, time order
                ev = ev[np.argsort(ev["t"], kind="stable")]
                report(read, ev)
                yield ev

    packets = _batch_packets(batches(), packet_us, width, height, encoding, max_us, seen)
    return write_event_bag(
        path, packets, (), storage, {"hsnn.source": f"evt3 raw {raw_path.name}"}, compression
    )


def _grid_packets(
    events: NDArray[Any], packet_us: int, width: int, height: int, encoding: str, seq0: int
) -> list[EventPacketData]:
    if events.size == 0:
        return []
    slot = events["t"] // packet_us
    cuts = np.flatnonzero(np.diff(slot)) + 1
    out = []
    for i, chunk in enumerate(np.split(events, cuts)):
        out.extend(packetize(chunk, packet_us, width, height, encoding, seq0 + i))
    return out
