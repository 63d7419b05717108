#!/usr/bin/env python3
"""Golden outputs of event_camera_codecs' decoders for packets our encoders wrote.

    python scripts/event_camera_codecs/make_fixtures.py --upstream DIR [--out DIR]
    python scripts/event_camera_codecs/make_fixtures.py --upstream DIR --check-bag BAG

``DIR`` is a checkout of https://github.com/ros-event-camera/event_camera_codecs (its
``include/``). The script writes the packets of :func:`fixture_packets` (mono, libcaer,
libcaer_cmp, EVT3 with trigger, vector, OTHERS and CONTINUED words, cut anywhere) to
``packets.bin``, compiles ``harness.cpp`` with g++ against the upstream decoder headers (plus the
stand-in message header in ``ros_stubs/``), runs it on the packets and stores every event and
trigger event it printed in ``golden.npz``, with the upstream commit. The fixtures live in
``test/core/events/fixtures/event_camera_codecs`` and ``test/core/events/
test_event_camera_codecs.py`` decodes the same packets with our codecs and compares.

``--check-bag`` instead decodes every event packet of a rosbag2 bag (e.g. the recordings in the
upstream repository's ``test/``) with both decoders and prints whether they agree; nothing is
written.
"""

from __future__ import annotations

import argparse
import json
import shutil
import struct
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
FIXTURES = ROOT / "test" / "core" / "events" / "fixtures" / "event_camera_codecs"
MAGIC = b"HSNNPKT1"
# What one unit of the time the harness prints is, in ns, per encoding (see harness.cpp).
TIME_UNIT_NS = {"mono": 1, "libcaer": 1, "evt3": 1, "libcaer_cmp": 1000}
EVENT_ROWS = np.dtype([("packet", "<u4"), ("t", "<u8"), ("x", "<u2"), ("y", "<u2"), ("p", "u1")])
TRIGGER_ROWS = np.dtype([("packet", "<u4"), ("t", "<u8"), ("edge", "u1"), ("id", "u1")])


@dataclass(frozen=True)
class Packet:
    """One EventPacket as the harness reads it; packets of one ``stream`` share a decoder."""

    stream: int
    encoding: str
    width: int
    height: int
    time_base: int
    payload: bytes


# Streams: name, and what our decoder gives against upstream's (see the test).
STREAMS = {
    0: ("mono, 1280x720, host-epoch time_base", "same"),
    1: ("mono, sub-microsecond time_base and offsets, 16-bit x / 15-bit y, no geometry", "same"),
    2: ("libcaer, 346x260, 31-bit timestamp rollover inside a packet", "same"),
    3: ("libcaer_cmp, 346x260, with and without vectors", "same"),
    4: ("evt3, 1280x720, one raw stream cut anywhere, 24-bit rollover, triggers", "same"),
    5: ("evt3 packets standing alone, events beyond the 640x480 geometry", "same"),
    6: ("libcaer, an event without its valid mark", "invalid_mark"),
    7: ("evt3 at 5 epochs of 2**24 us after time 0", "epoch_from_time_base"),
    8: ("libcaer, timestamp back by less than 2**30 us", "time_backwards"),
}


def _events(rng: np.random.Generator, n: int, t0: int, span: int, w: int, h: int) -> np.ndarray:
    """Sorted random events with bursts (same time, column or row) that vector words pack."""
    from hsnn_perception.core.events.codecs import make_events

    t = np.sort(rng.integers(t0, t0 + span, n))
    t[1::3] = t[::3][: t[1::3].size]  # bursts at one time
    t = np.sort(t)
    x, y = rng.integers(0, w, n), rng.integers(0, h, n)
    ev = make_events(t, x, y, rng.integers(0, 2, n))
    return ev[np.lexsort((ev["y"], ev["x"], ev["t"]))]


