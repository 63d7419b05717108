"""Reading bags: decoded messages of chosen topics (:class:`MessageReader`) and labelled event bags
(:class:`EventBag`, :func:`read_event_bag`).

Reading is forgiving where a file is damaged but still a bag: a truncated MCAP or sqlite3 file, a
missing ``metadata.yaml``, undecodable messages, unknown types: what can be read is read and the
:class:`~hsnn_perception.core.io.bag.storage.ReadReport` says what was skipped. What is not a bag
at all raises :class:`~hsnn_perception.core.io.bag.msgtypes.BagError`. Reading is bounded where a
file could make it unbounded (:mod:`~hsnn_perception.core.io.bag.limits`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hsnn_perception.core.io.bag.msgtypes import (
    EVENT_PACKET_FIELDS,
    EVENT_PACKET_TYPES,
    TOPIC_LABELS,
    BagError,
    EventPacketData,
    Label,
    copy_typestore,
    package_typestore,
    time_to_ns,
    types_from_msgdef,
)
from hsnn_perception.core.io.bag.source import open_source
from hsnn_perception.core.io.bag.storage import Connection


@dataclass(frozen=True)
class BagMessage:
    topic: str
    msgtype: str
    log_time_ns: int
    msg: Any


class MessageReader:
    """Decoded messages of chosen topics, in log-time order per storage, with a :class:`ReadReport`.

    Types unknown to the package typestore are registered from the definitions the bag embeds;
    messages of types that still cannot be decoded are skipped and counted.
    """

    def __init__(self, path: Path | str, typestore: Any | None = None) -> None:
        self.source, self.report = open_source(path)
        self.typestore = typestore if typestore is not None else package_typestore()
        self._own_store = typestore is None
        self.undecodable: set[str] = set()
        for conn in self.source.connections:
            self.report.topics[conn.topic] = conn.msgtype
            self._ensure_type(conn)

    def _ensure_type(self, conn: Connection) -> None:
        from rosbags.typesys import get_types_from_msg

        if conn.msgtype in self.typestore.fielddefs:
            if conn.msgdef:
                self._prefer_bag_definition(conn, get_types_from_msg)
            return
        if not conn.msgdef:
            self.undecodable.add(conn.msgtype)
            self.report.note(f"unknown message type {conn.msgtype} ({conn.topic}), no definition")
            return
        if self._own_store:  # never change the shared cached store
            self.typestore = copy_typestore(self.typestore)
            self._own_store = False
        try:
            self.typestore.register(
                types_from_msgdef(conn.msgtype, conn.msgdef, get_types_from_msg)
            )
        except Exception as exc:  # a definition rosbags cannot parse
            self.undecodable.add(conn.msgtype)
            self.report.note(f"cannot use the bag's definition of {conn.msgtype}: {exc}")

    def _prefer_bag_definition(
        self, conn: Connection, parse: Callable[[str, str], dict[str, Any]]
    ) -> None:
        """A known type whose definition in the bag differs (a bag recorded by another version
        of this package) is decoded with the bag's definition, and the report says so."""
        try:
            types = types_from_msgdef(conn.msgtype, conn.msgdef, parse)
        except Exception:  # unparsable: this package's definition is the best guess
            return
        known = self.typestore.fielddefs
        differ = {n: d for n, d in types.items() if n in known and known[n] != d}
        if not differ:
            return
        self.typestore = copy_typestore(self.typestore, without=set(differ))
        self._own_store = False
        self.typestore.register({n: d for n, d in types.items() if n not in known or n in differ})
        self.report.note(
            f"the bag's definition of {', '.join(sorted(differ))} differs from this package's "
            f"(recorded by another version): {conn.topic} decoded with the bag's"
        )

    def has_topic(self, topic: str) -> bool:
        return topic in self.report.topics

    def messages(self, topics: Iterable[str]) -> Iterator[BagMessage]:
        wanted = set(topics)
        for conn, ts, raw in self.source.messages(wanted):
            if conn.msgtype in self.undecodable:
                self.report.skipped[f"unknown type {conn.msgtype} on {conn.topic}"] += 1
                continue
            try:
                msg = self.typestore.deserialize_cdr(raw, conn.msgtype)
            except Exception as exc:  # corrupt CDR: rosbags raises assorted errors
                self.report.skipped[f"undecodable {conn.msgtype} on {conn.topic}"] += 1
                self.report.note(f"undecodable message on {conn.topic}: {type(exc).__name__}")
                continue
            self.report.read[conn.topic] += 1
            yield BagMessage(conn.topic, conn.msgtype, ts, msg)


