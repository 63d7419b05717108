"""Tests of hsnn_perception.core.sources.bag on real rosbag2 files (written with rosbags)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from hsnn_perception.core.events.binning import EventWindower
from hsnn_perception.core.events.codecs import make_events
from hsnn_perception.core.events.synthetic import SyntheticGestures
from hsnn_perception.core.io.bag.msgtypes import (
    MSG_ENERGY_REPORT,
    MSG_EVENT_PACKET,
    STORAGES,
    TOPIC_ENERGY,
    TOPIC_EVENTS,
    EventPacketData,
    Label,
    event_packet_message,
    package_typestore,
)
from hsnn_perception.core.io.bag.write import (
    BagRecorder,
    packetize,
    synthetic_to_bag,
    write_event_bag,
)
from hsnn_perception.core.sources.bag import (
    BagError,
    BagPacketStream,
    bag_packets,
    bag_window_count,
    bag_windows,
)

SIZE = 64


def _synthetic(tmp_path: Path, storage: str = "mcap", n: int = 3, seed: int = 4) -> Path:
    path = tmp_path / f"syn_{storage}_{n}"
    synthetic_to_bag(path, n, seed=seed, storage=storage, height=SIZE, width=SIZE)
    return path


def _check_tiling(packets) -> None:
    for prev, cur in zip(packets, packets[1:], strict=False):
        assert cur.t_start_us == prev.t_end_us, "packet spans tile the stream"
    for p in packets:
        assert p.t_end_us >= p.t_start_us
        if p.events.size:
            assert p.t_start_us <= int(p.events["t"][0])
            assert int(p.events["t"][-1]) < p.t_end_us


@pytest.mark.parametrize("storage", STORAGES)
def test_synthetic_bag_yields_its_events_and_labels(tmp_path, storage):
    path = _synthetic(tmp_path, storage)
    stream, width, height = bag_packets(path)
    assert isinstance(stream, BagPacketStream)
    assert (width, height) == (SIZE, SIZE)
    packets = list(stream)
    gen = SyntheticGestures(height=SIZE, width=SIZE, seed=4)
    expected = list(gen.stream(3))
    np.testing.assert_array_equal(
        np.concatenate([p.events for p in packets]), np.concatenate([e for e, *_ in expected])
    )
    _check_tiling(packets)
    got = [(i, lab) for i, p in enumerate(packets) for lab in p.labels]
    assert [lab for _, lab in got] == [Label(c, gen.labels[c], t0, t1) for _, c, t0, t1 in expected]
    # each label goes with the packet during which it starts (the first one: labels before it)
    for i, lab in got:
        p = packets[i]
        assert lab.start_us < p.t_end_us
        assert i == 0 or lab.start_us >= p.t_start_us
    assert stream.report.clean and stream.packets_out == len(packets)
    assert stream.events_out == sum(p.events.size for p in packets)


def test_label_in_a_silent_gap_goes_with_the_next_packet(tmp_path):
    ev = make_events([1000, 2000, 500_000, 500_500], [1, 2, 3, 4], [1, 1, 1, 1], [0, 1, 0, 1])
    path = tmp_path / "gap"
    labels = [Label(1, "a", 0, 100_000), Label(2, "b", 300_000, 600_000)]
    write_event_bag(path, packetize(ev, 10_000, 8, 8), labels)
    packets = list(bag_packets(path)[0])
    assert len(packets) == 2
    assert packets[0].t_end_us == 2001 and packets[1].t_start_us == 2001
    assert [lab.label for lab in packets[0].labels] == ["a"]
    assert [lab.label for lab in packets[1].labels] == ["b"]


def test_labels_after_the_last_packet_are_not_lost(tmp_path):
    ev = make_events([1000, 2000], [1, 2], [1, 1], [0, 1])
    path = tmp_path / "late_label"
    write_event_bag(path, packetize(ev, 10_000, 8, 8), [Label(3, "late", 900_000, 950_000)])
    packets = list(bag_packets(path)[0])
    assert [lab.class_id for p in packets for lab in p.labels] == [3]


def test_loop_keeps_sensor_time_increasing(tmp_path):
    path = _synthetic(tmp_path, n=2)
    once = list(bag_packets(path)[0])
    stream, _, _ = bag_packets(path, loop=True, loop_align_us=160_000)
    looped = [next(stream) for _ in range(3 * len(once))]
    assert stream.loops == 2
    _check_tiling(looped)
    times = np.concatenate([p.events["t"] for p in looped])
    assert np.all(np.diff(times) >= 0)
    span = once[-1].t_end_us - once[0].t_start_us
    shift = -(-span // 160_000) * 160_000
    for k in (1, 2):
        part = looped[k * len(once) : (k + 1) * len(once)]
        np.testing.assert_array_equal(
            np.concatenate([p.events["t"] for p in part]),
            np.concatenate([p.events["t"] for p in once]) + k * shift,
        )
        labels = [lab for p in part for lab in p.labels]
        assert [lab.start_us for lab in labels] == [
            lab.start_us + k * shift for p in once for lab in p.labels
        ]


@pytest.mark.parametrize("case", ["missing", "not_a_bag", "no_events_topic", "empty_events"])
def test_bad_bags_raise_bag_error(tmp_path, case):
    path = tmp_path / case
    match = {
        "missing": "does not exist",
        "not_a_bag": "not a rosbag2",
        "no_events_topic": "has no events topic",
        "empty_events": "no decodable event packet",
    }[case]
    if case == "not_a_bag":
        path.write_bytes(b"\x00" * 64)
    elif case == "no_events_topic":
        with BagRecorder(path) as rec:
            rec.write(TOPIC_ENERGY, MSG_ENERGY_REPORT, 1, {})
    elif case == "empty_events":
        store = package_typestore()
        with BagRecorder(path) as rec:
            bad = EventPacketData(0, 0, "nonsense", 8, 8, b"\x01" * 8)
            rec.write(TOPIC_EVENTS, MSG_EVENT_PACKET, 0, event_packet_message(store, bad))
    with pytest.raises(BagError, match=match):
        bag_packets(path)


def test_negative_speed_hint_is_rejected(tmp_path):
    path = _synthetic(tmp_path, n=1)
    with pytest.raises(BagError, match="speed"):
        bag_packets(path, speed_hint=-1)
    assert bag_packets(path, speed_hint=0)[1] == SIZE


def test_bad_packets_are_skipped_and_counted(tmp_path):
    store = package_typestore()
    ev = make_events([0, 15_000, 30_000], [1, 2, 3], [1, 2, 3], [0, 1, 0])
    good = packetize(ev, 10_000, 8, 8)
    path = tmp_path / "mixed"
    with BagRecorder(path) as rec:
        for i, pkt in enumerate(good):
            rec.write(
                TOPIC_EVENTS,
                MSG_EVENT_PACKET,
                pkt.log_time_ns,
                event_packet_message(store, pkt),
            )
            if i == 0:
                junk = EventPacketData(pkt.log_time_ns + 1, 0, "nonsense", 8, 8, b"\x00" * 8)
                other = packetize(make_events([5000], [1], [1], [1]), 10_000, 16, 16)[0]
                for extra in (junk, other):
                    rec.write(
                        TOPIC_EVENTS,
                        MSG_EVENT_PACKET,
                        pkt.log_time_ns + 1,
                        event_packet_message(store, extra),
                    )
    stream, width, height = bag_packets(path)
    packets = list(stream)
    assert (width, height) == (8, 8)
    np.testing.assert_array_equal(np.concatenate([p.events for p in packets]), ev)
    skipped = stream.report.skipped
    assert skipped["undecodable event packet"] == 1
    assert skipped["packet of another sensor geometry (16x16)"] == 1
    assert not stream.report.clean


def test_truncated_bag_yields_what_can_be_read(tmp_path):
    path = _synthetic(tmp_path, n=3)
    full = list(bag_packets(path)[0])
    f = next(path.glob("*.mcap"))
    f.write_bytes(f.read_bytes()[: int(f.stat().st_size * 0.6)])
    stream, _, _ = bag_packets(path)
    part = list(stream)
    assert 0 < len(part) < len(full)
    assert stream.report.recovered
    assert any("truncated" in n for n in stream.report.notes)
    for a, b in zip(part, full, strict=False):  # a prefix of the full bag
        np.testing.assert_array_equal(a.events, b.events)


def test_bag_windows_match_the_windower_on_all_events(tmp_path):
    path = _synthetic(tmp_path, n=4, seed=9)
    events = np.concatenate([p.events for p in bag_packets(path)[0]])
    windower = EventWindower(10_000, 16, SIZE, SIZE, 16, 16)
    want = windower.push(events) + windower.flush()
    got = bag_windows(path, 10_000, 16, 16, 16)
    assert [(w.window_id, w.t_start_us, w.t_end_us, w.n_events) for w in got] == [
        (w.window_id, w.t_start_us, w.t_end_us, w.n_events) for w in want
    ]
    # one synthetic sample per 160 ms window
    assert bag_window_count(path, 10_000, 16, 16, 16) == 4
    # any model input: the sensor is mapped onto it as the SNN node maps it (same windows)
    assert bag_window_count(path, 10_000, 16, 24, 24) == 4
    with pytest.raises(BagError, match="does not fit"):  # a region the sensor does not have
        bag_windows(path, 10_000, 16, 24, 24, roi=(0, 0, 999, 10))


RECORDING = Path(__file__).resolve().parents[3].parent / "shared" / "recordings" / "evt3.raw"


def _stock_evt3_bag(path: Path, n_words: int = 400_000, chunk: int = 4_000, lose: int = -1):
    """A bag as a stock EVT3 driver records it: the real EVK4 stream (or, where the recording
    is absent, an encoded random one) cut into payloads anywhere between words, time base 0;
    packet ``lose`` left out (seq jumps over it)."""
    from hsnn_perception.core.events.codecs import encode_packet
    from hsnn_perception.core.io.bag.convert import read_evt3_raw_header

    if RECORDING.is_file():
        width, height, offset = read_evt3_raw_header(RECORDING)
        with RECORDING.open("rb") as f:
            f.seek(offset)
            words = f.read(2 * n_words)
    else:
        width, height = 1280, 720
        rng = np.random.default_rng(2)
        n = n_words // 2
        t = np.sort(rng.integers(0, 3_000_000, n))
        ev = make_events(t, rng.integers(0, width, n), rng.integers(0, height, n), 1)
        words = encode_packet(ev, "evt3", width, height)[1]
    packets = [
        EventPacketData(k * 1000, 0, "evt3", width, height, words[k * chunk : (k + 1) * chunk], k)
        for k in range(-(-len(words) // chunk))
        if k != lose
    ]
    write_event_bag(path, packets)
    return width, height


@pytest.mark.parametrize("lose", [-1, 7], ids=["whole", "a-packet-lost"])
def test_evt3_passed_through_as_recorded_with_the_decoded_counts_and_times(tmp_path, lose):
    """A stock driver's EVT3 stream (payloads cut anywhere, the decoder's state carried across
    them, reset where a packet was lost): passed through, each packet carries its recorded bytes
    and the very count and times decoding gives, without its events decoded."""
    path = tmp_path / "stock"
    _stock_evt3_bag(path, lose=lose)
    passed = list(bag_packets(path, pass_through="evt3")[0])
    decoded = list(bag_packets(path)[0])
    raw = [p.payload for p in BagPacketStream(path)._bag.packets()]
    assert len(passed) == len(decoded) > 10
    assert sum(p.n_events for p in passed) == sum(p.events.size for p in decoded) > 10_000
    for p, q, payload in zip(passed, decoded, raw[-len(passed) :], strict=True):
        assert p.recorded is not None and p.recorded.payload == payload
        assert (p.n_events, p.event_span(), p.t_start_us, p.t_end_us) == (
            q.events.size,
            q.event_span(),
            q.t_start_us,
            q.t_end_us,
        )
    assert not any(p.decoded for p in passed[1:] if p.n_events), "only the first is decoded"


@pytest.mark.parametrize("encoding", ["mono", "evt3"])
def test_pass_through_only_in_its_encoding_and_loops_shift_the_time_base(tmp_path, encoding):
    """Packets in the pass-through encoding carry their payload; a loop moves them on through
    the time base (mono; EVT3 by whole 2**24 us epochs only, else it hands out decoded events);
    the times match the decoded stream's throughout."""
    path = tmp_path / "syn"
    ev = make_events(np.arange(0, 300_000, 7), 5, 6, 1)
    write_event_bag(path, packetize(ev, 10_000, 16, 16, encoding))
    other = "evt3" if encoding == "mono" else "mono"
    assert all(p.recorded is None for p in bag_packets(path, pass_through=other)[0])
    once = list(bag_packets(path)[0])
    passed, _, _ = bag_packets(path, loop=True, pass_through=encoding)
    decoded, _, _ = bag_packets(path, loop=True)
    for _ in range(3 * len(once)):
        p, q = next(passed), next(decoded)
        assert (p.n_events, p.event_span(), p.t_start_us, p.t_end_us) == (
            q.events.size,
            q.event_span(),
            q.t_start_us,
            q.t_end_us,
        )
        if p.recorded is not None:
            # the time base carries the loop's shift: decoding the payload gives the times
            from hsnn_perception.core.events.codecs import decode_packet

            t = decode_packet(p.recorded.payload, encoding, p.recorded.time_base_ns, 16, 16)["t"]
            np.testing.assert_array_equal(t, q.events["t"])
        else:
            assert encoding == "evt3" and passed.loops >= 1
            np.testing.assert_array_equal(p.events["t"], q.events["t"])
    assert passed.loops == 2


