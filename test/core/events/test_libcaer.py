"""The libcaer codec (hsnn_perception.core.events.libcaer): its layout, rollover of the 31-bit
timestamp and events without their valid mark."""

from __future__ import annotations

import struct
from collections import Counter

from hsnn_perception.core.events.codecs import decode_packet

W, H = 640, 480


def test_libcaer_layout_and_rollover() -> None:
    # data: bit0 valid, bit1 polarity, bits 2-16 y, bits 17-31 x; then int32 us timestamp.
    def pe(x: int, y: int, p: int, ts: int, valid: int = 1) -> bytes:
        return struct.pack("<Ii", (x << 17) | (y << 2) | (p << 1) | valid, ts)

    payload = pe(5, 6, 1, 2**31 - 10) + pe(7, 8, 0, 3) + pe(9, 9, 1, 4, valid=0)
    drops: Counter = Counter()
    out = decode_packet(payload, "libcaer", 2_000_000, W, H, drops=drops)
    assert out.tolist() == [(2_000 + 2**31 - 10, 5, 6, 1), (2_000 + 2**31 + 3, 7, 8, 0)]
    assert drops == {"invalid_mark": 1}