def find_events_topic(path: Path | str, topics: dict[str, str]) -> str:
    """The one topic of ``topics`` (name -> type) whose type is an event packet type
    (:data:`EVENT_PACKET_TYPES`); a :class:`BagError` listing the candidates when there are
    several or none."""
    found = sorted(t for t, typ in topics.items() if typ in EVENT_PACKET_TYPES)
    if len(found) == 1:
        return found[0]
    if found:
        raise BagError(
            f"{path} has {len(found)} event topics ({', '.join(found)}): choose one with "
            "--events-topic"
        )
    listed = ", ".join(f"{t} ({typ})" for t, typ in sorted(topics.items())) or "none"
    raise BagError(
        f"{path} has no events topic (a topic of type {' or '.join(EVENT_PACKET_TYPES)}); "
        f"topics: {listed}"
    )


class EventBag:
    """A labelled event bag opened for reading.

    ``labels`` (read at open, small) and ``packets()`` (streamed) come from the events topic and
    ``/labels``; ``report`` says what was read and skipped. The events topic (``events_topic``;
    None: the one topic of an event packet type, see :func:`find_events_topic`) may hold this
    package's EventPacket or event_camera_msgs/msg/EventPacket (the same fields).
    """

    def __init__(
        self,
        path: Path | str,
        require_labels: bool = False,
        events_topic: str | None = None,
        labels_topic: str = TOPIC_LABELS,
    ) -> None:
        self.path = Path(path)
        self._reader = MessageReader(path)
        self.report = self._reader.report
        if not self.report.topics and self.report.recovered:
            raise BagError(f"{path} is damaged beyond use: no readable topic ({self.report.notes})")
        if events_topic is None:
            events_topic = find_events_topic(path, self.report.topics)
        self.events_topic, self.labels_topic = events_topic, labels_topic
        if not self._reader.has_topic(events_topic):
            raise BagError(
                f"{path} has no {events_topic} topic "
                f"(topics: {sorted(self.report.topics) or 'none'})"
            )
        msgtype = self.report.topics[events_topic]
        fields = {n for n, _ in self._reader.typestore.fielddefs.get(msgtype, ((), ()))[1]}
        if msgtype in self._reader.undecodable or not set(EVENT_PACKET_FIELDS) <= fields:
            raise BagError(
                f"{path}: {events_topic} has type {msgtype}, which is not an EventPacket"
            )
        self.labels: list[Label] = []
        if self._reader.has_topic(labels_topic):
            for m in self._reader.messages([labels_topic]):
                try:
                    self.labels.append(
                        Label(
                            int(m.msg.class_id),
                            str(m.msg.label),
                            time_to_ns(m.msg.start) // 1000,
                            time_to_ns(m.msg.end) // 1000,
                        )
                    )
                except AttributeError:
                    self.report.skipped[f"{labels_topic} message without label fields"] += 1
            self.labels.sort(key=lambda lab: lab.start_us)
        else:
            self.report.note(f"no {labels_topic} topic: no ground truth")
        if require_labels and not self.labels:
            raise BagError(f"{path} has no labels on {labels_topic}: ground truth is needed")
        self._starts = np.array([lab.start_us for lab in self.labels], dtype=np.int64)

    def packets(self) -> Iterator[EventPacketData]:
        for m in self._reader.messages([self.events_topic]):
            msg = m.msg
            try:
                yield EventPacketData(
                    log_time_ns=m.log_time_ns,
                    time_base_ns=int(msg.time_base),
                    encoding=str(msg.encoding),
                    width=int(msg.width),
                    height=int(msg.height),
                    payload=np.asarray(msg.events, dtype=np.uint8).tobytes(),
                    seq=int(getattr(msg, "seq", 0)),
                    is_bigendian=bool(getattr(msg, "is_bigendian", False)),
                    stamp_ns=time_to_ns(msg.header.stamp),
                )
            except (AttributeError, TypeError, ValueError):
                self.report.skipped[f"malformed packet on {self.events_topic}"] += 1

    def label_at(self, t_us: int) -> Label | None:
        """The label whose span holds sensor time ``t_us`` (None outside every span)."""
        if not self.labels:
            return None
        i = int(np.searchsorted(self._starts, t_us, side="right")) - 1
        if i >= 0 and self.labels[i].contains(t_us):
            return self.labels[i]
        return None

    @property
    def label_names(self) -> dict[int, str]:
        return {lab.class_id: lab.label for lab in self.labels}


def read_event_bag(
    path: Path | str, require_labels: bool = False, events_topic: str | None = None
) -> EventBag:
    """Open a labelled event bag (see :class:`EventBag`; ``events_topic`` None: found by type);
    raises :class:`BagError` if it is not one."""
    return EventBag(path, require_labels=require_labels, events_topic=events_topic)
