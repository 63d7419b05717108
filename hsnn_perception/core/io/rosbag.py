"""rosbag2 files (MCAP and sqlite3) without ROS: record, convert to labelled event bags, read back.

Built on the pure-Python ``rosbags`` library. The package's own message types are registered from
the ``.msg`` text in ``msg/`` (next to this package in a checkout, or the install share dir) on top
of a ROS 2 distribution's store (std_msgs, builtin_interfaces, diagnostic_msgs ...), so every bag
carries the full message definitions and RIHS01 type hashes: in MCAP as schema records, in sqlite3
(format version 9) in the ``message_definitions`` table. ``ros2 bag info/play`` on a full ROS 2
install can therefore read them, and so can foreign tools (Foxglove).

Time conventions: an event bag's log time (the message timestamp in the bag) is *sensor* time, so
``ros2 bag play`` replays at sensor pace. ``/labels`` carries :class:`GestureLabel` spans stamped
at their start (sensor time). ``/events`` packets are :class:`EventPacket` with the events encoded
by :func:`hsnn_perception.core.events.codecs.encode_packet`; their log time is the first
event's time.

Reading is forgiving where a file is damaged but still a bag: a truncated MCAP (a recorder that
died) or sqlite3 file, a missing ``metadata.yaml``, undecodable messages, unknown types: what can
be read is read and :class:`ReadReport` says what was skipped. What is not a bag at all raises
:class:`BagError`.

Reading is bounded where a file could make it unbounded (see docs/hostile_inputs.md): an MCAP chunk
is decompressed only if it declares at most :data:`MAX_CHUNK_BYTES`, and never to more than it
declares (a 33 KB zstd "bomb" stops at its declared size instead of expanding to gigabytes); a
stored message larger than :data:`MAX_MESSAGE_BYTES` is skipped; a chunk that fails (bad
compressed data, checksum, size) is skipped and counted and reading goes on with the next one; a
damaged record length is stepped over by searching for the next well-formed chunk. rosbag2's own
zstd compression (compression_mode file or message) is decompressed by this module within
limits too (:func:`bounded_decompress_file`, MAX_MESSAGE_BYTES), never by rosbags. A split bag
(several storage files) is read whole, in recording order. Bags without embedded definitions
(sqlite3 before Iron) decode with the known ones: this package's types and event_camera_msgs'
EventPacket.
"""

from __future__ import annotations

import csv
import io
import mmap
import re
import sqlite3
import struct
import threading
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from hsnn_perception.core.errors import RecordingError
from hsnn_perception.core.events.codecs import (
    EVENT_DTYPE,
    EventCodecError,
    check_events,
    decode_packet,
    encode_packet,
)

PACKAGE = "hsnn_perception"

TOPIC_EVENTS = "/events"
TOPIC_LABELS = "/labels"
TOPIC_SNN_SPIKES = "/snn/spikes"
TOPIC_TENSORS = "/tensors"
TOPIC_CLASSIFICATION = "/classification"
TOPIC_ENERGY = "/energy"
TOPIC_ENERGY_TOTAL = "/energy/total"
TOPIC_DIAGNOSTICS = "/diagnostics"

MSG_EVENT_PACKET = f"{PACKAGE}/msg/EventPacket"
# Event packet types the pipeline reads and writes: ours, and the stock event-camera drivers'
# (metavision_driver, libcaer_driver). Same fields; DDS and bags tell them apart by name and hash.
MSG_EVENT_CAMERA_PACKET = "event_camera_msgs/msg/EventPacket"
EVENT_PACKET_TYPES = (MSG_EVENT_PACKET, MSG_EVENT_CAMERA_PACKET)
# event_camera_msgs' EventPacket (its msg_ros2/EventPacket.msg fields): known without the bag's
# own definition, which bags of rosbag2 before Iron (sqlite3, no message_definitions) lack.
EVENT_CAMERA_PACKET_MSG = """std_msgs/Header header
uint32 height
uint32 width
uint64 seq
uint64 time_base
string encoding
bool is_bigendian
uint8[] events
"""
MSG_GESTURE_LABEL = f"{PACKAGE}/msg/GestureLabel"
MSG_TENSOR_LIST = f"{PACKAGE}/msg/TensorList"
MSG_CLASSIFICATION = f"{PACKAGE}/msg/Classification"
MSG_ENERGY_REPORT = f"{PACKAGE}/msg/EnergyReport"
MSG_DIAGNOSTIC_ARRAY = "diagnostic_msgs/msg/DiagnosticArray"

TOPIC_TYPES: dict[str, str] = {
    TOPIC_EVENTS: MSG_EVENT_PACKET,
    TOPIC_LABELS: MSG_GESTURE_LABEL,
    TOPIC_SNN_SPIKES: MSG_TENSOR_LIST,
    TOPIC_TENSORS: MSG_TENSOR_LIST,
    TOPIC_CLASSIFICATION: MSG_CLASSIFICATION,
    TOPIC_ENERGY: MSG_ENERGY_REPORT,
    TOPIC_ENERGY_TOTAL: MSG_ENERGY_REPORT,
    TOPIC_DIAGNOSTICS: MSG_DIAGNOSTIC_ARRAY,
}

STORAGES = ("mcap", "sqlite3")
DEFAULT_DISTRO = "ROS2_KILTED"

# Fields an event packet type must have (ours, or event_camera_msgs/msg/EventPacket: same fields).
_EVENT_PACKET_FIELDS = ("header", "height", "width", "time_base", "encoding", "events")
_MCAP_MAGIC = b"\x89MCAP0\r\n"
_SQLITE_MAGIC = b"SQLite format 3\x00"

# What one MCAP chunk may decompress to. rosbag2 writes chunks of ~1-4 MiB (rosbags: 1 MiB), so
# 128 MiB leaves room for unusual recorders while keeping a hostile chunk from taking gigabytes.
MAX_CHUNK_BYTES = 128 << 20
# One stored message (an event packet of a few ms is tens of KB; 64 MiB = 8M events).
MAX_MESSAGE_BYTES = 64 << 20
# metadata.yaml of a real bag is a few KB.
MAX_METADATA_BYTES = 1 << 20
_MCAP_COMPRESSIONS = ("", "zstd", "lz4")
# A whole bag file compressed with zstd (rosbag2 compression_mode file) is decompressed to a
# temporary directory, at most this many times its size (rosbag2's own files compress a few
# times; a zstd bomb some 30000 times) and never beyond MAX_FILE_BYTES.
MAX_FILE_RATIO = 100
MIN_FILE_LIMIT = 256 << 20
MAX_FILE_BYTES = 16 << 30
COMPRESSIONS = ("none", "zstd")  # what hsnn-bag convert writes (MCAP chunk compression)
_MCAP_OPS = set(range(0x01, 0x11))  # record types of MCAP v0; others are skipped and counted


class BagError(RecordingError, ValueError):
    """A path is not a readable rosbag2, or a bag cannot be written as asked."""


class ChunkError(RecordingError, ValueError):
    """An MCAP chunk that cannot be used: over the size limit, bad compressed data, checksum."""


