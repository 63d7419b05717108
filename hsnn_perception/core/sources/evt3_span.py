"""What a driver passing EVT3 payloads through needs of them, without decoding them: how many
events each packet holds and the sensor times of its first and last, carried from packet to packet
as the EVT3 decoders carry their state (a raw stream is cut anywhere).

It follows the decoders' rules (:mod:`hsnn_perception.core.events.evt3_format`: 24-bit rollover,
epoch from the time base, events without time, row or vector base left out, events beyond the
sensor left out) in one compiled pass that writes no events: several times cheaper than decoding.
Unlike the decoders it keeps events that go back in time inside a packet, so a glitching stream
may count a few more than its consumer keeps. numba compiles the pass; without numba
:func:`available` is False and callers decode instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from hsnn_perception.core.events.codecs import Evt3State
from hsnn_perception.core.events.evt3_format import EVT3_EPOCH_US, choose_epoch

_KERNEL: list[Callable[..., None]] = []

# span_words info slots
_N, _FIRST, _LAST, _FIRST_OK, _FIRST_TH, _TH, _TL, _Y, _BASE, _POL, _ROLL = range(11)
_INFO_SIZE = 11


def span_words(
    words: NDArray[Any],
    th: int,
    tl: int,
    y: int,
    base: int,
    pol: int,
    width: int,
    height: int,
    info: NDArray[Any],
) -> None:
    """One pass over EVT3 words from the carried state (-1 = unknown): events counted, 24-bit
    times (with rollovers above bit 24) of the first and the latest kept event, the state after
    (slots above). Plain Python on purpose: numba compiles it."""
    roll = 0
    n = 0
    first = -1
    last = -1
    first_ok = -1  # first placed event, in or out of the sensor: what the decoder's epoch uses
    first_th = -1
    for i in range(words.size):
        w = int(words[i])
        code = w >> 12
        v = w & 0xFFF
        if code == 8:  # TIME_HIGH; a drop of more than 10 units is a 24-bit rollover
            if th >= 0 and th - v > 10:
                roll += 1
            if first_th < 0:
                first_th = v
            th = v
        elif code == 6:  # TIME_LOW
            tl = v
        elif code == 0:  # EVT_ADDR_Y
            y = v
        elif code == 3:  # VECT_BASE_X
            base = v & 0x7FF
            pol = v >> 11
        elif code == 2 or code == 4 or code == 5:  # EVT_ADDR_X, VECT_12, VECT_8
            placed = th >= 0 and tl >= 0 and y >= 0
            k = 0
            if code == 2:
                if placed and (v & 0x7FF) < width and y < height:
                    k = 1
            else:
                bits = 12 if code == 4 else 8
                if base >= 0:
                    if placed and y < height:
                        for b in range(bits):
                            if (v >> b) & 1 and base + b < width:
                                k += 1
                    base += bits
                else:
                    placed = False
            t24 = (roll << 24) | (th << 12) | tl
            if placed and first_ok < 0:
                first_ok = t24
            if k:
                if first < 0:
                    first = t24
                if t24 > last:
                    last = t24
                n += k
    info[_N] = n
    info[_FIRST] = first
    info[_LAST] = last
    info[_FIRST_OK] = first_ok
    info[_FIRST_TH] = first_th
    info[_TH] = th
    info[_TL] = tl
    info[_Y] = y
    info[_BASE] = base
    info[_POL] = pol
    info[_ROLL] = roll


def available() -> bool:
    """Whether the compiled pass can run (numba installed)."""
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def _kernel() -> Callable[..., None]:
    if not _KERNEL:
        import numba

        try:
            _KERNEL.append(numba.njit(cache=True, nogil=True)(span_words))
        except RuntimeError:  # no writable cache location: compile per process
            _KERNEL.append(numba.njit(cache=False, nogil=True)(span_words))
    return _KERNEL[0]


class Evt3Span:
    """Counts and times the events of consecutive EVT3 packets of one stream (state carried)."""

    def __init__(self) -> None:
        self.state = Evt3State()
        self._info = np.zeros(_INFO_SIZE, np.int64)
        # Compiled (or loaded from numba's cache) now, not on the first packet of a paced replay.
        _kernel()(np.zeros(0, np.uint16), -1, -1, -1, -1, 0, 1, 1, self._info)

    def reset(self) -> None:
        """A packet is missing: the carried state is stale (as the decoders reset theirs)."""
        self.state = Evt3State()

    def scan(
        self, payload: bytes, time_base_ns: int, width: int, height: int
    ) -> tuple[int, int, int]:
        """(events, first us, last us) of one packet's payload (times 0 when it holds none);
        ``width`` / ``height`` 0: unchecked."""
        st, info = self.state, self._info
        raw = np.frombuffer(payload, np.uint8)
        words = raw[: raw.size - raw.size % 2].view("<u2")
        _kernel()(
            words,
            *st.words_state(),
            width if width > 0 else 1 << 16,
            height if height > 0 else 1 << 16,
            info,
        )
        if st.time_high is not None:
            epoch = st.epoch
        else:
            epoch = choose_epoch(
                time_base_ns,
                int(info[_FIRST_OK]) if info[_FIRST_OK] >= 0 else None,
                int(info[_FIRST_TH]) << 12 if info[_FIRST_TH] >= 0 else None,
            )
        th, tl, y, base, pol, roll = (int(info[k]) for k in (_TH, _TL, _Y, _BASE, _POL, _ROLL))
        st.carry(th, tl, y, base, pol, epoch, roll)
        n = int(info[_N])
        if not n:
            return 0, 0, 0
        offset = epoch * EVT3_EPOCH_US
        return n, int(info[_FIRST]) + offset, int(info[_LAST]) + offset
