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
