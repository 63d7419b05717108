"""AEDAT 3.1 files (jAER / cAER, e.g. IBM DvsGesture's recordings): polarity events read and
written.

Format (iniVation file-format documentation): header lines starting with ``#`` and ending in
CRLF, the first ``#!AER-DAT3.1``, the last ``#!END-HEADER``; then packets, each a 28-byte
little-endian header (int16 eventType, int16 eventSource, int32 eventSize, int32 eventTSOffset,
int32 eventTSOverflow, int32 eventCapacity, int32 eventNumber, int32 eventValid) followed by
``eventCapacity * eventSize`` bytes of events. Polarity events (type 1) are 8 bytes: uint32 data
(bit 0 valid, bit 1 polarity, bits 2-16 y, bits 17-31 x; origin top left) and int32 timestamp
(us), extended to 64 bits as ``eventTSOverflow << 31 | timestamp``. Other event types are
skipped. The writer follows the same description, so the reader is tested on files of the
published form.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from hsnn_perception.core.errors import EventSourceError
from hsnn_perception.core.events.codecs import EVENT_DTYPE

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


class AedatError(EventSourceError, ValueError):
    """An AEDAT 3.1 file (or a dataset's label file beside it) cannot be parsed or written."""


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


def read_aedat31(path: str | Path) -> NDArray[Any]:
    """Valid polarity events of an AEDAT 3.1 file as an EVENT_DTYPE array, sorted by time."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise AedatError(f"cannot read {path}: {exc}") from exc
    pos = _split_header(raw, path)
    chunks: list[NDArray[Any]] = []
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
    ordered: NDArray[Any] = events[np.argsort(events["t"], kind="stable")]
    return ordered


SPECIAL_EVENT = 0  # cAER's timestamp-wrap/reset events: a reader skips them


def write_aedat31(
    path: str | Path,
    events: NDArray[Any],
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