def _bursts(
    rng: np.random.Generator, k: int, t0: int, span: int, w: int, h: int, along_x: bool
) -> np.ndarray:
    """``k`` bursts of up to 12 events at one time and polarity, next to each other along a row
    (``along_x``: what EVT3 vectors pack) or a column (libcaer_cmp vectors)."""
    from hsnn_perception.core.events.codecs import make_events

    parts = []
    for t in np.sort(rng.integers(t0, t0 + span, k)):
        n = int(rng.integers(2, 13))
        offsets = np.sort(rng.choice(12, n, replace=False))
        x0, y0 = int(rng.integers(0, w - 12)), int(rng.integers(0, h - 12))
        x = x0 + offsets if along_x else np.full(n, x0)
        y = np.full(n, y0) if along_x else y0 + offsets
        parts.append(make_events(np.full(n, t), x, y, np.full(n, rng.integers(0, 2))))
    return np.concatenate(parts)


def _merged(*parts: np.ndarray) -> np.ndarray:
    ev = np.concatenate(parts)
    return ev[np.lexsort((ev["x"], ev["y"], ev["t"]))]


def _cut(events: np.ndarray, parts: int) -> list[np.ndarray]:
    return np.array_split(events, parts)


def _word(code: int, value: int) -> int:
    return (code << 12) | value


def fixture_packets() -> list[Packet]:
    """The packets of the fixture, from a fixed seed (our encoders write them; a few words are
    added by hand where the encoders write none: EVT3 triggers, VECT_8, OTHERS, CONTINUED)."""
    from hsnn_perception.core.events.codecs import encode_packet, make_events

    rng = np.random.default_rng(20240601)
    out: list[Packet] = []

    def add(stream: int, enc: str, w: int, h: int, events: np.ndarray, **kw: bool) -> None:
        tb, payload = encode_packet(events, enc, w, h, **kw)
        out.append(Packet(stream, enc, w, h, tb, payload))

    # 0: mono at a host-epoch sensor time (time_base near 1.7e18 ns).
    for part in _cut(_events(rng, 1500, 1_700_000_000_000_000, 40_000, 1280, 720), 5):
        add(0, "mono", 1280, 720, part)
    # 1: mono words with offsets and time_base below a microsecond, extreme coordinates.
    words = [
        (1 << 63) | (0x7FFF << 48) | (0xFFFF << 32) | 1,
        (0 << 63) | (5 << 48) | (7 << 32) | 999,
        (1 << 63) | (6 << 48) | (8 << 32) | 1000,
        (0 << 63) | (9 << 48) | (9 << 32) | 0xFFFFFFFF,
    ]
    payload = struct.pack("<4Q", *words)
    out.append(Packet(1, "mono", 0, 0, 1_700_000_000_123_456_789, payload))
    # 2: libcaer across the 2**31 us rollover of its timestamp.
    for part in _cut(_events(rng, 1200, (1 << 31) - 15_000, 30_000, 346, 260), 4):
        add(2, "libcaer", 346, 260, part)
    # 3: libcaer_cmp with bursts in one column (VECT_8 words) and without vectors.
    ev = _events(rng, 800, 90_000_000, 60_000, 346, 260)
    ev = _merged(ev, _bursts(rng, 120, 90_000_000, 60_000, 346, 260, along_x=False))
    ev = ev[np.lexsort((ev["y"], ev["x"], ev["t"]))]  # rows rising in a column: VECT_8 runs
    for i, part in enumerate(_cut(ev, 6)):
        add(3, "libcaer_cmp", 346, 260, part, use_vectors=i % 3 != 2)
    # 4: one EVT3 stream across the 24-bit rollover, cut into packets at random words.
    t0 = (1 << 24) - 90_000
    ev = _merged(
        _events(rng, 1500, t0, 180_000, 1280, 720),
        _bursts(rng, 200, t0, 180_000, 1280, 720, along_x=True),
    )
    tb, payload = encode_packet(ev, "evt3", 1280, 720, use_vectors=True)
    stream = _evt3_extras(list(np.frombuffer(payload, "<u2")), rng)
    cuts = np.sort(rng.choice(np.arange(1, len(stream)), 24, replace=False))
    for part in np.split(np.asarray(stream, dtype="<u2"), cuts):
        out.append(Packet(4, "evt3", 1280, 720, tb, part.tobytes()))
    # 5: EVT3 packets that stand alone, some events beyond the message's geometry.
    for part in _cut(_events(rng, 600, 3_000_000, 20_000, 700, 500), 3):
        tb, payload = encode_packet(part, "evt3", use_vectors=False)
        out.append(Packet(5, "evt3", 640, 480, tb, payload))
    # 6: a libcaer event whose valid mark is 0.
    three = make_events([10, 20, 30], [1, 2, 3], [4, 5, 6], [0, 1, 0])
    tb, payload = encode_packet(three, "libcaer")
    raw = bytearray(payload)
    raw[8] &= 0xFE  # second event: valid mark off
    out.append(Packet(6, "libcaer", 346, 260, tb, bytes(raw)))
    # 7: EVT3 at sensor time 5 * 2**24 + ...: upstream counts rollovers from 0.
    t = 5 * (1 << 24) + np.array([1000, 1000, 5000])
    add(7, "evt3", 640, 480, make_events(t, [1, 2, 3], [4, 4, 5], [1, 1, 0]))
    # 8: libcaer timestamps going back by 10 us (upstream: a rollover).
    raw = struct.pack("<IiIi", (1 << 17) | (2 << 2) | 1, 5000, (3 << 17) | (4 << 2) | 1, 4990)
    out.append(Packet(8, "libcaer", 346, 260, 2_000_000_000, raw))
    return out