def bounded_decompress(
    data: bytes, compression: str, declared: int, limit: int = MAX_CHUNK_BYTES
) -> bytes:
    """Decompress an MCAP chunk to exactly its ``declared`` uncompressed size, refusing before any
    work a declaration above ``limit`` and stopping as soon as the output would exceed it."""
    if declared < 0 or declared > limit:
        raise ChunkError(f"chunk declares {declared} uncompressed bytes (limit {limit})")
    if compression == "":
        out = bytes(data)
    elif compression in ("zstd", "lz4"):
        out = _decompress_frames(data, compression, declared)
    else:
        raise ChunkError(f"unknown chunk compression {compression!r}")
    if len(out) != declared:
        raise ChunkError(f"chunk holds {len(out)} bytes, it declares {declared}")
    return out


def _zstd() -> Any:
    try:
        from compression import zstd  # Python >= 3.14
    except ImportError:
        from backports import zstd
    return zstd


def _decompress_frames(data: bytes, compression: str, declared: int) -> bytes:
    """Concatenated zstd/lz4 frames, never producing more than ``declared + 1`` bytes."""
    if compression == "zstd":
        zstd = _zstd()
        new, errors = zstd.ZstdDecompressor, (zstd.ZstdError,)
    else:
        from lz4.frame import LZ4FrameDecompressor

        new, errors = LZ4FrameDecompressor, (RuntimeError,)
    parts: list[bytes] = []
    total, rest = 0, bytes(data)
    try:
        while rest:
            dec = new()
            out = dec.decompress(rest, max_length=declared - total + 1)
            total += len(out)
            parts.append(out)
            if total > declared:
                raise ChunkError(
                    f"{compression} data expands beyond the {declared} bytes the chunk declares "
                    "(decompression bomb?)"
                )
            if not dec.eof:
                raise ChunkError(f"{compression} data is cut off")
            rest = dec.unused_data
    except errors as exc:
        raise ChunkError(f"bad {compression} data: {exc}") from exc
    return b"".join(parts)


def file_decompression_limit(compressed_bytes: int) -> int:
    """What a zstd-compressed bag file may expand to: :data:`MAX_FILE_RATIO` times its size (at
    least :data:`MIN_FILE_LIMIT`), never more than :data:`MAX_FILE_BYTES`."""
    return min(MAX_FILE_BYTES, max(MIN_FILE_LIMIT, MAX_FILE_RATIO * int(compressed_bytes)))


def bounded_decompress_file(src: Path, dst: Path, limit: int) -> int:
    """Stream the zstd frames of ``src`` into ``dst``, stopping with a :class:`ChunkError` as soon
    as the output would exceed ``limit`` bytes (a zstd bomb), or on bad or cut-off data. Returns
    the bytes written."""
    zstd = _zstd()
    step = 1 << 22
    total = 0
    try:
        with src.open("rb") as fin, dst.open("wb") as fout:
            dec, started = zstd.ZstdDecompressor(), False
            while True:
                if dec.eof:  # next frame: what the last call left over, then the file
                    rest = dec.unused_data
                    dec, started = zstd.ZstdDecompressor(), False
                    out = dec.decompress(rest, max_length=step) if rest else b""
                    started = bool(rest)
                elif dec.needs_input:
                    chunk = fin.read(step)
                    if not chunk:
                        if started:
                            raise ChunkError(f"{src.name}: zstd data is cut off")
                        break
                    out, started = dec.decompress(chunk, max_length=step), True
                else:
                    out = dec.decompress(b"", max_length=step)
                total += len(out)
                if total > limit:
                    raise ChunkError(
                        f"{src.name} expands beyond {limit} bytes ({src.stat().st_size} "
                        "compressed; decompression bomb?)"
                    )
                fout.write(out)
    except zstd.ZstdError as exc:
        raise ChunkError(f"{src.name}: bad zstd data: {exc}") from exc
    return total


_BOUNDED_INSTALLED = False


def _install_bounded_decompressors() -> None:
    """Make the rosbags MCAP reader decompress through :func:`bounded_decompress`.

    rosbags decompresses a whole chunk before comparing it with the size the chunk declares, so
    a small chunk could expand to gigabytes first; its decompressor table is the one place that
    sees both the data and the declared size. Process-wide, and only ever stricter.
    """
    global _BOUNDED_INSTALLED
    if _BOUNDED_INSTALLED:
        return
    from rosbags.rosbag2 import storage_mcap

    for name in _MCAP_COMPRESSIONS:
        storage_mcap.DECOMPRESSORS[name] = lambda data, size, _name=name: bounded_decompress(
            data, _name, size
        )
    _BOUNDED_INSTALLED = True


# --------------------------------------------------------------------------------------------
# Types
# --------------------------------------------------------------------------------------------


def msg_dir() -> Path:
    """The directory holding the package's ``.msg`` files (checkout, else the install share)."""
    here = Path(__file__).resolve()
    candidates = [here.parents[2] / "msg"]
    try:
        from ament_index_python.packages import get_package_share_directory

        candidates.append(Path(get_package_share_directory(PACKAGE)) / "msg")
    except Exception:  # no ament index: only the checkout can have it
        pass
    for cand in candidates:
        if cand.is_dir() and any(cand.glob("*.msg")):
            return cand
    raise BagError(f"cannot find the {PACKAGE} .msg files (looked in {candidates})")


def normalize_msgtype(msgtype: str) -> str:
    """``pkg/Type`` or ``pkg/msg/Type`` -> ``pkg/msg/Type`` (the form bags and rosbags use)."""
    parts = msgtype.strip().split("/")
    if len(parts) == 2 and all(parts):
        return f"{parts[0]}/msg/{parts[1]}"
    if len(parts) == 3 and all(parts):
        return msgtype.strip()
    raise BagError(f"not a ROS message type name: {msgtype!r} (expected pkg/msg/Type)")


@lru_cache(maxsize=4)
def _cached_typestore(distro: str, directory: str) -> Any:
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    try:
        store = get_typestore(getattr(Stores, distro))
    except AttributeError:
        raise BagError(f"unknown ROS distribution store {distro!r}") from None
    types: dict[str, Any] = {}
    for path in sorted(Path(directory).glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"{PACKAGE}/msg/{path.stem}"))
    if MSG_EVENT_CAMERA_PACKET not in store.fielddefs:
        types.update(get_types_from_msg(EVENT_CAMERA_PACKET_MSG, MSG_EVENT_CAMERA_PACKET))
    store.register(types)
    return store


def package_typestore(distro: str = DEFAULT_DISTRO, directory: Path | None = None) -> Any:
    """A rosbags ``Typestore`` of a ROS 2 distribution plus this package's message types.

    Shared (cached) per distro: register extra types on a copy, not on this object.
    """
    return _cached_typestore(distro, str(directory or msg_dir()))


