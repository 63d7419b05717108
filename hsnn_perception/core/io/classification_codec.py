"""hsnn_perception/Classification serialized without building the message: the classifier
publishes these bytes (one struct call per field group instead of rclpy's per-field setters,
checks and conversion to C, the cost of a classification hop run cold between windows).
Checked against rclpy's serializer in the tests."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from hsnn_perception.core.io.cdr import CDR_LE, align, write_string


def encode_classification(
    *,
    stamp: tuple[int, int],
    frame_id: str,
    window_id: int,
    window_stamp: tuple[int, int],
    window_duration: tuple[int, int],
    class_id: int,
    label: str,
    score: float,
    scores: Sequence[float] | NDArray[np.floating[Any]],
) -> bytes:
    """The serialized Classification. Times are (sec, nanosec) pairs as in
    builtin_interfaces; ``scores`` is written as float32."""
    values = np.ascontiguousarray(scores, dtype="<f4")
    buf = bytearray(CDR_LE)
    buf += struct.pack("<iI", *stamp)
    write_string(buf, frame_id)
    align(buf, 8)
    buf += struct.pack("<Q", window_id)
    buf += struct.pack("<iIiIi", *window_stamp, *window_duration, class_id)
    write_string(buf, label)
    align(buf, 4)
    buf += struct.pack("<fI", score, values.size)
    buf += values.tobytes()
    return bytes(buf)
