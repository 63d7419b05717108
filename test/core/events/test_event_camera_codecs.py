"""Bit-for-bit agreement with event_camera_codecs' decoders (the C++ library the stock ROS event
camera drivers and tools use).

``fixtures/event_camera_codecs/packets.bin`` holds packets our encoders wrote (with hand-added EVT3
trigger, VECT_8, OTHERS and CONTINUED words) for every encoding; ``golden.npz`` holds every event
and trigger event that the upstream decoders, compiled from their headers, produced from the same
bytes (``scripts/event_camera_codecs/make_fixtures.py``, upstream commit in the file; see
docs/events.md). Each stream's packets go through one decoder, upstream and here, so EVT3 state
is carried across packets cut anywhere. Streams marked in the fixture as a deviation check the
documented, deliberate differences exactly.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from hsnn_perception.core.events.codecs import TRIGGER_DTYPE, Evt3State, decode_packet

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "event_camera_codecs"


def _load_script():
    spec = importlib.util.spec_from_file_location(
        "make_fixtures", ROOT / "scripts" / "event_camera_codecs" / "make_fixtures.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


SCRIPT = _load_script()
PACKETS = SCRIPT.read_packets(FIXTURES / "packets.bin")
GOLDEN = np.load(FIXTURES / "golden.npz")
META = json.loads(str(GOLDEN["meta"]))


def _upstream(stream: int) -> tuple[np.ndarray, np.ndarray, str]:
    """The upstream decoders' events and triggers of one stream, time in ns."""
    index = [i for i, p in enumerate(PACKETS) if p.stream == stream]
    encoding = PACKETS[index[0]].encoding
    unit = META["time_unit_ns"][encoding]
    events = GOLDEN["events"][np.isin(GOLDEN["events"]["packet"], index)]
    triggers = GOLDEN["triggers"][np.isin(GOLDEN["triggers"]["packet"], index)]
    return events, triggers, unit


def _ours(stream: int) -> tuple[np.ndarray, np.ndarray, Counter]:
    """Our events and triggers of one stream: one decoder state for its packets, bad events
    dropped and counted (upstream's decoders drop what lies beyond the geometry silently)."""
    state, drops, triggers, events = Evt3State(), Counter(), [], []
    for p in PACKETS:
        if p.stream == stream:
            events.append(
                decode_packet(
                    p.payload,
                    p.encoding,
                    p.time_base,
                    p.width,
                    p.height,
                    strict=False,
                    drops=drops,
                    evt3_state=state,
                    triggers=triggers,
                )
            )
    return np.concatenate(events), np.concatenate([np.zeros(0, TRIGGER_DTYPE), *triggers]), drops


def _same_events(ours: np.ndarray, upstream: np.ndarray, unit_ns: int) -> None:
    """Identical x, y, polarity, and our microseconds are upstream's time floored to one."""
    assert ours.size == upstream.size
    for field in ("x", "y", "p"):
        np.testing.assert_array_equal(ours[field], upstream[field], err_msg=field)
    want_us = [int(t) * unit_ns // 1000 for t in upstream["t"]]  # exact: Python ints
    assert ours["t"].tolist() == want_us


def test_the_fixture_covers_every_encoding_and_what_matters():
    assert META["commit"] and len(META["commit"]) == 40
    encodings = {p.encoding for p in PACKETS}
    assert encodings == {"mono", "libcaer", "libcaer_cmp", "evt3"}
    words = np.concatenate(
        [np.frombuffer(p.payload, "<u2") for p in PACKETS if p.encoding in ("evt3", "libcaer_cmp")]
    )
    evt3 = np.concatenate([np.frombuffer(p.payload, "<u2") for p in PACKETS if p.stream == 4])
    codes = set((evt3 >> 12).tolist())
    assert {0x4, 0x5, 0x7, 0xA, 0xE, 0xF} <= codes  # vectors, triggers, skipped words
    cmp = np.concatenate([np.frombuffer(p.payload, "<u2") for p in PACKETS if p.stream == 3])
    assert 0x5 in set((cmp >> 12).tolist()) and 0x0 in set((cmp >> 12).tolist())
    assert words.size and GOLDEN["events"].size > 5000 and GOLDEN["triggers"].size > 50
    sizes = sum(f.stat().st_size for f in FIXTURES.iterdir())
    assert sizes < 300_000


def test_our_encoders_still_write_the_fixture_packets():
    """The packets are what our encoders write today, byte for byte (the fixture was made from
    them; a changed encoder would make them a test of something else)."""
    assert SCRIPT.fixture_packets() == PACKETS


@pytest.mark.parametrize("stream", [s for s, (_, how) in SCRIPT.STREAMS.items() if how == "same"])
def test_decoded_as_event_camera_codecs_decodes(stream, monkeypatch):
    upstream, up_triggers, unit = _upstream(stream)
    for engine in ("numpy", "numba"):
        monkeypatch.setenv("HSNN_EVT3_ENGINE", engine)
        events, triggers, drops = _ours(stream)
        _same_events(events, upstream, unit)
        assert triggers["edge"].tolist() == up_triggers["edge"].tolist()
        assert triggers["id"].tolist() == up_triggers["id"].tolist()
        assert triggers["t"].tolist() == [int(t) * unit // 1000 for t in up_triggers["t"]]
        assert set(drops) <= {"out_of_bounds"}, drops  # upstream skips those silently too
    assert upstream.size > 0


def test_deliberate_differences_are_exactly_the_documented_ones():
    # libcaer: an event without its valid mark is skipped (libcaer's iterators skip it).
    upstream, _, unit = _upstream(6)
    events, _, drops = _ours(6)
    _same_events(events, upstream[[0, 2]], unit)
    assert upstream.size == 3 and drops == {"invalid_mark": 1}
    # EVT3: time_base places the 24-bit time in its 2**24 us epoch; upstream counts rollovers
    # from 0 whatever the time_base.
    upstream, _, unit = _upstream(7)
    events, _, drops = _ours(7)
    shifted = upstream.copy()
    shifted["t"] += 5 * (1 << 24) * 1000
    _same_events(events, shifted, unit)
    assert not drops
    # libcaer: a timestamp back by 10 us is time going backwards (dropped), not a rollover.
    upstream, _, unit = _upstream(8)
    events, _, drops = _ours(8)
    assert int(upstream["t"][1]) - int(upstream["t"][0]) == ((1 << 31) - 10) * 1000
    _same_events(events, upstream[:1], unit)
    assert drops == {"time_backwards": 1}