def _zero_value(store: Any, desc: tuple) -> Any:
    from rosbags.typesys.base import Nodetype

    kind, rest = desc
    if kind == Nodetype.BASE:
        name = rest[0]
        if name == "string":
            return ""
        if name == "bool":
            return False
        if name in ("float32", "float64"):
            return 0.0
        return 0
    if kind == Nodetype.NAME:
        return message_from_dict(store, rest, {})
    if kind == Nodetype.ARRAY:
        sub, count = rest
        if sub[0] == Nodetype.BASE and sub[1][0] not in ("string", "bool"):
            return np.zeros(count, dtype=_NUMPY_TYPES.get(sub[1][0], np.uint8))
        return [_zero_value(store, sub) for _ in range(count)]
    return _empty_sequence(rest[0])


_NUMPY_TYPES = {
    "int8": np.int8,
    "uint8": np.uint8,
    "byte": np.uint8,
    "char": np.uint8,
    "int16": np.int16,
    "uint16": np.uint16,
    "int32": np.int32,
    "uint32": np.uint32,
    "int64": np.int64,
    "uint64": np.uint64,
    "float32": np.float32,
    "float64": np.float64,
}


def _empty_sequence(sub: tuple) -> Any:
    from rosbags.typesys.base import Nodetype

    if sub[0] == Nodetype.BASE and sub[1][0] in _NUMPY_TYPES:
        return np.zeros(0, dtype=_NUMPY_TYPES[sub[1][0]])
    return []


def _convert(store: Any, desc: tuple, value: Any, where: str) -> Any:
    from rosbags.typesys.base import Nodetype

    kind, rest = desc
    if kind == Nodetype.BASE:
        name = rest[0]
        if name == "string":
            return str(value)
        if name == "bool":
            return bool(value)
        if name in ("float32", "float64"):
            return float(value)
        if name in ("byte", "char") and isinstance(value, (bytes, bytearray)):
            return int(value[0]) if value else 0
        return int(value)
    if kind == Nodetype.NAME:
        if isinstance(value, dict):
            return message_from_dict(store, rest, value, where)
        return value  # already a message object
    sub = rest[0]
    if sub[0] == Nodetype.BASE and sub[1][0] in _NUMPY_TYPES:
        dtype = _NUMPY_TYPES[sub[1][0]]
        if isinstance(value, (bytes, bytearray, memoryview)):
            return np.frombuffer(value, dtype=np.uint8).view(dtype).copy()
        return np.asarray(value, dtype=dtype)
    return [_convert(store, sub, v, f"{where}[]") for v in value]


def message_from_dict(store: Any, msgtype: str, doc: dict[str, Any], where: str = "") -> Any:
    """Build a rosbags message object of ``msgtype`` from a (nested) dict; missing fields are 0."""
    msgtype = normalize_msgtype(msgtype)
    if msgtype not in store.fielddefs:
        raise BagError(f"unknown message type {msgtype!r}")
    _, fields = store.fielddefs[msgtype]
    names = {name for name, _ in fields}
    extra = set(doc) - names
    if extra:
        raise BagError(f"{where or msgtype}: no field(s) {sorted(extra)} in {msgtype}")
    kwargs = {}
    for name, desc in fields:
        try:
            if name in doc:
                kwargs[name] = _convert(store, desc, doc[name], f"{where or msgtype}.{name}")
            else:
                kwargs[name] = _zero_value(store, desc)
        except (TypeError, ValueError) as exc:
            if isinstance(exc, BagError):
                raise
            raise BagError(
                f"{where or msgtype}.{name}: bad value {doc.get(name)!r}: {exc}"
            ) from exc
    return store.types[msgtype](**kwargs)


def ns_to_time(store: Any, ns: int) -> Any:
    """builtin_interfaces/Time of ``ns`` nanoseconds."""
    sec, nsec = divmod(int(ns), 1_000_000_000)
    return store.types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nsec)


def time_to_ns(stamp: Any) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


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


@dataclass(frozen=True)
class Label:
    """Ground truth for ``[start_us, end_us)`` of sensor time."""

    class_id: int
    label: str
    start_us: int
    end_us: int

    def contains(self, t_us: int) -> bool:
        return self.start_us <= t_us < self.end_us


@dataclass(frozen=True)
class EventPacketData:
    """One EventPacket as read from (or to be written to) a bag; ``payload`` is still encoded."""

    log_time_ns: int
    time_base_ns: int
    encoding: str
    width: int
    height: int
    payload: bytes
    seq: int = 0
    is_bigendian: bool = False
    stamp_ns: int = 0

    def decode(self, strict: bool = True, drops: Counter | None = None) -> np.ndarray:
        """The events (EVENT_DTYPE, t in us of sensor time)."""
        return decode_packet(
            self.payload,
            self.encoding,
            self.time_base_ns,
            self.width,
            self.height,
            self.is_bigendian,
            strict=strict,
            drops=drops,
        )


def packetize(
    events: np.ndarray,
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


def event_packet_message(store: Any, pkt: EventPacketData) -> Any:
    return store.types[MSG_EVENT_PACKET](
        header=store.types["std_msgs/msg/Header"](
            stamp=ns_to_time(store, pkt.stamp_ns or pkt.log_time_ns), frame_id="event_camera"
        ),
        height=pkt.height,
        width=pkt.width,
        seq=pkt.seq,
        time_base=pkt.time_base_ns,
        encoding=pkt.encoding,
        is_bigendian=pkt.is_bigendian,
        events=np.frombuffer(pkt.payload, dtype=np.uint8),
    )


def label_message(store: Any, label: Label) -> Any:
    start = ns_to_time(store, label.start_us * 1000)
    return store.types[MSG_GESTURE_LABEL](
        header=store.types["std_msgs/msg/Header"](stamp=start, frame_id="event_camera"),
        start=start,
        end=ns_to_time(store, label.end_us * 1000),
        class_id=int(label.class_id),
        label=label.label,
    )


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
) -> dict[str, int]:
    """Synthetic gesture set -> labelled event bag (one label per sample)."""
    from hsnn_perception.core.events.synthetic import SyntheticGestures

    gen = SyntheticGestures(height=height, width=width, seed=seed, sample_us=sample_us)
    labels: list[Label] = []

    def packets() -> Iterator[EventPacketData]:
        seq = 0
        for events, class_id, t0, t1 in gen.stream(n_samples):
            labels.append(Label(class_id, gen.labels[class_id], t0, t1))
            for pkt in packetize(events, packet_us, width, height, encoding, seq):
                seq += 1
                yield pkt

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


