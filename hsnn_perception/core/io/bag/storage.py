"""Reading rosbag2 storage files: what a read found (:class:`ReadReport`), the raw message sources
(:class:`RawSource`), sqlite3 files streamed within limits, and a bag directory's files and
metadata.yaml.
"""

from __future__ import annotations

import re
import sqlite3
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hsnn_perception.core.io.bag import limits
from hsnn_perception.core.io.bag.msgtypes import BagError

MCAP_MAGIC = b"\x89MCAP0\r\n"
SQLITE_MAGIC = b"SQLite format 3\x00"


@dataclass
class ReadReport:
    """What reading a bag found, and what it had to skip."""

    path: str
    storage: str = ""
    recovered: bool = False  # read by the recovery scanner (bag index or metadata damaged)
    topics: dict[str, str] = field(default_factory=dict)  # topic -> msgtype
    read: Counter[str] = field(default_factory=Counter)  # topic -> messages read
    expected: dict[str, int] = field(default_factory=dict)  # topic -> count the index announces
    skipped: Counter[str] = field(default_factory=Counter)  # reason -> messages (or bytes) skipped
    notes: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.recovered and not self.skipped

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "storage": self.storage,
            "recovered": self.recovered,
            "topics": dict(self.topics),
            "read": dict(self.read),
            "expected": dict(self.expected),
            "skipped": dict(self.skipped),
            "notes": list(self.notes),
        }

    def summary(self) -> str:
        lines = [f"{self.path} ({self.storage}{', recovered' if self.recovered else ''})"]
        lines += [f"  read {n} on {t}" for t, n in sorted(self.read.items())]
        lines += [f"  skipped {n}: {why}" for why, n in sorted(self.skipped.items())]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


@dataclass(frozen=True)
class Connection:
    topic: str
    msgtype: str
    msgdef: str  # ros2msg text ("" when the bag has none)


class RawSource:
    """Raw messages of a bag: ``connections`` and ``messages(topics)`` -> (conn, log_ns, raw)."""

    connections: list[Connection]
    keep: Any = None  # what must live as long as the source (a temporary directory)

    def messages(self, topics: set[str]) -> Iterator[tuple[Connection, int, bytes]]:
        raise NotImplementedError


def sqlite_messages(
    path: Path, by_id: dict[int, Connection], topics: set[str], report: ReadReport
) -> Iterator[tuple[Connection, int, bytes]]:
    """Messages of a rosbag2 sqlite3 file in timestamp order, streamed (never the whole table in
    memory); rows over MAX_MESSAGE_BYTES are skipped and counted without reading their data."""
    ids = [tid for tid, c in by_id.items() if c.topic in topics]
    if not ids:
        return
    # A player may go on reading on another thread than the one that began (the driver's
    # read-ahead): one at a time, on a read-only file.
    con = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True, check_same_thread=False)
    marks = ",".join("?" * len(ids))
    # length() of a blob is read from the record header, so an oversized blob is never loaded
    query = (
        f"SELECT topic_id, timestamp, length(data), {_SQL_DATA} FROM messages "
        f"WHERE topic_id IN ({marks}) ORDER BY timestamp"
    )
    last: int | None = None
    at_last: Counter[tuple[str, int]] = Counter()
    try:
        try:
            for row in con.execute(query, [limits.MAX_MESSAGE_BYTES, *ids]):
                item = _sqlite_row(row, by_id, report)
                if item is not None:
                    if item[1] != last:
                        last, at_last = item[1], Counter()
                    at_last[(item[0].topic, len(item[2]))] += 1
                    yield item
            return
        except sqlite3.DatabaseError as exc:
            report.note(f"sorted read failed ({exc}); reading row by row")
        for row in _sqlite_rows_by_id(con, set(ids), report):
            item = _sqlite_row(row, by_id, report)
            if item is None or (last is not None and item[1] < last):
                continue
            key = (item[0].topic, len(item[2]))
            if item[1] == last and at_last[key] > 0:
                at_last[key] -= 1  # yielded before the sorted read failed
                continue
            yield item
    finally:
        con.close()


_SQL_DATA = "CASE WHEN length(data) <= ? THEN data END"


def _sqlite_row(
    row: tuple[Any, ...], by_id: dict[int, Connection], report: ReadReport
) -> tuple[Connection, int, bytes] | None:
    tid, ts, size, data = row
    if data is None and size is not None and size > limits.MAX_MESSAGE_BYTES:
        report.skipped[f"message over {limits.MAX_MESSAGE_BYTES} bytes"] += 1
        return None
    if tid not in by_id or data is None or not isinstance(ts, int):
        report.skipped["unreadable sqlite3 row"] += 1
        return None
    return by_id[tid], int(ts), bytes(data)


def _sqlite_rows_by_id(
    con: sqlite3.Connection, ids: set[int], report: ReadReport
) -> Iterator[tuple[Any, ...]]:
    try:
        (top,) = con.execute("SELECT max(id) FROM messages").fetchone()
    except sqlite3.DatabaseError:
        top = None
    if top is None:
        report.skipped["unreadable messages table"] += 1
        return
    for rowid in range(1, int(top) + 1):
        try:
            row = con.execute(
                f"SELECT topic_id, timestamp, length(data), {_SQL_DATA} FROM messages WHERE id = ?",
                (limits.MAX_MESSAGE_BYTES, rowid),
            ).fetchone()
        except sqlite3.DatabaseError:
            report.skipped["unreadable sqlite3 row"] += 1
            continue
        if row is not None and row[0] in ids:
            yield row


def _natural(path: Path) -> list[int | str]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def find_storage_files(path: Path) -> list[Path]:
    """The .mcap (else .db3) files of a bag directory in recording order: rosbag2 numbers split
    files NAME_0, NAME_1, ..., compared here by number (NAME_10 after NAME_9)."""
    for pattern in ("*.mcap", "*.db3"):
        files = sorted(path.glob(pattern), key=_natural)
        if files:
            return files
    return []


def read_metadata(meta: Path) -> dict[str, Any]:
    """metadata.yaml's ``rosbag2_bagfile_information`` (small: MAX_METADATA_BYTES); {} when it
    does not parse (rosbags then fails on it and the files are scanned)."""
    size = meta.stat().st_size
    if size > limits.MAX_METADATA_BYTES:
        raise BagError(f"{meta}: {size} bytes, more than the {limits.MAX_METADATA_BYTES} allowed")
    from ruamel.yaml import YAML, YAMLError

    try:
        doc = YAML(typ="safe").load(meta.read_text(errors="replace"))
    except YAMLError:
        return {}
    info = doc.get("rosbag2_bagfile_information") if isinstance(doc, dict) else None
    return info if isinstance(info, dict) else {}


def compression_mode(info: dict[str, Any]) -> str:
    mode = str(info.get("compression_mode") or "").lower()
    return "" if mode == "none" else mode


def listed_files(path: Path, info: dict[str, Any]) -> list[Path]:
    listed = info.get("relative_file_paths")
    if not isinstance(listed, list):
        return []
    return [path / Path(str(rel)).name for rel in listed]


def storage_kind(storage_file: Path) -> str:
    head = storage_file.open("rb").read(16)
    if head.startswith(MCAP_MAGIC):
        return "mcap"
    if head.startswith(SQLITE_MAGIC):
        return "sqlite3"
    raise BagError(f"{storage_file} is not a rosbag2 file (neither MCAP nor sqlite3)")
