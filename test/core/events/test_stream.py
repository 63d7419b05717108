"""Decoding a stream of packets in arrival order (hsnn_perception.core.events.stream): EVT3 state
carried across packets cut anywhere, reset on a lost packet, and the sequence gap counter."""

from __future__ import annotations

import numpy as np
import pytest

from hsnn_perception.core.events.codecs import EventDecodeError, encode_packet, make_events
from hsnn_perception.core.events.stream import PacketStreamDecoder, SequenceGaps

W, H = 640, 480


def test_stream_decoder_carries_evt3_state_across_packets_cut_anywhere() -> None:
    rng = np.random.default_rng(9)
    n = 3000
    t = np.sort(rng.integers(10_000_000, 10_400_000, n))
    events = make_events(t, rng.integers(0, W, n), rng.integers(0, H, n), rng.integers(0, 2, n))
    events = events[np.lexsort((events["x"], events["y"], events["t"]))]
    tb, payload = encode_packet(events, "evt3", W, H, use_vectors=True)
    words = np.frombuffer(payload, np.uint16)
    cuts = np.sort(rng.choice(np.arange(1, words.size), 40, replace=False))
    parts = np.split(words, cuts)
    dec = PacketStreamDecoder()
    got = [dec.decode(p.tobytes(), "evt3", tb, W, H, seq=i) for i, p in enumerate(parts)]
    np.testing.assert_array_equal(np.concatenate(got), events)  # nothing lost at any cut
    assert not dec.drops and dec.resets == 0
    # A lost packet: the state is reset, events before the next time reference are dropped and
    # counted (not misplaced), the stream goes on.
    dec = PacketStreamDecoder()
    kept = [dec.decode(p.tobytes(), "evt3", tb, W, H, seq=i) for i, p in enumerate(parts) if i != 5]
    assert dec.resets == 1 and dec.drops["no_time_reference"] > 0
    before = np.concatenate(kept[:5])
    after = np.concatenate(kept[5:])
    np.testing.assert_array_equal(before, events[: len(before)])
    np.testing.assert_array_equal(after, events[len(events) - len(after) :])  # intact from there
    assert len(before) + len(got[5]) + len(after) < n  # what no state could place was dropped
    # A source that never sets seq (all 0) is not a stream of gaps.
    dec = PacketStreamDecoder()
    zero = [dec.decode(p.tobytes(), "evt3", tb, W, H, seq=0) for p in parts]
    np.testing.assert_array_equal(np.concatenate(zero), events)
    assert dec.resets == 0
    # mono packets stand alone and stay strict
    with pytest.raises(EventDecodeError):
        PacketStreamDecoder().decode(b"\x00" * 7, "mono", 0, W, H, seq=0)


def test_sequence_gaps():
    gaps = SequenceGaps(max_gap=100)
    for n in (0, 1, 2, 5, 6, 6, 3, 4, 1000, 1001):
        gaps.see(n)
    assert (gaps.lost, gaps.restarts, gaps.jumps) == (2, 1, 1)
    assert gaps.diagnostics("windows", "window_id") == {
        "lost.windows": "2",
        "window_id_restarts": "1",
        "window_id_jumps": "1",
    }


@pytest.mark.parametrize("engine", ["numpy", "numba"])
def test_decode_into_is_decode_then_push(engine) -> None:
    """decode_into on any windower (numpy: no kernels; numba: the fused front end) windows what
    decode + push windows; a packet beyond the time range is refused before the windower."""
    from hsnn_perception.core.events.binning import EventWindower
    from hsnn_perception.core.events.filters import MappedWindower, model_input_chain
    from hsnn_perception.core.events.stream import EventTimeRangeError, warm_up

    warm_up()

    def windower():
        return MappedWindower(
            model_input_chain((H, W), (2, 2), "crop"),
            EventWindower(10, 2, 2, 2, 2, 2, engine=engine),
        )

    got, want = windower(), windower()
    dec_got, dec_want = PacketStreamDecoder(), PacketStreamDecoder()
    for seq, t in enumerate((100, 104, 125, 160)):
        ev = make_events([t, t + 3, t + 7], [100, 300, W - 1], [0, 200, H - 1], [1, 0, 1])
        tb, payload = encode_packet(ev, "evt3", W, H)
        n, windows = dec_got.decode_into(got, payload, "evt3", tb, W, H, seq=seq)
        expect = want.push(dec_want.decode(payload, "evt3", tb, W, H, seq=seq))
        assert n == 3
        assert [(w.window_id, w.n_events) for w in windows] == [
            (w.window_id, w.n_events) for w in expect
        ]
        for a, b in zip(windows, expect, strict=True):
            np.testing.assert_array_equal(a.frames, b.frames)
    ev = make_events([10**9], [0], [0], [1])
    tb, payload = encode_packet(ev, "mono", W, H)
    with pytest.raises(EventTimeRangeError, match="outside 0..1000"):
        dec_got.decode_into(got, payload, "mono", tb, W, H, seq=9, time_range=(0, 1000))
    assert got.pending_window_id == want.pending_window_id