def read_label_csv(
    path: Path | str, class_base: int = 0, names: Iterable[str] | None = None
) -> list[Label]:
    """Read ``class,start_us,end_us`` rows (a header row is skipped; DvsGesture's label files have
    one and count classes from 1: pass ``class_base=1``). ``class`` may also be a name in ``names``.
    """
    names = list(names or [])
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise BagError(f"cannot read label file {path}: {exc}") from exc
    labels = []
    for lineno, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        if len(row) < 3:
            raise BagError(f"{path}:{lineno}: expected class,start_us,end_us, got {row}")
        cls, start, end = (c.strip() for c in row[:3])
        try:
            start_us, end_us = int(float(start)), int(float(end))
        except ValueError:
            if lineno == 1:
                continue  # header
            raise BagError(f"{path}:{lineno}: start/end are not numbers: {row}") from None
        if cls in names:
            class_id = names.index(cls)
        else:
            try:
                class_id = int(cls) - class_base
            except ValueError:
                raise BagError(f"{path}:{lineno}: unknown class {cls!r}") from None
        if class_id < 0 or (names and class_id >= len(names)):
            raise BagError(f"{path}:{lineno}: class {cls} out of range")
        if end_us <= start_us:
            raise BagError(f"{path}:{lineno}: end {end_us} is not after start {start_us}")
        name = names[class_id] if names and class_id < len(names) else str(class_id)
        labels.append(Label(class_id, name, start_us, end_us))
    if not labels:
        raise BagError(f"{path}: no labels")
    return labels


LABELS_OUTSIDE = "labels outside the recording"


def aedat4_to_bag(
    aedat_path: Path | str,
    labels_csv: Path | str | None,
    path: Path | str,
    storage: str = "mcap",
    packet_us: int = 10_000,
    encoding: str = "mono",
    class_base: int = 0,
    names: Iterable[str] | None = None,
    read_timeout_s: float | None = None,
    compression: str = "none",
    max_us: int = 0,
) -> dict[str, int]:
    """AEDAT4 recording (+ label CSV) -> labelled event bag, via dv-processing.

    dv-processing reads in a worker process; ``read_timeout_s`` (default the reader's
    ``READ_TIMEOUT_S``) without progress on a damaged file is a BagError.

    ``max_us`` > 0 keeps only the first ``max_us`` of sensor time. ``compression`` "zstd":
    compressed MCAP chunks.

    Returns the messages written per topic, and under ``"labels outside the recording"`` how
    many label spans cover none of the recording's time (a CSV of another recording, or times
    in another unit); they are written all the same.
    """
    from hsnn_perception.core.sources.dv import READ_TIMEOUT_S, Aedat4Reader, SourceError

    aedat_path = Path(aedat_path)
    if not aedat_path.is_file():
        raise BagError(f"no AEDAT4 file at {aedat_path}")
    labels = read_label_csv(labels_csv, class_base, names) if labels_csv is not None else []
    try:
        # dv-processing reads in a worker process: a damaged file that makes it hang or crash
        # becomes a BagError instead of a process stuck for ever
        reader = Aedat4Reader(aedat_path, timeout_s=read_timeout_s or READ_TIMEOUT_S)
    except SourceError as exc:
        raise BagError(f"cannot open {aedat_path} as AEDAT4: {exc}") from exc
    width, height = reader.width, reader.height

    seen = {"first": None, "last": None}  # sensor time the recording covers

    def batches() -> Iterator[np.ndarray]:
        while True:
            try:
                got = reader.next_batch()
            except SourceError as exc:
                raise BagError(f"reading {aedat_path} failed: {exc}") from exc
            if got is None:
                return
            yield got[0]

    packets = _batch_packets(batches(), packet_us, width, height, encoding, max_us, seen)
    try:
        counts = write_event_bag(
            path,
            packets,
            labels,
            storage,
            {"hsnn.source": f"aedat4 {aedat_path.name}"},
            compression,
        )
    finally:
        reader.close()
    if labels and seen["first"] is not None:
        outside = sum(
            1 for lab in labels if lab.end_us <= seen["first"] or lab.start_us > seen["last"]
        )
        if outside:
            counts[LABELS_OUTSIDE] = outside
    return counts


def _batch_packets(
    batches: Iterable[np.ndarray],
    packet_us: int,
    width: int,
    height: int,
    encoding: str,
    max_us: int,
    seen: dict[str, int | None],
) -> Iterator[EventPacketData]:
    """Event batches of a recording (time-sorted each) -> packets on a fixed grid of sensor time,
    so batch edges do not matter; ``max_us`` > 0 stops after that much sensor time. ``seen``
    gets the first and last event times."""
    seq = 0
    carry = np.zeros(0, dtype=EVENT_DTYPE)
    for ev in batches:
        if ev.size == 0:
            continue
        if seen["first"] is None:
            seen["first"] = int(ev["t"][0])
        cut = bool(max_us) and int(ev["t"][-1]) >= seen["first"] + max_us
        if cut:
            ev = ev[ev["t"] < seen["first"] + max_us]
        if ev.size:
            seen["last"] = int(ev["t"][-1])
            ev = np.concatenate([carry, ev])
            # the last (possibly incomplete) slot waits for the next batch
            slot = ev["t"] // packet_us
            keep = slot == slot[-1]
            done, carry = ev[~keep], ev[keep]
            for pkt in _grid_packets(done, packet_us, width, height, encoding, seq):
                seq += 1
                yield pkt
        if cut:
            break
    yield from _grid_packets(carry, packet_us, width, height, encoding, seq)


RAW_READ_BYTES = 1 << 20


def read_evt3_raw_header(raw_path: Path) -> tuple[int, int, int]:
    """(width, height, offset of the event data) of a Prophesee EVT 3.0 ``.raw`` file: its
    header is text lines starting with ``%`` (``% geometry WxH`` or ``% format
    EVT3;height=H;width=W``)."""
    with raw_path.open("rb") as f:
        offset, lines = 0, []
        while True:
            if f.read(1) != b"%":
                break
            line = f.readline(4096)
            if not line.endswith(b"\n"):
                raise BagError(f"{raw_path}: header line at byte {offset} is not terminated")
            lines.append(line.decode("ascii", errors="replace").strip())
            offset = f.tell()
    text = "\n".join(lines)
    if lines and not re.search(r"\bevt ?3|EVT3", text, re.IGNORECASE):
        raise BagError(f"{raw_path}: the header names no EVT 3.0 format ({lines[:3]}...)")
    geo = re.search(r"geometry\s+(\d+)x(\d+)", text)
    if geo:
        return int(geo.group(1)), int(geo.group(2)), offset
    w, h = re.search(r"width=(\d+)", text), re.search(r"height=(\d+)", text)
    if w and h:
        return int(w.group(1)), int(h.group(1)), offset
    raise BagError(f"{raw_path}: no sensor geometry in the header (% geometry WxH)")


