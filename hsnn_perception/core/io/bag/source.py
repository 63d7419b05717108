"""Opening a bag for its raw messages: through its index (rosbags), split bags read whole in
recording order, rosbag2's zstd compression (file or message mode) decompressed within bounds, and
the recovery scanners (:mod:`~hsnn_perception.core.io.bag.recover`) where the index is damaged.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hsnn_perception.core.io.bag import limits
from hsnn_perception.core.io.bag.limits import (
    ChunkError,
    bounded_decompress_file,
    file_decompression_limit,
)
from hsnn_perception.core.io.bag.msgtypes import BagError
from hsnn_perception.core.io.bag.recover import McapScanSource, SqliteScanSource, chain_scans
from hsnn_perception.core.io.bag.storage import (
    Connection,
    RawSource,
    ReadReport,
    compression_mode,
    find_storage_files,
    listed_files,
    read_metadata,
    sqlite_messages,
    storage_kind,
)


class IndexedSource(RawSource):
    """A bag read through its index (rosbags); ``storage_files``: its files in recording order
    (several for a split bag; all are read)."""

    def __init__(self, path: Path, report: ReadReport, storage_files: list[Path]) -> None:
        from rosbags.rosbag2 import Reader

        limits.install_bounded_decompressors()
        self.path, self.report, self.storage_files = path, report, storage_files
        self._reader = Reader(path)
        self._reader.open()  # raises on damage; the caller falls back to recovery
        self._by_id: dict[int, Connection] = {}
        try:
            for c in self._reader.connections:
                text = c.msgdef.data if c.msgdef is not None else ""
                self._by_id[c.id] = Connection(c.topic, c.msgtype, text or "")
                report.expected[c.topic] = report.expected.get(c.topic, 0) + int(c.msgcount)
        finally:
            self._reader.close()
        self.connections = list(dict.fromkeys(self._by_id.values()))

    def messages(self, topics: set[str]) -> Iterator[tuple[Connection, int, bytes]]:
        if self.report.storage == "sqlite3":
            # rows are streamed with a size check before each blob is fetched; split files
            # follow each other in time
            for db in self.storage_files:
                yield from sqlite_messages(db, self._db_topics(db), topics, self.report)
            return
        from rosbags.rosbag2 import Reader

        last_ns: int | None = None
        at_last: Counter[tuple[str, int]] = Counter()  # (topic, raw size) yielded at ``last_ns``
        with Reader(self.path) as reader:
            conns = [c for c in reader.connections if c.topic in topics]
            if not conns:
                return
            it = reader.messages(connections=conns)
            while True:
                try:
                    conn, ts, raw = next(it)
                except StopIteration:
                    return
                except Exception as exc:  # a damaged chunk: continue past it with the scanner
                    self.report.note(
                        f"index-based reading stopped at a damaged chunk ({type(exc).__name__}: "
                        f"{exc}); the rest was read by scanning the file"
                    )
                    break
                if len(raw) > limits.MAX_MESSAGE_BYTES:
                    self.report.skipped[f"message over {limits.MAX_MESSAGE_BYTES} bytes"] += 1
                    continue
                if ts != last_ns:
                    last_ns, at_last = ts, Counter()
                c = self._by_id[conn.id]
                at_last[(c.topic, len(raw))] += 1
                yield c, ts, bytes(raw)
        self.report.recovered = True
        for c, ts, raw in chain_scans(self.storage_files, self.report, topics):
            if last_ns is not None and ts < last_ns:
                continue  # already read (or lost with the damaged chunk, which is counted)
            if ts == last_ns and at_last[(c.topic, len(raw))] > 0:
                at_last[(c.topic, len(raw))] -= 1
                continue
            yield c, ts, raw

    def _db_topics(self, db: Path) -> dict[int, Connection]:
        """The sqlite3 file's topic ids (rosbags numbers connections its own way)."""
        known = {(c.topic, c.msgtype): c for c in self._by_id.values()}
        con = sqlite3.connect(f"file:{db}?mode=ro&immutable=1", uri=True)
        try:
            rows = con.execute("SELECT id, name, type FROM topics").fetchall()
        finally:
            con.close()
        return {tid: known.get((name, typ), Connection(name, typ, "")) for tid, name, typ in rows}


class ChainSource(RawSource):
    """The files of a split bag without metadata.yaml, each opened on its own, read in order."""

    def __init__(self, sources: list[RawSource]) -> None:
        self.sources = sources
        self.connections = list(dict.fromkeys(c for src in sources for c in src.connections))

    def messages(self, topics: set[str]) -> Iterator[tuple[Connection, int, bytes]]:
        for src in self.sources:
            yield from src.messages(topics)


