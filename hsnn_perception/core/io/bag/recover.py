"""Damaged bags: MCAP and sqlite3 files read without their index, record by record or row by row.

What can be read is read and the :class:`~hsnn_perception.core.io.bag.storage.ReadReport` says
what was skipped: a truncated MCAP (a recorder that died) is read up to the cut; a chunk that fails
(over the size limit, bad compressed data, checksum) is skipped and counted and reading goes on
with the next one; a damaged record length is stepped over by searching for the next well-formed
chunk; sqlite3 rows that fail are skipped.
"""

from __future__ import annotations

import mmap
import sqlite3
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hsnn_perception.core.io.bag import limits
from hsnn_perception.core.io.bag.limits import ChunkError, bounded_decompress
from hsnn_perception.core.io.bag.msgtypes import BagError
from hsnn_perception.core.io.bag.storage import (
    MCAP_MAGIC,
    Connection,
    RawSource,
    ReadReport,
    sqlite_messages,
)

MCAP_OPS = set(range(0x01, 0x11))  # record types of MCAP v0; others are skipped and counted


# Little-endian integers of MCAP records, read from bytes or from the memory-mapped file.
def _u16(b: bytes | mmap.mmap, o: int) -> int:
    return int(struct.unpack_from("<H", b, o)[0])


def _u32(b: bytes | mmap.mmap, o: int) -> int:
    return int(struct.unpack_from("<I", b, o)[0])


def _u64(b: bytes | mmap.mmap, o: int) -> int:
    return int(struct.unpack_from("<Q", b, o)[0])


def _mcap_str(b: bytes, o: int) -> tuple[str, int]:
    n = _u32(b, o)
    if o + 4 + n > len(b):
        raise ValueError("string beyond record")
    return b[o + 4 : o + 4 + n].decode("utf-8"), o + 4 + n


class McapScanSource(RawSource):
    """Reads an MCAP file record by record from the start, without its index or footer.

    A chunk that cannot be used (over the size limit, bad compressed data or checksum) is
    skipped and counted; a record whose length runs past the end is either the cut end of a
    truncated file (read up to the cut) or a damaged length, after which reading resumes at the
    next well-formed chunk. The file is memory-mapped: only the records in use are copied.
    """

    def __init__(self, path: Path, report: ReadReport) -> None:
        self.path, self.report = path, report
        self._conns: dict[int, Connection] = {}
        self._schemas: dict[int, tuple[str, str]] = {}
        self.connections = []
        for _ in self._scan(set(), collect=True):
            pass
        self.connections = list(dict.fromkeys(self._conns.values()))

    def messages(self, topics: set[str]) -> Iterator[tuple[Connection, int, bytes]]:
        yield from self._scan(topics, collect=False)

    def _scan(self, topics: set[str], collect: bool) -> Iterator[tuple[Connection, int, bytes]]:
        with self.path.open("rb") as f:
            if f.read(len(MCAP_MAGIC)) != MCAP_MAGIC:
                raise BagError(f"{self.path} is not an MCAP file (bad magic)")
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                yield from self._records(data, len(MCAP_MAGIC), len(data), topics, collect, True)

    def _skip(self, collect: bool, reason: str, note: str | None = None, n: int = 1) -> None:
        if collect:  # counted once, on the first of the two passes
            self.report.skipped[reason] += n
            if note:
                self.report.note(note)

    def _records(
        self, data: Any, pos: int, end: int, topics: set[str], collect: bool, top: bool
    ) -> Iterator[tuple[Connection, int, bytes]]:
        while pos < end:
            # the closing magic after the footer
            if top and end - pos == len(MCAP_MAGIC) and data[pos:end] == MCAP_MAGIC:
                return
            if pos + 9 > end:
                self._truncated(collect, end - pos, top)
                return
            op, size = data[pos], _u64(data, pos + 1)
            body = pos + 9
            if body + size > end:
                if not top:
                    self._skip(collect, "incomplete record inside an MCAP chunk")
                    return
                nxt = _next_chunk(data, pos + 1, end)
                if nxt is not None:
                    self._skip(
                        collect,
                        "bytes skipped after a damaged MCAP record length",
                        f"damaged MCAP record length at offset {pos}: resumed at the next "
                        f"chunk (offset {nxt})",
                        nxt - pos,
                    )
                    pos = nxt
                    continue
                if op == 0x06:  # a cut chunk: its records up to the cut are still whole
                    yield from self._partial_chunk(data[body:end], topics, collect)
                self._truncated(collect, end - pos, top)
                return
            pos = body + size
            if op not in MCAP_OPS and op < 0x80:
                self._skip(collect, "MCAP records of unknown type (damaged?)")
                continue
            if op == 0x05 and size > limits.MAX_MESSAGE_BYTES + 22:
                self._skip(collect, f"message over {limits.MAX_MESSAGE_BYTES} bytes")
                continue
            if op not in (0x03, 0x04, 0x05, 0x06) or (op in (0x03, 0x04) and not collect):
                continue
            rec = data[body : body + size]
            try:
                if op == 0x03:  # schema
                    sid = _u16(rec, 0)
                    name, o = _mcap_str(rec, 2)
                    _, o = _mcap_str(rec, o)  # encoding
                    n = _u32(rec, o)
                    self._schemas[sid] = (name, rec[o + 4 : o + 4 + n].decode("utf-8"))
                elif op == 0x04:  # channel
                    cid, sid = _u16(rec, 0), _u16(rec, 2)
                    topic, _ = _mcap_str(rec, 4)
                    name, text = self._schemas.get(sid, ("", ""))
                    self._conns[cid] = Connection(topic, name, text)
                elif op == 0x05:  # message
                    conn = self._conns.get(_u16(rec, 0))
                    if not collect and conn is not None and conn.topic in topics:
                        yield conn, _u64(rec, 6), rec[22:]
                else:  # chunk
                    inner = _chunk_records(rec) if top else None
                    if inner is None:
                        raise ChunkError("a chunk inside a chunk")
                    msgs = list(self._records(inner, 0, len(inner), topics, collect, top=False))
                    msgs.sort(key=lambda m: m[1])  # rosbag2 readers give a chunk in time order
                    yield from msgs
            except ChunkError as exc:
                self._skip(collect, "damaged MCAP chunks", f"damaged MCAP chunk at {pos}: {exc}")
            except (ValueError, struct.error, UnicodeDecodeError) as exc:
                self._skip(
                    collect, f"damaged MCAP record (op {op:#x})", f"damaged MCAP record: {exc}"
                )

    def _partial_chunk(
        self, rec: bytes, topics: set[str], collect: bool
    ) -> Iterator[tuple[Connection, int, bytes]]:
        try:
            compression, o = _mcap_str(rec, 28)
        except (ValueError, struct.error, UnicodeDecodeError):
            return
        if compression:  # a cut compressed stream cannot be decoded
            return
        inner = rec[o + 8 :]
        yield from self._records(inner, 0, len(inner), topics, collect, top=False)

    def _truncated(self, collect: bool, nbytes: int, top: bool) -> None:
        if collect and top:
            self.report.skipped[
                "bytes of the cut last MCAP record (a cut chunk is read up to the cut)"
            ] += nbytes
            self.report.note("the MCAP file is truncated (no footer): read up to the cut")
        elif collect:
            self.report.skipped["incomplete record inside an MCAP chunk"] += 1