def evt3_raw_to_bag(
    raw_path: Path | str,
    path: Path | str,
    storage: str = "mcap",
    packet_us: int = 10_000,
    encoding: str = "evt3",
    max_us: int = 0,
    compression: str = "none",
) -> dict[str, int]:
    """A Prophesee EVT 3.0 ``.raw`` recording -> event bag (no labels), re-cut into packets of
    ``packet_us`` of sensor time and written in ``encoding``; ``max_us`` > 0: only the first
    ``max_us`` of sensor time. Words that are no events (triggers, padding) are counted by the
    decoder and left out."""
    from hsnn_perception.core.events.codecs import Evt3State

    raw_path = Path(raw_path)
    if not raw_path.is_file():
        raise BagError(f"no EVT3 .raw file at {raw_path}")
    width, height, offset = read_evt3_raw_header(raw_path)
    drops: Counter = Counter()

    def batches() -> Iterator[np.ndarray]:
        state = Evt3State()  # the stream is cut into reads anywhere: carry the decoder state
        with raw_path.open("rb") as f:
            f.seek(offset)
            while chunk := f.read(RAW_READ_BYTES):
                try:
                    ev = decode_packet(
                        chunk, "evt3", 0, width, height, strict=False, drops=drops, evt3_state=state
                    )
                except EventCodecError as exc:
                    raise BagError(f"{raw_path}: {exc}") from exc
                # sensor readout order is nearly, not exactly, time order
                yield ev[np.argsort(ev["t"], kind="stable")]

    seen: dict[str, int | None] = {"first": None, "last": None}
    packets = _batch_packets(batches(), packet_us, width, height, encoding, max_us, seen)
    return write_event_bag(
        path, packets, (), storage, {"hsnn.source": f"evt3 raw {raw_path.name}"}, compression
    )


def _grid_packets(
    events: np.ndarray, packet_us: int, width: int, height: int, encoding: str, seq0: int
) -> list[EventPacketData]:
    if events.size == 0:
        return []
    slot = events["t"] // packet_us
    cuts = np.flatnonzero(np.diff(slot)) + 1
    out = []
    for i, chunk in enumerate(np.split(events, cuts)):
        out.extend(packetize(chunk, packet_us, width, height, encoding, seq0 + i))
    return out


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


@dataclass
class ReadReport:
    """What reading a bag found, and what it had to skip."""

    path: str
    storage: str = ""
    recovered: bool = False  # read by the recovery scanner (bag index or metadata damaged)
    topics: dict[str, str] = field(default_factory=dict)  # topic -> msgtype
    read: Counter = field(default_factory=Counter)  # topic -> messages read
    expected: dict[str, int] = field(default_factory=dict)  # topic -> count the index announces
    skipped: Counter = field(default_factory=Counter)  # reason -> messages (or bytes) skipped
    notes: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.recovered and not self.skipped

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "storage": self.storage,
            "recovered": self.recovered,
            "topics": dict(self.topics),
            "read": dict(self.read),
            "expected": dict(self.expected),
            "skipped": dict(self.skipped),
            "notes": list(self.notes),
        }

    def summary(self) -> str:
        lines = [f"{self.path} ({self.storage}{', recovered' if self.recovered else ''})"]
        lines += [f"  read {n} on {t}" for t, n in sorted(self.read.items())]
        lines += [f"  skipped {n}: {why}" for why, n in sorted(self.skipped.items())]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


@dataclass(frozen=True)
class _Conn:
    topic: str
    msgtype: str
    msgdef: str  # ros2msg text ("" when the bag has none)


class _Source:
    """Raw messages of a bag: ``connections`` and ``messages(topics)`` -> (conn, log_ns, raw)."""

    connections: list[_Conn]
    keep: Any = None  # what must live as long as the source (a temporary directory)

    def messages(self, topics: set[str]) -> Iterator[tuple[_Conn, int, bytes]]:
        raise NotImplementedError


class _RosbagsSource(_Source):
    """A bag read through its index (rosbags); ``storage_files``: its files in recording order
    (several for a split bag; all are read)."""

    def __init__(self, path: Path, report: ReadReport, storage_files: list[Path]) -> None:
        from rosbags.rosbag2 import Reader

        _install_bounded_decompressors()
        self.path, self.report, self.storage_files = path, report, storage_files
        self._reader = Reader(path)
        self._reader.open()  # raises on damage; the caller falls back to recovery
        self._by_id: dict[int, _Conn] = {}
        try:
            for c in self._reader.connections:
                text = c.msgdef.data if c.msgdef is not None else ""
                self._by_id[c.id] = _Conn(c.topic, c.msgtype, text or "")
                report.expected[c.topic] = report.expected.get(c.topic, 0) + int(c.msgcount)
        finally:
            self._reader.close()
        self.connections = list(dict.fromkeys(self._by_id.values()))

    def messages(self, topics: set[str]) -> Iterator[tuple[_Conn, int, bytes]]:
        if self.report.storage == "sqlite3":
            # rows are streamed with a size check before each blob is fetched; split files
            # follow each other in time
            for db in self.storage_files:
                yield from _sqlite_messages(db, self._db_topics(db), topics, self.report)
            return
        from rosbags.rosbag2 import Reader

        last_ns: int | None = None
        at_last: Counter = Counter()  # (topic, raw size) of what was yielded at ``last_ns``
        with Reader(self.path) as reader:
            conns = [c for c in reader.connections if c.topic in topics]
            if not conns:
                return
            it = reader.messages(connections=conns)
            while True:
                try:
                    conn, ts, raw = next(it)
                except StopIteration:
                    return
                except Exception as exc:  # a damaged chunk: continue past it with the scanner
                    self.report.note(
                        f"index-based reading stopped at a damaged chunk ({type(exc).__name__}: "
                        f"{exc}); the rest was read by scanning the file"
                    )
                    break
                if len(raw) > MAX_MESSAGE_BYTES:
                    self.report.skipped[f"message over {MAX_MESSAGE_BYTES} bytes"] += 1
                    continue
                if ts != last_ns:
                    last_ns, at_last = ts, Counter()
                c = self._by_id[conn.id]
                at_last[(c.topic, len(raw))] += 1
                yield c, ts, bytes(raw)
        self.report.recovered = True
        for c, ts, raw in _chain_scans(self.storage_files, self.report, topics):
            if last_ns is not None and ts < last_ns:
                continue  # already read (or lost with the damaged chunk, which is counted)
            if ts == last_ns and at_last[(c.topic, len(raw))] > 0:
                at_last[(c.topic, len(raw))] -= 1
                continue
            yield c, ts, raw

    def _db_topics(self, db: Path) -> dict[int, _Conn]:
        """The sqlite3 file's topic ids (rosbags numbers connections its own way)."""
        known = {(c.topic, c.msgtype): c for c in self._by_id.values()}
        con = sqlite3.connect(f"file:{db}?mode=ro&immutable=1", uri=True)
        try:
            rows = con.execute("SELECT id, name, type FROM topics").fetchall()
        finally:
            con.close()
        return {tid: known.get((name, typ), _Conn(name, typ, "")) for tid, name, typ in rows}


def _chain_scans(
    files: list[Path], report: ReadReport, topics: set[str]
) -> Iterator[tuple[_Conn, int, bytes]]:
    """The messages of MCAP files scanned one after the other (the files of a split bag)."""
    for f in files:
        yield from _McapScanSource(f, report).messages(topics)


class _ChainSource(_Source):
    """The files of a split bag without metadata.yaml, each opened on its own, read in order."""

    def __init__(self, sources: list[_Source]) -> None:
        self.sources = sources
        self.connections = list(dict.fromkeys(c for src in sources for c in src.connections))

    def messages(self, topics: set[str]) -> Iterator[tuple[_Conn, int, bytes]]:
        for src in self.sources:
            yield from src.messages(topics)