def _evt3_extras(words: list[int], rng: np.random.Generator) -> list[int]:
    """Words our encoder never writes, added where a sensor would put them: trigger events
    after TIME_LOW words, VECT_8 after VECT_12 words (continuing their base), OTHERS and
    CONTINUED words anywhere."""
    out: list[int] = []
    base = 0
    for i, word in enumerate(words):
        out.append(word)
        code, value = word >> 12, word & 0xFFF
        if code == 0x3:
            base = value & 0x7FF
        elif code == 0x6 and i % 7 == 0:
            out.append(_word(0xA, (int(rng.integers(0, 16)) << 8) | int(rng.integers(0, 2))))
        elif code == 0x4:
            base += 12
            if i % 5 == 0 and base + 8 <= 1280:
                out.append(_word(0x5, int(rng.integers(1, 256))))
                base += 8
        if i % 97 == 0:
            out += [_word(0xE, 0x019), _word(0x7, 0xABC), _word(0xF, 0x123)]
    return out


def write_packets(path: Path, packets: list[Packet]) -> None:
    """The packet file harness.cpp reads (format in its header comment)."""
    with path.open("wb") as f:
        f.write(MAGIC + struct.pack("<I", len(packets)))
        for p in packets:
            name = p.encoding.encode()
            f.write(struct.pack("<BB", p.stream, len(name)) + name)
            f.write(struct.pack("<HHQI", p.width, p.height, p.time_base, len(p.payload)))
            f.write(p.payload)


def read_packets(path: Path) -> list[Packet]:
    """The packets of a packet file."""
    data = path.read_bytes()
    if data[:8] != MAGIC:
        raise ValueError(f"{path} is not a packet file")
    (count,) = struct.unpack_from("<I", data, 8)
    pos, out = 12, []
    for _ in range(count):
        stream, n = struct.unpack_from("<BB", data, pos)
        encoding = data[pos + 2 : pos + 2 + n].decode()
        pos += 2 + n
        width, height, time_base, size = struct.unpack_from("<HHQI", data, pos)
        pos += 16
        out.append(Packet(stream, encoding, width, height, time_base, data[pos : pos + size]))
        pos += size
    return out


def build_harness(upstream: Path, work: Path) -> Path:
    """harness.cpp compiled against ``upstream``'s headers; the executable's path."""
    include = upstream / "include"
    if not (include / "event_camera_codecs" / "decoder_factory.h").is_file():
        raise SystemExit(f"{upstream} is no event_camera_codecs checkout (no include/)")
    exe = work / "harness"
    cmd = ["g++", "-std=c++17", "-O2", "-Wall", "-I", str(HERE / "ros_stubs"), "-I", str(include)]
    subprocess.run([*cmd, str(HERE / "harness.cpp"), "-o", str(exe)], check=True)
    return exe


def run_harness(exe: Path, packets_file: Path) -> tuple[np.ndarray, np.ndarray]:
    """(events, trigger events) the upstream decoders printed, as EVENT_ROWS / TRIGGER_ROWS."""
    text = subprocess.run([str(exe), str(packets_file)], check=True, capture_output=True).stdout
    events, triggers = [], []
    for line in text.decode().splitlines():
        kind, *fields = line.split()
        (events if kind == "E" else triggers).append(tuple(int(v) for v in fields))
    return np.array(events, dtype=EVENT_ROWS), np.array(triggers, dtype=TRIGGER_ROWS)


