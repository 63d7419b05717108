"""The mono codec (hsnn_perception.core.events.mono): its bit layout, both ways, and the
big-endian flag."""

from __future__ import annotations

import struct

from hsnn_perception.core.events.codecs import decode_packet, encode_packet, make_events

W, H = 640, 480


def test_mono_bit_layout_matches_event_camera_msgs() -> None:
    # bit 63 polarity, 48-62 y, 32-47 x, 0-31 dt in ns relative to time_base
    word = (1 << 63) | (479 << 48) | (639 << 32) | 2_500
    payload = struct.pack("<Q", word) + struct.pack("<Q", (3 << 48) | (4 << 32) | 7_999)
    out = decode_packet(payload, "mono", time_base_ns=1_000_000_000, width=W, height=H)
    assert out.tolist() == [(1_000_002, 639, 479, 1), (1_000_007, 4, 3, 0)]
    # and the encoder writes exactly that layout
    tb, enc = encode_packet(make_events([10, 12], [639, 4], [479, 3], [1, 0]), "mono")
    assert tb == 10_000
    assert struct.unpack("<2Q", enc) == (
        (1 << 63) | (479 << 48) | (639 << 32),
        (3 << 48) | (4 << 32) | 2000,
    )


def test_mono_big_endian_flag() -> None:
    word = (1 << 63) | (2 << 48) | (3 << 32) | 4_000
    out = decode_packet(struct.pack(">Q", word), "mono", 0, W, H, is_bigendian=True)
    assert out.tolist() == [(4, 3, 2, 1)]
