"""``hsnn-bag info``: what a rosbag2 bag holds: topics with their types and message counts, the
log-time span, the labels, what reading had to skip, and for every events topic (this package's
EventPacket or event_camera_msgs' EventPacket, as a stock driver records it on
``/event_camera/events``; ``--events-topic`` picks one) the events decoded from it: packets,
events, encodings, sensor geometry, sensor-time span, and what the decoder dropped.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any


class _EventsSummary:
    """Decodes one events topic's packets in order, as the SNN node would (EVT3 state carried,
    bad events dropped and counted) and keeps the figures."""

    def __init__(self, msgtype: str) -> None:
        from hsnn_perception.core.events.stream import PacketStreamDecoder

        self.msgtype = msgtype
        self.drops: Counter[str] = Counter()
        self.decoder = PacketStreamDecoder(strict_standalone=False, drops=self.drops)
        self.packets = 0
        self.events = 0
        self.encodings: Counter[str] = Counter()
        self.geometries: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()  # packets not decoded, by reason
        self.first_us: int | None = None
        self.last_us: int | None = None

    def add(self, msg: Any) -> None:
        from hsnn_perception.core.events.codecs import EventCodecError

        self.packets += 1
        encoding, width, height = str(msg.encoding), int(msg.width), int(msg.height)
        self.encodings[encoding] += 1
        self.geometries[f"{width}x{height}"] += 1
        try:
            events = self.decoder.decode(
                msg.events, encoding, int(msg.time_base), width, height, bool(msg.is_bigendian)
            )
        except EventCodecError as exc:
            self.rejected[str(exc)[:160]] += 1  # the message names encoding and problem
            return
        if events.size:
            self.events += int(events.size)
            first, last = int(events["t"][0]), int(events["t"][-1])
            self.first_us = first if self.first_us is None else min(self.first_us, first)
            self.last_us = last if self.last_us is None else max(self.last_us, last)

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.msgtype,
            "packets": self.packets,
            "events": self.events,
            "encodings": dict(sorted(self.encodings.items())),
            "geometry": dict(sorted(self.geometries.items())),
            "sensor_time_us": None if self.first_us is None else [self.first_us, self.last_us],
            "dropped": dict(sorted(self.drops.items())),
            "packets_rejected": dict(sorted(self.rejected.items())),
        }


def bag_info(path: Path | str, events_topic: str | None = None) -> dict[str, Any]:
    """Topics (type, messages), log-time span, labels, what reading had to skip, and the events
    of every events topic (only ``events_topic`` if given: a BagError unless the bag has it with
    an event packet type)."""
    from hsnn_perception.core.io.bag.msgtypes import EVENT_PACKET_TYPES, BagError, time_to_ns
    from hsnn_perception.core.io.bag.read import MessageReader

    reader = MessageReader(path)
    report = reader.report
    event_topics = {t: typ for t, typ in report.topics.items() if typ in EVENT_PACKET_TYPES}
    if events_topic is not None:
        if events_topic not in event_topics:
            listed = ", ".join(f"{t} ({typ})" for t, typ in sorted(report.topics.items()))
            raise BagError(
                f"--events-topic {events_topic}: {path} has no such topic of type "
                f"{' or '.join(EVENT_PACKET_TYPES)}; topics: {listed or 'none'}"
            )
        event_topics = {events_topic: event_topics[events_topic]}
    events = {t: _EventsSummary(typ) for t, typ in sorted(event_topics.items())}
    counts: Counter[str] = Counter()
    first: int | None = None
    last: int | None = None
    labels: list[dict[str, Any]] = []
    for m in reader.messages(report.topics):
        counts[m.topic] += 1
        if m.topic in events:
            events[m.topic].add(m.msg)
        first = m.log_time_ns if first is None else min(first, m.log_time_ns)
        last = m.log_time_ns if last is None else max(last, m.log_time_ns)
        if m.msgtype == "hsnn_perception/msg/GestureLabel":
            labels.append(
                {
                    "class_id": int(m.msg.class_id),
                    "label": str(m.msg.label),
                    "start_us": time_to_ns(m.msg.start) // 1000,
                    "end_us": time_to_ns(m.msg.end) // 1000,
                }
            )
    per_class = Counter(lab["label"] or f"class {lab['class_id']}" for lab in labels)
    # Messages the bag's index lists that could not be read (a corrupt chunk, a cut file):
    # reported, so a damaged bag never reads as "skipped: nothing".
    unread = {
        t: n - counts.get(t, 0)
        for t, n in sorted(report.expected.items())
        if n is not None and n > counts.get(t, 0)
    }
    return {
        "path": str(path),
        "storage": report.storage,
        "recovered": report.recovered,
        "topics": {
            t: {"type": typ, "messages": counts.get(t, 0), "indexed": report.expected.get(t)}
            for t, typ in sorted(report.topics.items())
        },
        "messages": sum(counts.values()),
        "start_ns": first,
        "end_ns": last,
        "duration_s": (last - first) * 1e-9 if first is not None and last is not None else 0.0,
        "labels": {
            "count": len(labels),
            "per_class": dict(sorted(per_class.items())),
            "span_us": [
                min(lab["start_us"] for lab in labels),
                max(lab["end_us"] for lab in labels),
            ]
            if labels
            else None,
        },
        "events": {t: e.to_dict() for t, e in events.items()},
        "skipped": dict(report.skipped),
        "unread": unread,
        "notes": list(report.notes),
    }


def format_info(info: dict[str, Any]) -> str:
    """``info`` (from :func:`bag_info`) as the text ``hsnn-bag info`` prints."""
    lines = [
        f"bag:       {info['path']} ({info['storage']}"
        f"{', recovered from damage' if info['recovered'] else ''})",
        f"duration:  {info['duration_s']:.3f} s of log time, {info['messages']} messages",
        "topics:",
    ]
    width = max((len(t) for t in info["topics"]), default=0)
    for topic, t in info["topics"].items():
        indexed = t["indexed"]
        extra = (
            f" (index says {indexed})" if indexed is not None and indexed != t["messages"] else ""
        )
        lines.append(f"  {topic:<{width}}  {t['messages']:>7}  {t['type']}{extra}")
    labels = info["labels"]
    if labels["count"]:
        lo, hi = labels["span_us"]
        lines.append(
            f"labels:    {labels['count']} spans over [{lo}, {hi}) us of sensor time: "
            + ", ".join(f"{k}: {v}" for k, v in labels["per_class"].items())
        )
    else:
        lines.append("labels:    none")
    for topic, ev in info.get("events", {}).items():
        lines += _format_events(topic, ev)
    unread = info.get("unread", {})
    if info["skipped"] or unread:
        lines.append("skipped:")
        lines += [
            f"  {n} {why}" if why.startswith("bytes") else f"  {n} x {why}"
            for why, n in sorted(info["skipped"].items())
        ]
        lines += [
            f"  {n} x {topic} message listed in the index but not readable (damaged bag?)"
            for topic, n in unread.items()
        ]
    else:
        lines.append("skipped:   nothing")
    lines += [f"note:      {n}" for n in info["notes"]]
    return "\n".join(lines)


def _format_events(topic: str, ev: dict[str, Any]) -> list[str]:
    several = len(ev["encodings"]) > 1
    encodings = ", ".join(f"{e} ({n})" if several else e for e, n in ev["encodings"].items())
    geometry = ", ".join(ev["geometry"])
    lines = [
        f"events:    {topic}: {ev['events']} events in {ev['packets']} packets"
        + (f", {encodings} {geometry}" if ev["packets"] else "")
    ]
    if ev["sensor_time_us"] is not None:
        lo, hi = ev["sensor_time_us"]
        lines.append(f"           sensor time [{lo}, {hi}] us ({(hi - lo) * 1e-6:.3f} s)")
    if ev["dropped"]:
        lines.append(
            "           dropped: " + ", ".join(f"{n} {why}" for why, n in ev["dropped"].items())
        )
    lines += [
        f"           {n} packets not decoded: {why}" for why, n in ev["packets_rejected"].items()
    ]
    return lines
