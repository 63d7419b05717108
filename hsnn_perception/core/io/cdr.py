"""Writing plain little-endian CDR (XCDR1), the form rclpy's serializer gives on this platform:
what the nodes publish as bytes instead of building message objects (tensor_codec's TensorList,
the classifier's Classification). Alignment counts from the end of the 4-byte encapsulation."""

from __future__ import annotations

import struct

CDR_LE = b"\x00\x01\x00\x00"  # encapsulation: plain CDR (XCDR1), little-endian, no options


def align(buf: bytearray, n: int) -> None:
    """Pad ``buf`` to a multiple of ``n`` bytes after the encapsulation."""
    buf += bytes(-(len(buf) - 4) % n)


def write_string(buf: bytearray, text: str) -> None:
    """A CDR string: its length with the terminating zero, the UTF-8 bytes, the zero."""
    raw = text.encode()
    align(buf, 4)
    buf += struct.pack("<I", len(raw) + 1) + raw + b"\x00"