def upstream_commit(upstream: Path) -> str:
    try:
        return subprocess.run(
            ["git", "-C", str(upstream), "rev-parse", "HEAD"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def bag_packets(bag: Path) -> Iterator[Packet]:
    """The event packets of a rosbag2 bag, as one stream."""
    from hsnn_perception.core.io.bag.msgtypes import EVENT_PACKET_TYPES
    from hsnn_perception.core.io.bag.read import MessageReader

    reader = MessageReader(bag)
    topics = {t for t, typ in reader.report.topics.items() if typ in EVENT_PACKET_TYPES}
    for m in reader.messages(topics):
        msg = m.msg
        geometry = int(msg.width), int(msg.height)
        yield Packet(0, str(msg.encoding), *geometry, int(msg.time_base), bytes(msg.events))


def check_bag(exe: Path, bag: Path, work: Path) -> int:
    """Decode a bag's packets with both decoders; print the comparison; 0 when they agree."""
    from collections import Counter

    from hsnn_perception.core.events.codecs import TRIGGER_DTYPE, Evt3State, decode_packet

    packets = list(bag_packets(bag))
    if not packets:
        print(f"{bag}: no event_camera_msgs or hsnn_perception EventPacket messages")
        return 2
    write_packets(work / "bag.bin", packets)
    want, want_trig = run_harness(exe, work / "bag.bin")
    state, drops, triggers, events = Evt3State(), Counter(), [], []
    for p in packets:
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
            )  # fmt: skip
        )
    ours = np.concatenate(events)
    trig = np.concatenate([np.zeros(0, TRIGGER_DTYPE), *triggers])
    unit = TIME_UNIT_NS[packets[0].encoding]
    same = (
        ours.size == want.size
        and all(np.array_equal(ours[k], want[k]) for k in ("x", "y", "p"))
        and ours["t"].tolist() == [int(t) * unit // 1000 for t in want["t"]]
        and trig["t"].tolist() == [int(t) * unit // 1000 for t in want_trig["t"]]
        and all(np.array_equal(trig[k], want_trig[k]) for k in ("edge", "id"))
    )
    print(
        f"{bag}: {len(packets)} packets ({', '.join(sorted({p.encoding for p in packets}))}), "
        f"upstream {want.size} events {want_trig.size} triggers, ours {ours.size} events "
        f"{trig.size} triggers, drops {dict(drops)}: {'SAME' if same else 'DIFFERENT'}"
    )
    return 0 if same else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--upstream", type=Path, required=True, help="event_camera_codecs checkout")
    ap.add_argument("--commit", default="", help="its commit (default: git rev-parse HEAD)")
    ap.add_argument("--out", type=Path, default=FIXTURES, help="fixture directory")
    ap.add_argument("--check-bag", type=Path, default=None, help="compare on a bag instead")
    args = ap.parse_args(argv)
    if shutil.which("g++") is None:
        raise SystemExit("g++ is needed to compile the upstream decoders")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        exe = build_harness(args.upstream, work)
        if args.check_bag is not None:
            return check_bag(exe, args.check_bag, work)
        packets = fixture_packets()
        args.out.mkdir(parents=True, exist_ok=True)
        write_packets(args.out / "packets.bin", packets)
        events, triggers = run_harness(exe, args.out / "packets.bin")
    meta = {
        "upstream": "https://github.com/ros-event-camera/event_camera_codecs",
        "commit": args.commit or upstream_commit(args.upstream),
        "compiler": subprocess.run(
            ["g++", "--version"], capture_output=True, text=True
        ).stdout.splitlines()[0],
        "time_unit_ns": TIME_UNIT_NS,
        "streams": {str(k): list(v) for k, v in STREAMS.items()},
    }
    np.savez_compressed(
        args.out / "golden.npz", events=events, triggers=triggers, meta=np.array(json.dumps(meta))
    )
    print(
        f"{len(packets)} packets -> {events.size} events, {triggers.size} trigger events "
        f"from event_camera_codecs {meta['commit'][:12]} into {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
