"""The fused front end (hsnn_perception.core.events.fused): payload -> model-input window in
compiled passes gives, packet by packet, what the reference path gives (PacketStreamDecoder.decode,
the time-range check, model_input_chain, EventWindower.push): the same windows (ids, times,
frames, event counts), windower counters, decoder drops, EVT3 state resets, lost packets and
errors, on random mono and EVT3 streams with every mapping mode, ROIs, sequence gaps, EVT3 words
cut anywhere and junk words, 24-bit time rollover, time jumps and wild packets."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hsnn_perception.core.events import fused
from hsnn_perception.core.events.binning import EventWindower
from hsnn_perception.core.events.codecs import encode_packet, make_events
from hsnn_perception.core.events.filters import MappedWindower, model_input_chain
from hsnn_perception.core.events.stream import EventTimeRangeError, PacketStreamDecoder

COUNTERS = (
    "late_events",
    "out_of_range_events",
    "skipped_windows",
    "reorigins",
    "windows_emitted",
    "held_packets",
    "mapped_out_events",
)


def _events(rng: np.random.Generator, n: int, t0: int, span: int, width: int, height: int):
    """Sorted events, a few beyond the sensor (x up to width + 4)."""
    t = t0 + np.sort(rng.integers(0, span, n))
    ev = make_events(
        t, rng.integers(0, width + 4, n), rng.integers(0, height + 1, n), rng.integers(0, 2, n)
    )
    return ev[np.lexsort((ev["x"], ev["y"], ev["t"]))]  # runs of one row and time: vectors


def _mono_words(ev: np.ndarray, rng: np.random.Generator, base_ns: int) -> bytes:
    """Mono words of ``ev`` in their order, with sub-microsecond offsets."""
    dt = (ev["t"].astype(np.int64) * 1000 - base_ns).astype(np.uint64)
    dt += rng.integers(0, 1000, ev.size).astype(np.uint64)
    words = (
        (ev["p"].astype(np.uint64) << np.uint64(63))
        | (ev["y"].astype(np.uint64) << np.uint64(48))
        | (ev["x"].astype(np.uint64) << np.uint64(32))
        | dt
    )
    return words.astype("<u8").tobytes()


def mono_stream(seed: int, width: int, height: int, rough: bool) -> list[tuple]:
    """(payload, "mono", time_base, width, height, seq) packets: advancing, with ``rough``
    packets unsorted, late, jumping ahead or back, far away, beyond the sensor, empty."""
    rng = np.random.default_rng(seed)
    t, seq, out = 50_000 + int(rng.integers(0, 5_000)), 10, []
    for _ in range(int(rng.integers(1, 25))):
        kind = rng.choice(["ok"] * 6 + ["unsorted", "late", "jump", "back", "wild", "empty"])
        kind = kind if rough else "ok"
        n = 0 if kind == "empty" else int(rng.integers(1, 60))
        if kind == "jump":
            t += int(rng.integers(100, 5_000))
        elif kind == "back":
            t -= int(rng.integers(100, 5_000))
        ev = _events(rng, n, t + (1 << 40 if kind == "wild" else 0), 80, width, height)
        if not rough:
            ev = ev[(ev["x"] < width) & (ev["y"] < height)]
        if kind == "unsorted":
            ev = ev[rng.permutation(ev.size)]
        if kind == "late" and n:
            ev["t"][: n // 2] -= int(rng.integers(30, 300))
        base = int(ev["t"].min()) * 1000 if ev.size else 0
        out.append((_mono_words(ev, rng, base), "mono", base, width, height, seq))
        seq += 1 + int(rough and rng.random() < 0.1)
        if kind != "wild":  # a clean stream's next packet starts after this one
            t += int(rng.integers(0 if rough else 80, 160))
    return out


def evt3_stream(seed: int, width: int, height: int, rough: bool) -> list[tuple]:
    """EVT3 words of events crossing the 2^24 us rollover (with a restart at another time
    when ``rough``), junk words mixed in when ``rough``, cut into packets at random words; seq
    gaps and a packet of another geometry now and then."""
    rng = np.random.default_rng(seed)
    t0 = (1 << 24) * int(rng.integers(1, 4)) - int(rng.integers(0, 3_000))
    parts = []
    for segment in range(1 + int(rough and rng.random() < 0.5)):
        start = t0 + (int(rng.integers(-3_000, 9_000)) if segment else 0)
        ev = _events(rng, int(rng.integers(1, 300)), start, 6_000, width, height)
        _, payload = encode_packet(ev, "evt3", use_vectors=bool(rng.random() < 0.7))
        parts.append(np.frombuffer(payload, "<u2").copy())
    words = np.concatenate(parts)
    if rough:
        junk = rng.choice(
            [
                0x6000 | int(rng.integers(0, 4096)),  # TIME_LOW out of order: time backwards
                0xA000 | int(rng.integers(0, 4096)),  # EXT_TRIGGER
                0x1000 | int(rng.integers(0, 4096)),  # unknown code
                0x9000,  # padding
                0x5000 | int(rng.integers(0, 256)),  # VECT_8, perhaps without a base
                0x2000 | int(rng.integers(0, 4096)),  # ADDR_X anywhere (beyond the sensor too)
                0x4FFF,  # VECT_12 of every pixel
                0x3000 | int(rng.integers(0, 4096)),  # VECT_BASE_X, bases beyond 11 bits later
            ],
            int(rng.integers(0, 12)),
        ).astype(np.uint16)
        words = np.insert(words, rng.integers(0, words.size + 1, junk.size), junk)
    cuts = np.sort(rng.choice(np.arange(1, words.size), min(words.size - 1, 12), replace=False))
    tb = int(t0) * 1000
    out, seq = [], 5
    for part in np.split(words, cuts):
        geometry = (width, height)
        if rough and rng.random() < 0.05:
            geometry = (width + 3, height)
        out.append((part.tobytes(), "evt3", tb, *geometry, seq))
        seq += 1 + int(rough and rng.random() < 0.1)
    return out


def _outcome(fn, *args, **kwargs):
    try:
        n, windows = fn(*args, **kwargs)
    except ValueError as exc:  # decode, time range and binning errors are all ValueErrors
        return type(exc).__name__, str(exc)
    return n, [(w.window_id, w.t_start_us, w.t_end_us, w.n_events, w.frames) for w in windows]


def _same(got, want) -> None:
    if isinstance(want[0], str) or isinstance(got[0], str):
        assert got == want
        return
    assert got[0] == want[0]
    assert [w[:4] for w in got[1]] == [w[:4] for w in want[1]]
    for a, b in zip(got[1], want[1], strict=True):
        assert a[4].dtype == b[4].dtype == np.uint16
        np.testing.assert_array_equal(a[4], b[4])


def check_equal(packets, sensor, model, mapping, roi, window, strict=True, time_max=None) -> int:
    """Feed ``packets`` to the fused path and to the reference path; compare after every packet.
    Returns how many packets the kernels windowed (the rest went the reference way)."""
    bin_us, n_bins, gap, heal = window
    time_range = (0, (1 << 62) if time_max is None else time_max)

    def make(engine: str):
        chain = model_input_chain(sensor, model, mapping, roi)
        windower = EventWindower(
            bin_us, n_bins, *model, *model, max_gap_windows=gap, heal_packets=heal, engine=engine
        )
        return PacketStreamDecoder(strict_standalone=strict), MappedWindower(chain, windower)

    (dec_f, win_f), (dec_r, win_r) = make("numba"), make("numpy")

    def reference(payload, encoding, tb, width, height, seq):
        events = dec_r.decode(payload, encoding, tb, width, height, seq=seq)
        if events.size:
            tmin, tmax = int(events["t"].min()), int(events["t"].max())
            if not time_range[0] <= tmin <= tmax <= time_range[1]:
                raise EventTimeRangeError(tmin, tmax, time_range)
        return events.size, win_r.push(events)

    calls = []
    kernel = fused.push_payload

    def spy(*args, **kwargs):
        got = kernel(*args, **kwargs)
        calls.append(got is not None)
        return got

    fused.push_payload = spy
    try:
        for payload, encoding, tb, width, height, seq in packets:
            packet = (payload, encoding, tb, width, height)
            got = _outcome(dec_f.decode_into, win_f, *packet, seq=seq, time_range=time_range)
            want = _outcome(reference, *packet, seq)
            _same(got, want)
            assert [getattr(win_f, c) for c in COUNTERS] == [getattr(win_r, c) for c in COUNTERS]
            assert win_f.pending_window_id == win_r.pending_window_id
            assert dec_f.drops == dec_r.drops
            assert list(dec_f.drops) == list(dec_r.drops)  # the order /diagnostics lists them
            assert (dec_f.resets, dec_f.seq_gaps.lost) == (dec_r.resets, dec_r.seq_gaps.lost)
            assert dec_f._state == dec_r._state
    finally:
        fused.push_payload = kernel
    _same(_outcome(lambda w: (0, w.flush()), win_f), _outcome(lambda w: (0, w.flush()), win_r))
    return sum(calls)


MAPPINGS = st.sampled_from(
    [
        ((12, 10), (6, 5), "scale", ()),  # integer factor: block pooling
        ((12, 10), (5, 3), "scale", ()),  # non-integer in both axes
        ((9, 16), (4, 4), "crop", ()),
        ((9, 16), (4, 4), "pad", ()),
        ((16, 9), (3, 5), "crop", ()),
        ((16, 9), (3, 5), "pad", ()),
        ((12, 10), (4, 3), "scale", (2, 1, 7, 9)),  # a ROI, then a non-integer scale
        ((12, 10), (3, 3), "crop", (1, 2, 8, 6)),
        ((12, 10), (12, 10), "scale", ()),  # the identity
    ]
)
WINDOWS = st.tuples(st.integers(1, 300), st.integers(1, 4), st.integers(0, 4), st.integers(1, 4))


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    mapping=MAPPINGS,
    window=WINDOWS,
    rough=st.booleans(),
    strict=st.booleans(),
)
def test_fused_mono_equals_decode_map_window(seed, mapping, window, rough, strict) -> None:
    sensor, model, mode, roi = mapping
    packets = mono_stream(seed, sensor[1], sensor[0], rough)
    check_equal(packets, sensor, model, mode, roi, window, strict)


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), mapping=MAPPINGS, window=WINDOWS, rough=st.booleans())
def test_fused_evt3_equals_decode_map_window(seed, mapping, window, rough) -> None:
    sensor, model, mode, roi = mapping
    packets = evt3_stream(seed, sensor[1], sensor[0], rough)
    check_equal(packets, sensor, model, mode, roi, window)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), encoding=st.sampled_from(["mono", "evt3"]))
def test_time_range_refusals_are_the_references(seed, encoding) -> None:
    """Packets beyond the consumer's time range are refused (EventTimeRangeError) as the
    reference refuses them; the kernels never count a packet they could not check first."""
    sensor = (12, 10)
    stream = mono_stream if encoding == "mono" else evt3_stream
    packets = stream(seed, sensor[1], sensor[0], True)
    check_equal(packets, sensor, (6, 5), "scale", (), (50, 2, 2, 2), time_max=(1 << 24) + 3_000)


@pytest.mark.parametrize("encoding", ["mono", "evt3"])
def test_clean_streams_run_in_the_kernels(encoding) -> None:
    """On a clean stream only the first packet (it sets the origin; EVT3: it sets the time)
    goes the reference way: the kernels window the others."""
    stream = mono_stream if encoding == "mono" else evt3_stream
    for seed in range(5):
        packets = stream(seed, 16, 9, False)
        used = check_equal(packets, (9, 16), (4, 4), "crop", (), (200, 4, 2, 3))
        assert used >= len(packets) - 2, (seed, used, len(packets))


def test_evt3_events_beyond_the_sensor_do_not_move_the_bin() -> None:
    """A vector word wholly beyond the sensor at a later bin counts nothing and places nothing
    in time: an event after it at an earlier time (not backwards: nothing was kept at the later
    time) still goes to its own bin (a case the random streams found)."""
    words = [
        [0x8000, 0x6000 | 100, 0x0003, 0x2004],  # t 100 (bin 1): sets the origin
        [0x6000 | 350, 0x3000 | 20, 0x4FFF, 0x6000 | 210, 0x2005],  # x 20..31 at t 350; t 210
    ]
    packets = [(np.array(w, "<u2").tobytes(), "evt3", 0, 10, 12, k) for k, w in enumerate(words)]
    assert check_equal(packets, (12, 10), (12, 10), "scale", (), (100, 4, 2, 2)) == 1


def test_libcaer_goes_the_reference_way() -> None:
    ev = make_events([100, 150, 400], [1, 2, 3], [1, 2, 3], [0, 1, 1])
    tb, payload = encode_packet(ev, "libcaer", 10, 12)
    packets = [(payload, "libcaer", tb, 10, 12, 0), (payload, "libcaer", tb + 10**6, 10, 12, 1)]
    assert check_equal(packets, (12, 10), (6, 5), "scale", (), (100, 2, 2, 2)) == 0