class _DecompressedMessages(_Source):
    """A bag recorded with compression_mode message: each message is a zstd frame, decompressed
    here to at most MAX_MESSAGE_BYTES (rosbags would decompress it without a bound)."""

    def __init__(self, inner: _Source, report: ReadReport) -> None:
        self.inner, self.report = inner, report
        self.connections = inner.connections

    def messages(self, topics: set[str]) -> Iterator[tuple[_Conn, int, bytes]]:
        for conn, ts, raw in self.inner.messages(topics):
            try:
                yield conn, ts, _decompress_frames(raw, "zstd", MAX_MESSAGE_BYTES)
            except ChunkError as exc:
                self.report.skipped[f"compressed message not read ({conn.topic})"] += 1
                self.report.note(f"compressed message on {conn.topic} skipped: {exc}")


def _sqlite_messages(
    path: Path, by_id: dict[int, _Conn], topics: set[str], report: ReadReport
) -> Iterator[tuple[_Conn, int, bytes]]:
    """Messages of a rosbag2 sqlite3 file in timestamp order, streamed (never the whole table in
    memory); rows over MAX_MESSAGE_BYTES are skipped and counted without reading their data."""
    ids = [tid for tid, c in by_id.items() if c.topic in topics]
    if not ids:
        return
    con = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
    marks = ",".join("?" * len(ids))
    # length() of a blob is read from the record header, so an oversized blob is never loaded
    query = (
        f"SELECT topic_id, timestamp, length(data), {_SQL_DATA} FROM messages "
        f"WHERE topic_id IN ({marks}) ORDER BY timestamp"
    )
    last: int | None = None
    at_last: Counter = Counter()
    try:
        try:
            for row in con.execute(query, [MAX_MESSAGE_BYTES, *ids]):
                item = _sqlite_row(row, by_id, report)
                if item is not None:
                    if item[1] != last:
                        last, at_last = item[1], Counter()
                    at_last[(item[0].topic, len(item[2]))] += 1
                    yield item
            return
        except sqlite3.DatabaseError as exc:
            report.note(f"sorted read failed ({exc}); reading row by row")
        for row in _sqlite_rows_by_id(con, set(ids), report):
            item = _sqlite_row(row, by_id, report)
            if item is None or (last is not None and item[1] < last):
                continue
            key = (item[0].topic, len(item[2]))
            if item[1] == last and at_last[key] > 0:
                at_last[key] -= 1  # yielded before the sorted read failed
                continue
            yield item
    finally:
        con.close()


_SQL_DATA = "CASE WHEN length(data) <= ? THEN data END"


def _sqlite_row(
    row: tuple, by_id: dict[int, _Conn], report: ReadReport
) -> tuple[_Conn, int, bytes] | None:
    tid, ts, size, data = row
    if data is None and size is not None and size > MAX_MESSAGE_BYTES:
        report.skipped[f"message over {MAX_MESSAGE_BYTES} bytes"] += 1
        return None
    if tid not in by_id or data is None or not isinstance(ts, int):
        report.skipped["unreadable sqlite3 row"] += 1
        return None
    return by_id[tid], int(ts), bytes(data)


def _sqlite_rows_by_id(con: sqlite3.Connection, ids: set[int], report: ReadReport) -> Iterator:
    try:
        (top,) = con.execute("SELECT max(id) FROM messages").fetchone()
    except sqlite3.DatabaseError:
        top = None
    if top is None:
        report.skipped["unreadable messages table"] += 1
        return
    for rowid in range(1, int(top) + 1):
        try:
            row = con.execute(
                f"SELECT topic_id, timestamp, length(data), {_SQL_DATA} FROM messages WHERE id = ?",
                (MAX_MESSAGE_BYTES, rowid),
            ).fetchone()
        except sqlite3.DatabaseError:
            report.skipped["unreadable sqlite3 row"] += 1
            continue
        if row is not None and row[0] in ids:
            yield row


def _u16(b: bytes, o: int) -> int:
    return struct.unpack_from("<H", b, o)[0]


def _u32(b: bytes, o: int) -> int:
    return struct.unpack_from("<I", b, o)[0]


def _u64(b: bytes, o: int) -> int:
    return struct.unpack_from("<Q", b, o)[0]


def _mcap_str(b: bytes, o: int) -> tuple[str, int]:
    n = _u32(b, o)
    if o + 4 + n > len(b):
        raise ValueError("string beyond record")
    return b[o + 4 : o + 4 + n].decode("utf-8"), o + 4 + n


