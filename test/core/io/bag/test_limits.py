"""Tests of hsnn_perception.core.io.bag.limits: decompression that stops at what a chunk declares
and at the limits, on real zstd and lz4 frames (the bombs of whole bags are in
test/core/test_hostile_files.py)."""

from __future__ import annotations

import lz4.frame
import pytest
from backports import zstd

from hsnn_perception.core.io.bag import limits
from hsnn_perception.core.io.bag.limits import (
    ChunkError,
    bounded_decompress,
    bounded_decompress_file,
    file_decompression_limit,
)

DATA = bytes(range(256)) * 64  # 16 KiB that compresses


@pytest.mark.parametrize(
    "compression,packed",
    [("", DATA), ("zstd", zstd.compress(DATA)), ("lz4", lz4.frame.compress(DATA))],
)
def test_a_chunk_decompresses_to_what_it_declares(compression, packed):
    assert bounded_decompress(packed, compression, len(DATA)) == DATA
    # two frames one after the other are one chunk's data too
    if compression:
        assert bounded_decompress(packed + packed, compression, 2 * len(DATA)) == DATA + DATA


@pytest.mark.parametrize("compression", ["zstd", "lz4"])
def test_a_chunk_that_expands_beyond_its_declaration_stops_there(compression):
    packed = zstd.compress(DATA) if compression == "zstd" else lz4.frame.compress(DATA)
    with pytest.raises(ChunkError, match="expands beyond the 1000 bytes"):
        bounded_decompress(packed, compression, 1000)
    with pytest.raises(ChunkError, match=f"holds {len(DATA)} bytes, it declares"):
        bounded_decompress(packed, compression, len(DATA) + 1)
    with pytest.raises(ChunkError, match="cut off|bad"):
        bounded_decompress(packed[: len(packed) // 2], compression, len(DATA))


def test_declarations_over_the_limit_and_unknown_compressions_are_refused():
    with pytest.raises(ChunkError, match=r"declares 134217729 uncompressed bytes \(limit"):
        bounded_decompress(b"", "zstd", limits.MAX_CHUNK_BYTES + 1)
    with pytest.raises(ChunkError, match="declares -1"):
        bounded_decompress(b"", "", -1)
    with pytest.raises(ChunkError, match="unknown chunk compression 'bz2'"):
        bounded_decompress(b"x", "bz2", 1)
    with pytest.raises(ChunkError, match="bad zstd data"):
        bounded_decompress(b"not zstd at all", "zstd", 10)


def test_a_compressed_file_is_streamed_within_its_limit(tmp_path):
    src, dst = tmp_path / "f.zstd", tmp_path / "f"
    src.write_bytes(zstd.compress(DATA) + zstd.compress(DATA))
    assert bounded_decompress_file(src, dst, 2 * len(DATA)) == 2 * len(DATA)
    assert dst.read_bytes() == DATA + DATA
    with pytest.raises(ChunkError, match=f"expands beyond {len(DATA)} bytes"):
        bounded_decompress_file(src, dst, len(DATA))
    src.write_bytes(zstd.compress(DATA)[:-4])
    with pytest.raises(ChunkError, match="cut off"):
        bounded_decompress_file(src, dst, 2 * len(DATA))


def test_file_limit_scales_with_the_file_within_bounds():
    assert file_decompression_limit(1) == limits.MIN_FILE_LIMIT
    assert file_decompression_limit(10 << 20) == limits.MAX_FILE_RATIO * (10 << 20)
    assert file_decompression_limit(1 << 40) == limits.MAX_FILE_BYTES