class DecompressedMessages(RawSource):
    """A bag recorded with compression_mode message: each message is a zstd frame, decompressed
    here to at most MAX_MESSAGE_BYTES (rosbags would decompress it without a bound)."""

    def __init__(self, inner: RawSource, report: ReadReport) -> None:
        self.inner, self.report = inner, report
        self.connections = inner.connections

    def messages(self, topics: set[str]) -> Iterator[tuple[Connection, int, bytes]]:
        for conn, ts, raw in self.inner.messages(topics):
            try:
                yield conn, ts, limits.decompress_frames(raw, "zstd", limits.MAX_MESSAGE_BYTES)
            except ChunkError as exc:
                self.report.skipped[f"compressed message not read ({conn.topic})"] += 1
                self.report.note(f"compressed message on {conn.topic} skipped: {exc}")


def open_indexed(target: Path, files: list[Path], report: ReadReport) -> RawSource:
    """Through the index (rosbags), else by scanning the files (a damaged bag)."""
    from rosbags.rosbag2 import ReaderError

    try:
        return IndexedSource(target, report, files)
    except (ReaderError, OSError, ValueError, KeyError, sqlite3.DatabaseError) as exc:
        first_error = f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # apsw errors and other storage-level failures
        first_error = f"{type(exc).__name__}: {exc}"
    report.recovered = True
    report.note(f"bag index unreadable ({first_error}); recovered by scanning the file")
    scan = McapScanSource if report.storage == "mcap" else SqliteScanSource
    sources: list[RawSource] = [scan(f, report) for f in files]
    return sources[0] if len(sources) == 1 else ChainSource(sources)


def open_compressed(path: Path, info: dict[str, Any], mode: str, report: ReadReport) -> RawSource:
    """A bag recorded with rosbag2 compression (mode file or message, format zstd), read through
    a temporary uncompressed view of it: whole files decompressed there within
    :func:`file_decompression_limit`, or (mode message) linked, each message decompressed within
    MAX_MESSAGE_BYTES as it is read."""
    import tempfile

    from ruamel.yaml import YAML

    fmt = str(info.get("compression_format") or "")
    if fmt != "zstd":
        raise BagError(f"{path}: compression format {fmt!r} is not read (only zstd)")
    files = listed_files(path, info)
    if not files:
        raise BagError(f"{path}/metadata.yaml lists no files")
    tmp = tempfile.TemporaryDirectory(prefix="hsnn-bag-")
    view = Path(tmp.name)
    try:
        names = []
        for src in files:
            if not src.is_file():
                raise BagError(f"{path}: {src.name} is listed in metadata.yaml but missing")
            if mode == "file":
                name = src.name.removesuffix(".zstd")
                try:
                    size = src.stat().st_size
                    bounded_decompress_file(src, view / name, file_decompression_limit(size))
                except ChunkError as exc:
                    raise BagError(f"{path}: {exc}") from exc
            else:
                name = src.name
                (view / name).symlink_to(src.resolve())
            names.append(name)
        plain = {**info, "compression_mode": "", "compression_format": "", "files": []}
        plain["relative_file_paths"] = names
        with (view / "metadata.yaml").open("w") as f:
            YAML(typ="safe").dump({"rosbag2_bagfile_information": plain}, f)
        report.storage = storage_kind(view / names[0])
        source = open_indexed(view, [view / n for n in names], report)
    except BaseException:
        tmp.cleanup()
        raise
    report.note(f"zstd compression (mode {mode}) decompressed within bounds")
    if mode == "message":
        source = DecompressedMessages(source, report)
    source.keep = tmp  # the view lives as long as the source
    return source


def open_source(path: Path | str, report: ReadReport | None = None) -> tuple[RawSource, ReadReport]:
    """Open a bag for reading raw messages, recovering from damage where possible.

    A split bag (several files) is read whole, in recording order; a zstd-compressed one
    (compression_mode file or message) is decompressed within bounds."""
    path = Path(path)
    report = report or ReadReport(str(path))
    if not path.exists():
        raise BagError(f"no bag at {path}: it does not exist")
    meta = path / "metadata.yaml"
    has_meta = path.is_dir() and meta.is_file()
    info = read_metadata(meta) if has_meta else {}
    mode = compression_mode(info)
    if mode in ("file", "message"):
        return open_compressed(path, info, mode, report), report
    if mode:
        raise BagError(f"{meta}: unknown compression_mode {mode!r}")
    if path.is_dir():
        files = find_storage_files(path)
        if not files:
            raise BagError(f"{path} is not a rosbag2: no metadata.yaml and no .mcap/.db3 file")
        listed = [f for f in listed_files(path, info) if f.is_file()]
        files = listed or files
    else:
        files = [path]
    report.storage = storage_kind(files[0])
    target = path
    if path.is_dir() and not has_meta:
        report.note("no metadata.yaml (recording not closed?): read the storage files directly")
        if len(files) > 1:
            report.note(f"bag split into {len(files)} files: all are read, in file-name order")
            sources = [open_indexed(f, [f], report) for f in files]
            return ChainSource(sources), report
        target = files[0]
    return open_indexed(target, files, report), report