class _McapScanSource(_Source):
    """Reads an MCAP file record by record from the start, without its index or footer.

    A chunk that cannot be used (over the size limit, bad compressed data or checksum) is
    skipped and counted; a record whose length runs past the end is either the cut end of a
    truncated file (read up to the cut) or a damaged length, after which reading resumes at the
    next well-formed chunk. The file is memory-mapped: only the records in use are copied.
    """

    def __init__(self, path: Path, report: ReadReport) -> None:
        self.path, self.report = path, report
        self._conns: dict[int, _Conn] = {}
        self._schemas: dict[int, tuple[str, str]] = {}
        self.connections = []
        for _ in self._scan(set(), collect=True):
            pass
        self.connections = list(dict.fromkeys(self._conns.values()))

    def messages(self, topics: set[str]) -> Iterator[tuple[_Conn, int, bytes]]:
        yield from self._scan(topics, collect=False)

    def _scan(self, topics: set[str], collect: bool) -> Iterator[tuple[_Conn, int, bytes]]:
        with self.path.open("rb") as f:
            if f.read(len(_MCAP_MAGIC)) != _MCAP_MAGIC:
                raise BagError(f"{self.path} is not an MCAP file (bad magic)")
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                yield from self._records(data, len(_MCAP_MAGIC), len(data), topics, collect, True)

    def _skip(self, collect: bool, reason: str, note: str | None = None, n: int = 1) -> None:
        if collect:  # counted once, on the first of the two passes
            self.report.skipped[reason] += n
            if note:
                self.report.note(note)

    def _records(
        self, data: Any, pos: int, end: int, topics: set[str], collect: bool, top: bool
    ) -> Iterator[tuple[_Conn, int, bytes]]:
        while pos < end:
            # the closing magic after the footer
            if top and end - pos == len(_MCAP_MAGIC) and data[pos:end] == _MCAP_MAGIC:
                return
            if pos + 9 > end:
                self._truncated(collect, end - pos, top)
                return
            op, size = data[pos], _u64(data, pos + 1)
            body = pos + 9
            if body + size > end:
                if not top:
                    self._skip(collect, "incomplete record inside an MCAP chunk")
                    return
                nxt = _next_chunk(data, pos + 1, end)
                if nxt is not None:
                    self._skip(
                        collect,
                        "bytes skipped after a damaged MCAP record length",
                        f"damaged MCAP record length at offset {pos}: resumed at the next "
                        f"chunk (offset {nxt})",
                        nxt - pos,
                    )
                    pos = nxt
                    continue
                if op == 0x06:  # a cut chunk: its records up to the cut are still whole
                    yield from self._partial_chunk(data[body:end], topics, collect)
                self._truncated(collect, end - pos, top)
                return
            pos = body + size
            if op not in _MCAP_OPS and op < 0x80:
                self._skip(collect, "MCAP records of unknown type (damaged?)")
                continue
            if op == 0x05 and size > MAX_MESSAGE_BYTES + 22:
                self._skip(collect, f"message over {MAX_MESSAGE_BYTES} bytes")
                continue
            if op not in (0x03, 0x04, 0x05, 0x06) or (op in (0x03, 0x04) and not collect):
                continue
            rec = data[body : body + size]
            try:
                if op == 0x03:  # schema
                    sid = _u16(rec, 0)
                    name, o = _mcap_str(rec, 2)
                    _, o = _mcap_str(rec, o)  # encoding
                    n = _u32(rec, o)
                    self._schemas[sid] = (name, rec[o + 4 : o + 4 + n].decode("utf-8"))
                elif op == 0x04:  # channel
                    cid, sid = _u16(rec, 0), _u16(rec, 2)
                    topic, _ = _mcap_str(rec, 4)
                    name, text = self._schemas.get(sid, ("", ""))
                    self._conns[cid] = _Conn(topic, name, text)
                elif op == 0x05:  # message
                    conn = self._conns.get(_u16(rec, 0))
                    if not collect and conn is not None and conn.topic in topics:
                        yield conn, _u64(rec, 6), rec[22:]
                else:  # chunk
                    inner = _chunk_records(rec) if top else None
                    if inner is None:
                        raise ChunkError("a chunk inside a chunk")
                    msgs = list(self._records(inner, 0, len(inner), topics, collect, top=False))
                    msgs.sort(key=lambda m: m[1])  # rosbag2 readers give a chunk in time order
                    yield from msgs
            except ChunkError as exc:
                self._skip(collect, "damaged MCAP chunks", f"damaged MCAP chunk at {pos}: {exc}")
            except (ValueError, struct.error, UnicodeDecodeError) as exc:
                self._skip(
                    collect, f"damaged MCAP record (op {op:#x})", f"damaged MCAP record: {exc}"
                )

    def _partial_chunk(
        self, rec: bytes, topics: set[str], collect: bool
    ) -> Iterator[tuple[_Conn, int, bytes]]:
        try:
            compression, o = _mcap_str(rec, 28)
        except (ValueError, struct.error, UnicodeDecodeError):
            return
        if compression:  # a cut compressed stream cannot be decoded
            return
        inner = rec[o + 8 :]
        yield from self._records(inner, 0, len(inner), topics, collect, top=False)

    def _truncated(self, collect: bool, nbytes: int, top: bool) -> None:
        if collect and top:
            self.report.skipped[
                "bytes of the cut last MCAP record (a cut chunk is read up to the cut)"
            ] += nbytes
            self.report.note("the MCAP file is truncated (no footer): read up to the cut")
        elif collect:
            self.report.skipped["incomplete record inside an MCAP chunk"] += 1


def _chunk_header(data: Any, body: int, size: int) -> tuple[int, int, str, int, int] | None:
    """(uncompressed size, crc, compression, data offset, data length) of a chunk record body,
    or None when the fields do not add up (how a real chunk is told from random bytes)."""
    if size < 40:
        return None
    try:
        uncompressed, crc = _u64(data, body + 16), _u32(data, body + 24)
        n = _u32(data, body + 28)
        if n > 4:
            return None
        compression = bytes(data[body + 32 : body + 32 + n]).decode("ascii")
        length = _u64(data, body + 32 + n)
    except (struct.error, UnicodeDecodeError):
        return None
    if compression not in _MCAP_COMPRESSIONS or 40 + n + length != size:
        return None
    return uncompressed, crc, compression, body + 40 + n, length


def _chunk_records(rec: bytes) -> bytes:
    """The records of a chunk, decompressed within the limits and checked against its CRC."""
    head = _chunk_header(rec, 0, len(rec))
    if head is None:
        raise ChunkError("malformed chunk header")
    uncompressed, crc, compression, offset, length = head
    inner = bounded_decompress(rec[offset : offset + length], compression, uncompressed)
    if crc and zlib.crc32(inner) != crc:
        raise ChunkError("checksum mismatch")
    return inner


def _next_chunk(data: Any, start: int, end: int) -> int | None:
    """Offset of the next well-formed chunk record after ``start``, if any."""
    pos = start
    while True:
        pos = data.find(b"\x06", pos, end - 9)
        if pos < 0:
            return None
        size = _u64(data, pos + 1)
        if pos + 9 + size <= end and _chunk_header(data, pos + 9, size) is not None:
            return pos
        pos += 1


class _SqliteScanSource(_Source):
    """Reads a rosbag2 sqlite3 file with the standard sqlite3 module, row by row, skipping rows
    that fail (a damaged or truncated database)."""

    def __init__(self, path: Path, report: ReadReport) -> None:
        self.path, self.report = path, report
        try:
            con = self._connect()
            rows = con.execute("SELECT id, name, type FROM topics").fetchall()
            try:
                defs = dict(
                    con.execute(
                        "SELECT topic_type, encoded_message_definition FROM message_definitions"
                    ).fetchall()
                )
            except sqlite3.DatabaseError:
                defs = {}
            con.close()
        except sqlite3.DatabaseError as exc:
            raise BagError(
                f"{path}: damaged or truncated sqlite3 bag, cannot be recovered: {exc}"
            ) from exc
        self._by_id = {tid: _Conn(name, typ, defs.get(typ, "")) for tid, name, typ in rows}
        self.connections = list(self._by_id.values())

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(f"file:{self.path}?mode=ro&immutable=1", uri=True)

    def messages(self, topics: set[str]) -> Iterator[tuple[_Conn, int, bytes]]:
        yield from _sqlite_messages(self.path, self._by_id, topics, self.report)


def _natural(path: Path) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def _storage_files(path: Path) -> list[Path]:
    """The .mcap (else .db3) files of a bag directory in recording order: rosbag2 numbers split
    files NAME_0, NAME_1, ..., compared here by number (NAME_10 after NAME_9)."""
    for pattern in ("*.mcap", "*.db3"):
        files = sorted(path.glob(pattern), key=_natural)
        if files:
            return files
    return []


def _read_metadata(meta: Path) -> dict[str, Any]:
    """metadata.yaml's ``rosbag2_bagfile_information`` (small: MAX_METADATA_BYTES); {} when it
    does not parse (rosbags then fails on it and the files are scanned)."""
    size = meta.stat().st_size
    if size > MAX_METADATA_BYTES:
        raise BagError(f"{meta}: {size} bytes, more than the {MAX_METADATA_BYTES} allowed")
    from ruamel.yaml import YAML, YAMLError

    try:
        doc = YAML(typ="safe").load(meta.read_text(errors="replace"))
    except YAMLError:
        return {}
    info = doc.get("rosbag2_bagfile_information") if isinstance(doc, dict) else None
    return info if isinstance(info, dict) else {}


def _compression_mode(info: dict[str, Any]) -> str:
    mode = str(info.get("compression_mode") or "").lower()
    return "" if mode == "none" else mode