def _chunk_header(data: Any, body: int, size: int) -> tuple[int, int, str, int, int] | None:
    """(uncompressed size, crc, compression, data offset, data length) of a chunk record body,
    or None when the fields do not add up (how a real chunk is told from random bytes)."""
    if size < 40:
        return None
    try:
        uncompressed, crc = _u64(data, body + 16), _u32(data, body + 24)
        n = _u32(data, body + 28)
        if n > 4:
            return None
        compression = bytes(data[body + 32 : body + 32 + n]).decode("ascii")
        length = _u64(data, body + 32 + n)
    except (struct.error, UnicodeDecodeError):
        return None
    if compression not in limits.MCAP_COMPRESSIONS or 40 + n + length != size:
        return None
    return uncompressed, crc, compression, body + 40 + n, length


def _chunk_records(rec: bytes) -> bytes:
    """The records of a chunk, decompressed within the limits and checked against its CRC."""
    head = _chunk_header(rec, 0, len(rec))
    if head is None:
        raise ChunkError("malformed chunk header")
    uncompressed, crc, compression, offset, length = head
    inner = bounded_decompress(rec[offset : offset + length], compression, uncompressed)
    if crc and zlib.crc32(inner) != crc:
        raise ChunkError("checksum mismatch")
    return inner


def _next_chunk(data: Any, start: int, end: int) -> int | None:
    """Offset of the next well-formed chunk record after ``start``, if any."""
    pos = start
    while True:
        pos = int(data.find(b"\x06", pos, end - 9))
        if pos < 0:
            return None
        size = _u64(data, pos + 1)
        if pos + 9 + size <= end and _chunk_header(data, pos + 9, size) is not None:
            return pos
        pos += 1


class SqliteScanSource(RawSource):
    """Reads a rosbag2 sqlite3 file with the standard sqlite3 module, row by row, skipping rows
    that fail (a damaged or truncated database)."""

    def __init__(self, path: Path, report: ReadReport) -> None:
        self.path, self.report = path, report
        try:
            con = self._connect()
            rows = con.execute("SELECT id, name, type FROM topics").fetchall()
            try:
                defs = dict(
                    con.execute(
                        "SELECT topic_type, encoded_message_definition FROM message_definitions"
                    ).fetchall()
                )
            except sqlite3.DatabaseError:
                defs = {}
            con.close()
        except sqlite3.DatabaseError as exc:
            raise BagError(
                f"{path}: damaged or truncated sqlite3 bag, cannot be recovered: {exc}"
            ) from exc
        self._by_id = {tid: Connection(name, typ, defs.get(typ, "")) for tid, name, typ in rows}
        self.connections = list(self._by_id.values())

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(f"file:{self.path}?mode=ro&immutable=1", uri=True)

    def messages(self, topics: set[str]) -> Iterator[tuple[Connection, int, bytes]]:
        yield from sqlite_messages(self.path, self._by_id, topics, self.report)


def chain_scans(
    files: list[Path], report: ReadReport, topics: set[str]
) -> Iterator[tuple[Connection, int, bytes]]:
    """The messages of MCAP files scanned one after the other (the files of a split bag)."""
    for f in files:
        yield from McapScanSource(f, report).messages(topics)
