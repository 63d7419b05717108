"""Bounds on what reading a bag may cost (see docs/hostile_inputs.md), and decompression within
them.

An MCAP chunk is decompressed only if it declares at most :data:`MAX_CHUNK_BYTES`, and never to
more than it declares (a 33 KB zstd "bomb" stops at its declared size instead of expanding to
gigabytes); a stored message larger than :data:`MAX_MESSAGE_BYTES` is skipped. rosbag2's own zstd
compression (compression_mode file or message) is decompressed within limits too
(:func:`bounded_decompress_file`, :data:`MAX_MESSAGE_BYTES`), never by rosbags.

The readers look the limits up on this module when they use them (``limits.MAX_MESSAGE_BYTES``),
so one assignment here changes them for every reader.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from hsnn_perception.core.errors import RecordingError

# What one MCAP chunk may decompress to. rosbag2 writes chunks of ~1-4 MiB (rosbags: 1 MiB), so
# 128 MiB leaves room for unusual recorders while keeping a hostile chunk from taking gigabytes.
MAX_CHUNK_BYTES = 128 << 20
# One stored message (an event packet of a few ms is tens of KB; 64 MiB = 8M events).
MAX_MESSAGE_BYTES = 64 << 20
# metadata.yaml of a real bag is a few KB.
MAX_METADATA_BYTES = 1 << 20
MCAP_COMPRESSIONS = ("", "zstd", "lz4")
# A whole bag file compressed with zstd (rosbag2 compression_mode file) is decompressed to a
# temporary directory, at most this many times its size (rosbag2's own files compress a few
# times; a zstd bomb some 30000 times) and never beyond MAX_FILE_BYTES.
MAX_FILE_RATIO = 100
MIN_FILE_LIMIT = 256 << 20
MAX_FILE_BYTES = 16 << 30


class ChunkError(RecordingError, ValueError):
    """An MCAP chunk that cannot be used: over the size limit, bad compressed data, checksum."""


def bounded_decompress(
    data: bytes, compression: str, declared: int, limit: int = MAX_CHUNK_BYTES
) -> bytes:
    """Decompress an MCAP chunk to exactly its ``declared`` uncompressed size, refusing before any
    work a declaration above ``limit`` and stopping as soon as the output would exceed it."""
    if declared < 0 or declared > limit:
        raise ChunkError(f"chunk declares {declared} uncompressed bytes (limit {limit})")
    if compression == "":
        out = bytes(data)
    elif compression in ("zstd", "lz4"):
        out = decompress_frames(data, compression, declared)
    else:
        raise ChunkError(f"unknown chunk compression {compression!r}")
    if len(out) != declared:
        raise ChunkError(f"chunk holds {len(out)} bytes, it declares {declared}")
    return out


def _zstd() -> Any:
    try:
        from compression import zstd  # Python >= 3.14
    except ImportError:
        from backports import zstd
    return zstd


def decompress_frames(data: bytes, compression: str, declared: int) -> bytes:
    """Concatenated zstd/lz4 frames, never producing more than ``declared + 1`` bytes."""
    if compression == "zstd":
        zstd = _zstd()
        new, errors = zstd.ZstdDecompressor, (zstd.ZstdError,)
    else:
        from lz4.frame import LZ4FrameDecompressor

        new, errors = LZ4FrameDecompressor, (RuntimeError,)
    parts: list[bytes] = []
    total, rest = 0, bytes(data)
    try:
        while rest:
            dec = new()
            out = dec.decompress(rest, max_length=declared - total + 1)
            total += len(out)
            parts.append(out)
            if total > declared:
                raise ChunkError(
                    f"{compression} data expands beyond the {declared} bytes the chunk declares "
                    "(decompression bomb?)"
                )
            if not dec.eof:
                raise ChunkError(f"{compression} data is cut off")
            rest = dec.unused_data
    except errors as exc:
        raise ChunkError(f"bad {compression} data: {exc}") from exc
    return b"".join(parts)


def file_decompression_limit(compressed_bytes: int) -> int:
    """What a zstd-compressed bag file may expand to: :data:`MAX_FILE_RATIO` times its size (at
    least :data:`MIN_FILE_LIMIT`), never more than :data:`MAX_FILE_BYTES`."""
    return min(MAX_FILE_BYTES, max(MIN_FILE_LIMIT, MAX_FILE_RATIO * int(compressed_bytes)))


def bounded_decompress_file(src: Path, dst: Path, limit: int) -> int:
    """Stream the zstd frames of ``src`` into ``dst``, stopping with a :class:`ChunkError` as soon
    as the output would exceed ``limit`` bytes (a zstd bomb), or on bad or cut-off data. Returns
    the bytes written."""
    zstd = _zstd()
    step = 1 << 22
    total = 0
    try:
        with src.open("rb") as fin, dst.open("wb") as fout:
            dec, started = zstd.ZstdDecompressor(), False
            while True:
                if dec.eof:  # next frame: what the last call left over, then the file
                    rest = dec.unused_data
                    dec, started = zstd.ZstdDecompressor(), False
                    out = dec.decompress(rest, max_length=step) if rest else b""
                    started = bool(rest)
                elif dec.needs_input:
                    chunk = fin.read(step)
                    if not chunk:
                        if started:
                            raise ChunkError(f"{src.name}: zstd data is cut off")
                        break
                    out, started = dec.decompress(chunk, max_length=step), True
                else:
                    out = dec.decompress(b"", max_length=step)
                total += len(out)
                if total > limit:
                    raise ChunkError(
                        f"{src.name} expands beyond {limit} bytes ({src.stat().st_size} "
                        "compressed; decompression bomb?)"
                    )
                fout.write(out)
    except zstd.ZstdError as exc:
        raise ChunkError(f"{src.name}: bad zstd data: {exc}") from exc
    return total


_BOUNDED_INSTALLED = False


def _bounded_by_name(compression: str, data: bytes, size: int) -> bytes:
    return bounded_decompress(data, compression, size)


def install_bounded_decompressors() -> None:
    """Make the rosbags MCAP reader decompress through :func:`bounded_decompress`.

    rosbags decompresses a whole chunk before comparing it with the size the chunk declares, so
    a small chunk could expand to gigabytes first; its decompressor table is the one place that
    sees both the data and the declared size. Process-wide, and only ever stricter.
    """
    global _BOUNDED_INSTALLED
    if _BOUNDED_INSTALLED:
        return
    from rosbags.rosbag2 import storage_mcap

    for name in MCAP_COMPRESSIONS:
        storage_mcap.DECOMPRESSORS[name] = partial(_bounded_by_name, name)
    _BOUNDED_INSTALLED = True