def _listed_files(path: Path, info: dict[str, Any]) -> list[Path]:
    listed = info.get("relative_file_paths")
    if not isinstance(listed, list):
        return []
    return [path / Path(str(rel)).name for rel in listed]


def _storage_kind(storage_file: Path) -> str:
    head = storage_file.open("rb").read(16)
    if head.startswith(_MCAP_MAGIC):
        return "mcap"
    if head.startswith(_SQLITE_MAGIC):
        return "sqlite3"
    raise BagError(f"{storage_file} is not a rosbag2 file (neither MCAP nor sqlite3)")


def _open_indexed(target: Path, files: list[Path], report: ReadReport) -> _Source:
    """Through the index (rosbags), else by scanning the files (a damaged bag)."""
    from rosbags.rosbag2 import ReaderError

    try:
        return _RosbagsSource(target, report, files)
    except (ReaderError, OSError, ValueError, KeyError, sqlite3.DatabaseError) as exc:
        first_error = f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # apsw errors and other storage-level failures
        first_error = f"{type(exc).__name__}: {exc}"
    report.recovered = True
    report.note(f"bag index unreadable ({first_error}); recovered by scanning the file")
    scan = _McapScanSource if report.storage == "mcap" else _SqliteScanSource
    sources: list[_Source] = [scan(f, report) for f in files]
    return sources[0] if len(sources) == 1 else _ChainSource(sources)


def _open_compressed(path: Path, info: dict[str, Any], mode: str, report: ReadReport) -> _Source:
    """A bag recorded with rosbag2 compression (mode file or message, format zstd), read through
    a temporary uncompressed view of it: whole files decompressed there within
    :func:`file_decompression_limit`, or (mode message) linked, each message decompressed within
    MAX_MESSAGE_BYTES as it is read."""
    import tempfile

    from ruamel.yaml import YAML

    fmt = str(info.get("compression_format") or "")
    if fmt != "zstd":
        raise BagError(f"{path}: compression format {fmt!r} is not read (only zstd)")
    files = _listed_files(path, info)
    if not files:
        raise BagError(f"{path}/metadata.yaml lists no files")
    tmp = tempfile.TemporaryDirectory(prefix="hsnn-bag-")
    view = Path(tmp.name)
    try:
        names = []
        for src in files:
            if not src.is_file():
                raise BagError(f"{path}: {src.name} is listed in metadata.yaml but missing")
            if mode == "file":
                name = src.name.removesuffix(".zstd")
                try:
                    size = src.stat().st_size
                    bounded_decompress_file(src, view / name, file_decompression_limit(size))
                except ChunkError as exc:
                    raise BagError(f"{path}: {exc}") from exc
            else:
                name = src.name
                (view / name).symlink_to(src.resolve())
            names.append(name)
        plain = {**info, "compression_mode": "", "compression_format": "", "files": []}
        plain["relative_file_paths"] = names
        with (view / "metadata.yaml").open("w") as f:
            YAML(typ="safe").dump({"rosbag2_bagfile_information": plain}, f)
        report.storage = _storage_kind(view / names[0])
        source = _open_indexed(view, [view / n for n in names], report)
    except BaseException:
        tmp.cleanup()
        raise
    report.note(f"zstd compression (mode {mode}) decompressed within bounds")
    if mode == "message":
        source = _DecompressedMessages(source, report)
    source.keep = tmp  # the view lives as long as the source
    return source


def open_source(path: Path | str, report: ReadReport | None = None) -> tuple[_Source, ReadReport]:
    """Open a bag for reading raw messages, recovering from damage where possible.

    A split bag (several files) is read whole, in recording order; a zstd-compressed one
    (compression_mode file or message) is decompressed within bounds."""
    path = Path(path)
    report = report or ReadReport(str(path))
    if not path.exists():
        raise BagError(f"no bag at {path}: it does not exist")
    meta = path / "metadata.yaml"
    has_meta = path.is_dir() and meta.is_file()
    info = _read_metadata(meta) if has_meta else {}
    mode = _compression_mode(info)
    if mode in ("file", "message"):
        return _open_compressed(path, info, mode, report), report
    if mode:
        raise BagError(f"{meta}: unknown compression_mode {mode!r}")
    if path.is_dir():
        files = _storage_files(path)
        if not files:
            raise BagError(f"{path} is not a rosbag2: no metadata.yaml and no .mcap/.db3 file")
        listed = [f for f in _listed_files(path, info) if f.is_file()]
        files = listed or files
    else:
        files = [path]
    report.storage = _storage_kind(files[0])
    target = path
    if path.is_dir() and not has_meta:
        report.note("no metadata.yaml (recording not closed?): read the storage files directly")
        if len(files) > 1:
            report.note(f"bag split into {len(files)} files: all are read, in file-name order")
            sources = [_open_indexed(f, [f], report) for f in files]
            return _ChainSource(sources), report
        target = files[0]
    return _open_indexed(target, files, report), report


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

    def _ensure_type(self, conn: _Conn) -> None:
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
            self.typestore = _copy_store(self.typestore)
            self._own_store = False
        try:
            self.typestore.register(
                _types_from_msgdef(conn.msgtype, conn.msgdef, get_types_from_msg)
            )
        except Exception as exc:  # a definition rosbags cannot parse
            self.undecodable.add(conn.msgtype)
            self.report.note(f"cannot use the bag's definition of {conn.msgtype}: {exc}")

    def _prefer_bag_definition(self, conn: _Conn, parse: Callable) -> None:
        """A known type whose definition in the bag differs (a bag recorded by another version
        of this package) is decoded with the bag's definition, and the report says so."""
        try:
            types = _types_from_msgdef(conn.msgtype, conn.msgdef, parse)
        except Exception:  # unparsable: this package's definition is the best guess
            return
        known = self.typestore.fielddefs
        differ = {n: d for n, d in types.items() if n in known and known[n] != d}
        if not differ:
            return
        self.typestore = _copy_store(self.typestore, without=set(differ))
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


def _copy_store(store: Any, without: set[str] | None = None) -> Any:
    from rosbags.typesys import get_typestore
    from rosbags.typesys.stores import Stores

    fresh = get_typestore(Stores.EMPTY)
    fresh.register({n: d for n, d in store.fielddefs.items() if n not in (without or set())})
    return fresh


def _types_from_msgdef(msgtype: str, text: str, parse: Callable) -> dict[str, Any]:
    """Parse a ros2msg bag definition: the main type, then ``====`` / ``MSG: pkg/Type`` blocks."""
    types: dict[str, Any] = {}
    name, block = msgtype, []
    for line in text.splitlines() + ["=" * 8]:
        if line.startswith("=" * 8):
            if block:
                types.update(parse("\n".join(block), name))
            name, block = None, []
        elif name is None and line.startswith("MSG: "):
            name = normalize_msgtype(line[5:].strip())
        else:
            block.append(line)
    return types


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
        if msgtype in self._reader.undecodable or not set(_EVENT_PACKET_FIELDS) <= fields:
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