@pytest.mark.parametrize("encoding", ["mono", "evt3"])
def test_merged_packets_hold_the_same_events_in_fewer_messages(tmp_path, encoding):
    """merge_us joins consecutive passed-through packets up to that much sensor time: the joined
    payloads decode (state carried for EVT3) to exactly the recorded events, counts and spans
    add up, and labels still go with the packet they start in."""
    from hsnn_perception.core.events.codecs import Evt3State, decode_packet

    path = tmp_path / "small"
    rng = np.random.default_rng(6)
    t = np.sort(rng.integers(0, 200_000, 20_000))
    ev = make_events(t, rng.integers(0, 40, t.size), rng.integers(0, 30, t.size), 1)
    labels = [Label(1, "a", 10_000, 60_000), Label(2, "b", 120_500, 180_000)]
    write_event_bag(path, packetize(ev, 1000, 40, 30, encoding), labels)
    merged = list(bag_packets(path, pass_through=encoding, merge_us=5000)[0])
    plain = list(bag_packets(path)[0])
    assert len(merged) <= len(plain) // 4
    state = Evt3State()
    decoded = [
        decode_packet(
            p.recorded.payload,
            encoding,
            p.recorded.time_base_ns,
            40,
            30,
            evt3_state=state if encoding == "evt3" else None,
        )
        for p in merged
    ]
    assert [d.size for d in decoded] == [p.n_events for p in merged]
    np.testing.assert_array_equal(np.concatenate(decoded), ev)
    for p, d in zip(merged, decoded, strict=True):
        assert p.event_span() == (int(d["t"][0]), int(d["t"][-1]))
        assert p.t_end_us - p.t_start_us <= 5000 + 1000
    _check_tiling([replace(p, events=d) for p, d in zip(merged, decoded, strict=True)])
    starts = {lab.start_us: p for p in merged for lab in p.labels}
    assert set(starts) == {10_000, 120_500}
    for start, p in starts.items():
        assert p.t_start_us <= start < p.t_end_us or p is merged[0]
