"""Writing rosbag2 bags (MCAP or sqlite3) without ROS: :class:`BagRecorder` for any message, and
labelled event bags (:func:`write_event_bag`, :func:`synthetic_to_bag`).

Time conventions: an event bag's log time (the message timestamp in the bag) is *sensor* time, so
``ros2 bag play`` replays at sensor pace. ``/labels`` carries :class:`GestureLabel` spans stamped
at their start (sensor time). ``/events`` packets are :class:`EventPacket` with the events encoded
by :func:`hsnn_perception.core.events.codecs.encode_packet`; their log time is the first event's
time.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from hsnn_perception.core.events.codecs import EventCodecError, check_events, encode_packet
from hsnn_perception.core.io.bag.msgtypes import (
    MSG_EVENT_PACKET,
    MSG_GESTURE_LABEL,
    STORAGES,
    TOPIC_EVENTS,
    TOPIC_LABELS,
    BagError,
    EventPacketData,
    Label,
    event_packet_message,
    label_message,
    message_from_dict,
    normalize_msgtype,
    package_typestore,
)

COMPRESSIONS = ("none", "zstd")  # what hsnn-bag convert writes (MCAP chunk compression)


def _storage_plugin(storage: str) -> Any:
    from rosbags.rosbag2 import StoragePlugin

    if storage not in STORAGES:
        raise BagError(f"storage must be one of {STORAGES}, got {storage!r}")
    return StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3


class BagRecorder:
    """Writes messages to a new rosbag2 directory; safe to call from several threads.

    ``write(topic, msgtype, ros_time_ns, data)`` takes ``data`` as serialized CDR bytes (e.g.
    ``rclpy.serialization.serialize_message(msg)``: stored as they are), a rosbags message object,
    or a dict of fields (built with :func:`message_from_dict`). A topic's type is fixed by its first
    message. The message type must be known to the typestore (the bag embeds its definition).
    """

    def __init__(
        self,
        path: Path | str,
        storage: str = "mcap",
        typestore: Any | None = None,
        custom_data: dict[str, str] | None = None,
        compression: str = "none",
    ) -> None:
        from rosbags.rosbag2 import CompressionFormat, CompressionMode, Writer, WriterError

        if compression not in COMPRESSIONS:
            raise BagError(f"compression must be one of {COMPRESSIONS}, got {compression!r}")
        if compression != "none" and storage != "mcap":
            raise BagError(f"compression {compression} is written in MCAP chunks: use mcap storage")

        self.path = Path(path)
        self.storage = storage
        self.typestore = typestore if typestore is not None else package_typestore()
        self._lock = threading.Lock()
        self._connections: dict[str, tuple[str, Any]] = {}
        self.counts: Counter[str] = Counter()
        try:
            self._writer = Writer(self.path, version=9, storage_plugin=_storage_plugin(storage))
            if compression == "zstd":  # chunk compression: read back within MAX_CHUNK_BYTES
                self._writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
            for key, value in (custom_data or {}).items():
                self._writer.set_custom_data(key, str(value))
            self._writer.open()
        except WriterError as exc:
            raise BagError(f"cannot create bag {self.path}: {exc}") from exc
        self._open = True

    def _connection(self, topic: str, msgtype: str) -> Any:
        known = self._connections.get(topic)
        if known is not None:
            if known[0] != msgtype:
                raise BagError(f"topic {topic} has type {known[0]}, cannot write a {msgtype}")
            return known[1]
        if msgtype not in self.typestore.fielddefs:
            raise BagError(
                f"unknown message type {msgtype} for {topic}: register it in the typestore"
            )
        conn = self._writer.add_connection(topic, msgtype, typestore=self.typestore)
        self._connections[topic] = (msgtype, conn)
        return conn

    def write(self, topic: str, msgtype: str, ros_time_ns: int, data: Any) -> None:
        """Append one message with log time ``ros_time_ns``."""
        msgtype = normalize_msgtype(msgtype)
        if isinstance(data, (bytes, bytearray, memoryview)):
            raw = bytes(data)
            if len(raw) < 4 or raw[0] != 0 or raw[1] not in (0, 1):
                raise BagError(f"{topic}: data is not CDR (no encapsulation header)")
        elif isinstance(data, dict):
            raw = self.typestore.serialize_cdr(
                message_from_dict(self.typestore, msgtype, data), msgtype
            )
        elif getattr(data, "__msgtype__", None) == msgtype:
            raw = self.typestore.serialize_cdr(data, msgtype)
        else:
            raise BagError(
                f"{topic}: data must be CDR bytes, a dict or a {msgtype} object, "
                f"got {type(data).__name__}"
            )
        if ros_time_ns < 0:
            raise BagError(f"{topic}: negative log time {ros_time_ns}")
        with self._lock:
            if not self._open:
                raise BagError(f"bag {self.path} is closed")
            conn = self._connection(topic, msgtype)
            self._writer.write(conn, int(ros_time_ns), raw)
            self.counts[topic] += 1

    def close(self) -> None:
        with self._lock:
            if self._open:
                self._open = False
                self._writer.close()

    def __enter__(self) -> BagRecorder:
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is None:
            self.close()
        else:  # keep what was written: a bag that closes is more useful than none
            self.close()


def packetize(
    events: NDArray[Any],
    packet_us: int,
    width: int,
    height: int,
    encoding: str = "mono",
    seq0: int = 0,
) -> list[EventPacketData]:
    """Cut time-sorted ``events`` into packets of at most ``packet_us`` of sensor time each."""
    check_events(events)
    if packet_us < 1:
        raise BagError(f"packet_us must be >= 1, got {packet_us}")
    if events.size == 0:
        return []
    slot = (events["t"] - events["t"][0]) // packet_us
    cuts = np.flatnonzero(np.diff(slot)) + 1
    out = []
    for i, chunk in enumerate(np.split(events, cuts)):
        try:
            time_base, payload = encode_packet(chunk, encoding, width, height)
        except EventCodecError as exc:
            raise BagError(f"cannot encode events: {exc}") from exc
        t_ns = int(chunk["t"][0]) * 1000
        out.append(
            EventPacketData(
                t_ns, time_base, encoding, width, height, payload, seq0 + i, False, t_ns
            )
        )
    return out


def write_event_bag(
    path: Path | str,
    packets: Iterable[EventPacketData],
    labels: Iterable[Label] = (),
    storage: str = "mcap",
    custom_data: dict[str, str] | None = None,
    compression: str = "none",
) -> dict[str, int]:
    """Write a labelled event bag: ``/events`` and ``/labels`` with log time = sensor time.

    ``packets`` must come in time order (streamed, never all in memory); ``labels`` are merged in
    at their start time. Returns the message count per topic.
    """
    store = package_typestore()
    pending = sorted(labels, key=lambda lab: lab.start_us)
    for lab in pending:
        if lab.end_us <= lab.start_us or lab.start_us < 0:
            raise BagError(f"label {lab} does not span a positive time range")
    li = 0
    with BagRecorder(path, storage, store, custom_data, compression) as rec:
        last = -1
        for pkt in packets:
            if pkt.log_time_ns < last:
                raise BagError(
                    f"packets are not in time order ({pkt.log_time_ns} ns after {last} ns)"
                )
            last = pkt.log_time_ns
            while li < len(pending) and pending[li].start_us * 1000 <= pkt.log_time_ns:
                lab = pending[li]
                rec.write(
                    TOPIC_LABELS, MSG_GESTURE_LABEL, lab.start_us * 1000, label_message(store, lab)
                )
                li += 1
            rec.write(
                TOPIC_EVENTS, MSG_EVENT_PACKET, pkt.log_time_ns, event_packet_message(store, pkt)
            )
        for lab in pending[li:]:
            rec.write(
                TOPIC_LABELS, MSG_GESTURE_LABEL, lab.start_us * 1000, label_message(store, lab)
            )
        return dict(rec.counts)


def synthetic_to_bag(
    path: Path | str,
    n_samples: int,
    seed: int = 0,
    storage: str = "mcap",
    packet_us: int = 10_000,
    encoding: str = "mono",
    height: int = 128,
    width: int = 128,
    sample_us: int = 160_000,
    compression: str = "none",
    progress: Callable[[float], None] | None = None,
) -> dict[str, int]:
    """Synthetic gesture set -> labelled event bag (one label per sample); ``progress`` gets the
    fraction of samples written so far."""
    from hsnn_perception.core.events.synthetic import SyntheticGestures

    gen = SyntheticGestures(height=height, width=width, seed=seed, sample_us=sample_us)
    labels: list[Label] = []

    def packets() -> Iterator[EventPacketData]:
        seq = 0
        for done, (events, class_id, t0, t1) in enumerate(gen.stream(n_samples)):
            labels.append(Label(class_id, gen.labels[class_id], t0, t1))
            for pkt in packetize(events, packet_us, width, height, encoding, seq):
                seq += 1
                yield pkt
            if progress is not None:
                progress((done + 1) / max(n_samples, 1))

    # Labels are known only while the stream runs; write them as they come (each precedes its
    # sample's packets, as sample starts are increasing).
    store = package_typestore()
    with BagRecorder(
        path,
        storage,
        store,
        {
            "hsnn.source": f"synthetic seed={seed} n={n_samples}",
            "hsnn.labels": ",".join(gen.labels),
        },
        compression,
    ) as rec:
        written = 0
        for pkt in packets():
            while written < len(labels):
                lab = labels[written]
                rec.write(
                    TOPIC_LABELS, MSG_GESTURE_LABEL, lab.start_us * 1000, label_message(store, lab)
                )
                written += 1
            rec.write(
                TOPIC_EVENTS, MSG_EVENT_PACKET, pkt.log_time_ns, event_packet_message(store, pkt)
            )
        for lab in labels[written:]:  # samples without events
            rec.write(
                TOPIC_LABELS, MSG_GESTURE_LABEL, lab.start_us * 1000, label_message(store, lab)
            )
        return dict(rec.counts)
