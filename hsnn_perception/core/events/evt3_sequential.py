"""The sequential EVT3 decoder: one pass over the words, compiled by numba when it is installed
(several times faster than the vectorised decoder: no look-ups). It gives the same events,
trigger events, drop counts, errors and carried state as :mod:`.evt3_vectorised`
(``test/core/events/test_evt3.py``); :func:`evt3_engine` chooses between them
(``HSNN_EVT3_ENGINE=numpy`` forces the vectorised one). numba is imported only when the kernel is
first compiled.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from hsnn_perception.core.events.codecs import (
    TRIGGER_DTYPE,
    Array,
    Drops,
    EventCodecError,
    Evt3State,
    count_drop,
    finish_events,
    whole_words,
)
from hsnn_perception.core.events.evt3_format import (
    EVT3_ADDR_X,
    EVT3_EPOCH_US,
    EVT3_EXT_TRIGGER,
    EVT3_VECT_8,
    EVT3_VECT_12,
    NO_BASE,
    NO_TIME,
    NO_Y,
    TRIGGER_NO_TIME,
    choose_epoch,
    unknown_code,
    unplaced,
)

EVT3_ENGINES = ("auto", "numba", "numpy")
_KERNEL: list[Callable[..., None]] = []

# scan_words info slots
_I_UNKNOWN, _I_FIRST_UNKNOWN = 0, 1
_I_NO_TIME, _I_FIRST_NO_TIME = 2, 3
_I_NO_Y, _I_FIRST_NO_Y = 4, 5
_I_NO_BASE, _I_FIRST_NO_BASE = 6, 7
_I_TH, _I_TL, _I_Y, _I_BASE, _I_POL, _I_ROLL = 8, 9, 10, 11, 12, 13
_I_FIRST_TH, _I_FIRST_T24, _I_N = 14, 15, 16
_I_TRIG, _I_TRIG_NO_TIME, _I_FIRST_TRIG_NO_TIME = 17, 18, 19
_INFO_SIZE = 20


def scan_words(
    words: Array,
    th: int,
    tl: int,
    y: int,
    base: int,
    pol: int,
    out_t: Array,
    out_x: Array,
    out_y: Array,
    out_p: Array,
    trig_t: Array,
    trig_v: Array,
    info: Array,
) -> None:
    """One pass over EVT3 words (state -1 = unknown); events go to ``out_*``, trigger events
    (24-bit time, word value) to ``trig_*``, the rest to ``info`` (slots ``_I_*``). Plain Python
    on purpose: numba compiles it."""
    for k in range(_INFO_SIZE):
        info[k] = 0
    info[_I_FIRST_UNKNOWN] = -1
    info[_I_FIRST_NO_TIME] = -1
    info[_I_FIRST_NO_Y] = -1
    info[_I_FIRST_NO_BASE] = -1
    info[_I_FIRST_TH] = -1
    info[_I_FIRST_T24] = -1
    info[_I_FIRST_TRIG_NO_TIME] = -1
    roll = 0
    n = 0
    m = 0
    for i in range(words.size):
        w = int(words[i])
        code = w >> 12
        v = w & 0xFFF
        if code == 8:  # TIME_HIGH; a drop of more than 10 units is a 24-bit rollover
            if th >= 0 and th - v > 10:
                roll += 1
            if info[_I_FIRST_TH] < 0:
                info[_I_FIRST_TH] = v
            th = v
        elif code == 6:  # TIME_LOW
            tl = v
        elif code == 0:  # EVT_ADDR_Y
            y = v
        elif code == 3:  # VECT_BASE_X
            base = v & 0x7FF
            pol = v >> 11
        elif code == 2 or code == 4 or code == 5:  # EVT_ADDR_X, VECT_12, VECT_8
            vector = code != 2
            ok = True
            if th < 0 or tl < 0:
                info[_I_NO_TIME] += 1
                if info[_I_FIRST_NO_TIME] < 0:
                    info[_I_FIRST_NO_TIME] = i
                ok = False
            if y < 0:
                info[_I_NO_Y] += 1
                if info[_I_FIRST_NO_Y] < 0:
                    info[_I_FIRST_NO_Y] = i
                ok = False
            if vector and base < 0:
                info[_I_NO_BASE] += 1
                if info[_I_FIRST_NO_BASE] < 0:
                    info[_I_FIRST_NO_BASE] = i
                ok = False
            t24 = (roll << 24) | (th << 12) | tl
            if ok and info[_I_FIRST_T24] < 0:
                info[_I_FIRST_T24] = t24
            if not vector:
                if ok:
                    out_t[n] = t24
                    out_x[n] = v & 0x7FF
                    out_y[n] = y
                    out_p[n] = v >> 11
                    n += 1
            else:
                bits = 12 if code == 4 else 8
                if ok:
                    for b in range(bits):
                        if (v >> b) & 1:
                            out_t[n] = t24
                            out_x[n] = min(base + b, 0xFFFF)
                            out_y[n] = y
                            out_p[n] = pol
                            n += 1
                if base >= 0:
                    base += bits
        elif code == 10:  # EXT_TRIGGER at the current time
            if th < 0 or tl < 0:
                info[_I_TRIG_NO_TIME] += 1
                if info[_I_FIRST_TRIG_NO_TIME] < 0:
                    info[_I_FIRST_TRIG_NO_TIME] = i
            else:
                trig_t[m] = (roll << 24) | (th << 12) | tl
                trig_v[m] = v
                m += 1
        elif not (code == 7 or code == 9 or code == 14 or code == 15):
            info[_I_UNKNOWN] += 1
            if info[_I_FIRST_UNKNOWN] < 0:
                info[_I_FIRST_UNKNOWN] = i
    info[_I_TH] = th
    info[_I_TL] = tl
    info[_I_Y] = y
    info[_I_BASE] = base
    info[_I_POL] = pol
    info[_I_ROLL] = roll
    info[_I_N] = n
    info[_I_TRIG] = m


def _kernel() -> Callable[..., None]:
    if not _KERNEL:
        import numba

        try:
            _KERNEL.append(numba.njit(cache=True, nogil=True)(scan_words))
        except RuntimeError:  # no writable cache location: compile per process
            _KERNEL.append(numba.njit(cache=False, nogil=True)(scan_words))
    return _KERNEL[0]


def evt3_engine(engine: str = "auto") -> str:
    """The EVT3 decoder that runs: ``numba`` when numba is installed (unless
    ``HSNN_EVT3_ENGINE=numpy``), else ``numpy``."""
    if engine not in EVT3_ENGINES:
        raise EventCodecError(f"evt3 engine must be one of {EVT3_ENGINES}, got {engine!r}")
    if engine == "auto":
        engine = os.environ.get("HSNN_EVT3_ENGINE", "auto")
        if engine not in EVT3_ENGINES:
            engine = "auto"
    if engine in ("auto", "numba"):
        try:
            import numba  # noqa: F401
        except ImportError:
            if engine == "numba":
                raise EventCodecError(
                    "evt3 engine 'numba' asked for, numba is not installed"
                ) from None
            return "numpy"
        return "numba"
    return "numpy"


def decode_evt3_sequential(
    raw: NDArray[np.uint8],
    time_base_ns: int,
    width: int,
    height: int,
    strict: bool,
    drops: Drops | None,
    state: Evt3State | None,
    keep_triggers: bool,
) -> tuple[Array, Array | None]:
    """As :func:`~.evt3_vectorised.decode_evt3_vectorised`, in one compiled pass."""
    raw = whole_words(raw, 2, "evt3", strict, drops)
    st = Evt3State() if state is None else state
    words = raw.view("<u2")
    code = words >> 12
    bound = int(
        np.count_nonzero(code == EVT3_ADDR_X)
        + 12 * np.count_nonzero(code == EVT3_VECT_12)
        + 8 * np.count_nonzero(code == EVT3_VECT_8)
    )
    n_trig = int(np.count_nonzero(code == EVT3_EXT_TRIGGER))
    out_t = np.empty(bound, np.int64)
    out_x = np.empty(bound, np.uint16)
    out_y = np.empty(bound, np.uint16)
    out_p = np.empty(bound, np.uint8)
    trig_t = np.empty(n_trig, np.int64)
    trig_v = np.empty(n_trig, np.int64)
    info = np.empty(_INFO_SIZE, np.int64)

    _kernel()(
        words,
        *st.words_state(),
        out_t,
        out_x,
        out_y,
        out_p,
        trig_t,
        trig_v,
        info,
    )
    if info[_I_UNKNOWN]:
        if strict:
            i = int(info[_I_FIRST_UNKNOWN])
            raise unknown_code(int(code[i]), i)
        count_drop(drops, "unknown_code", int(info[_I_UNKNOWN]))
    for count, first, kind in (
        (_I_NO_TIME, _I_FIRST_NO_TIME, NO_TIME),
        (_I_NO_Y, _I_FIRST_NO_Y, NO_Y),
        (_I_NO_BASE, _I_FIRST_NO_BASE, NO_BASE),
    ):
        unplaced(drops, strict, kind, int(info[count]), int(info[first]))
    if keep_triggers:
        first = int(info[_I_FIRST_TRIG_NO_TIME])
        unplaced(drops, strict, TRIGGER_NO_TIME, int(info[_I_TRIG_NO_TIME]), first)
    epoch_known = st.time_high is not None
    if epoch_known:
        epoch = st.epoch
    else:
        epoch = choose_epoch(
            time_base_ns,
            int(info[_I_FIRST_T24]) if info[_I_FIRST_T24] >= 0 else None,
            int(info[_I_FIRST_TH]) << 12 if info[_I_FIRST_TH] >= 0 else None,
        )
    if state is not None:
        th, tl, y, base, pol, roll = (
            int(info[k]) for k in (_I_TH, _I_TL, _I_Y, _I_BASE, _I_POL, _I_ROLL)
        )
        state.carry(th, tl, y, base, pol, epoch, roll)
    triggers = None
    if keep_triggers:
        m = int(info[_I_TRIG])
        triggers = np.empty(m, dtype=TRIGGER_DTYPE)
        triggers["t"] = trig_t[:m] + epoch * EVT3_EPOCH_US
        triggers["edge"] = trig_v[:m] & 1
        triggers["id"] = (trig_v[:m] >> 8) & 0xF
    n = int(info[_I_N])
    t = out_t[:n]
    t += epoch * EVT3_EPOCH_US
    events = finish_events(t, out_x[:n], out_y[:n], out_p[:n], width, height, "evt3", strict, drops)
    return events, triggers
