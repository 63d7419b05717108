"""rosbag2 message types without ROS: this package's types registered from its ``.msg`` files,
the topics and types of the pipeline, and the records an event bag holds (:class:`Label`,
:class:`EventPacketData`) with their messages.

The package's own message types are registered from the ``.msg`` text in ``msg/`` (next to this
package in a checkout, or the install share dir) on top of a ROS 2 distribution's store (std_msgs,
builtin_interfaces, diagnostic_msgs ...), so every bag written carries the full message
definitions and RIHS01 type hashes: in MCAP as schema records, in sqlite3 (format version 9) in the
``message_definitions`` table. ``ros2 bag info/play`` on a full ROS 2 install can therefore read
them, and so can foreign tools (Foxglove). Bags without embedded definitions (sqlite3 before Iron)
decode with the known ones: this package's types and event_camera_msgs' EventPacket.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from hsnn_perception.core.errors import RecordingError
from hsnn_perception.core.events.codecs import decode_packet

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
EVENT_PACKET_FIELDS = ("header", "height", "width", "time_base", "encoding", "events")


class BagError(RecordingError, ValueError):
    """A path is not a readable rosbag2, or a bag cannot be written as asked."""


def msg_dir() -> Path:
    """The directory holding the package's ``.msg`` files (checkout, else the install share)."""
    # the checkout's msg/ is beside the hsnn_perception package directory
    package_dir = next(p for p in Path(__file__).resolve().parents if p.name == PACKAGE)
    candidates = [package_dir.parent / "msg"]
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


def _zero_value(store: Any, desc: tuple[Any, ...]) -> Any:
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


def _empty_sequence(sub: tuple[Any, ...]) -> Any:
    from rosbags.typesys.base import Nodetype

    if sub[0] == Nodetype.BASE and sub[1][0] in _NUMPY_TYPES:
        return np.zeros(0, dtype=_NUMPY_TYPES[sub[1][0]])
    return []


def _convert(store: Any, desc: tuple[Any, ...], value: Any, where: str) -> Any:
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
    """Nanoseconds of a builtin_interfaces/Time."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


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

    def decode(self, strict: bool = True, drops: Counter[str] | None = None) -> NDArray[Any]:
        """The events (EVENT_DTYPE, t in us of sensor time) of this packet alone. Not for the
        packets of an EVT3 stream, which a driver may cut anywhere: decode those in order with
        ``core.events.stream.PacketStreamDecoder``, which carries the state between them."""
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


def event_packet_message(store: Any, pkt: EventPacketData) -> Any:
    """The package's EventPacket message of ``pkt`` (a rosbags object of ``store``)."""
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
    """The GestureLabel message of ``label``, stamped at its start."""
    start = ns_to_time(store, label.start_us * 1000)
    return store.types[MSG_GESTURE_LABEL](
        header=store.types["std_msgs/msg/Header"](stamp=start, frame_id="event_camera"),
        start=start,
        end=ns_to_time(store, label.end_us * 1000),
        class_id=int(label.class_id),
        label=label.label,
    )


def copy_typestore(store: Any, without: set[str] | None = None) -> Any:
    """A new typestore with the types of ``store`` (but those in ``without``): the cached
    package store is shared and never changed."""
    from rosbags.typesys import get_typestore
    from rosbags.typesys.stores import Stores

    fresh = get_typestore(Stores.EMPTY)
    fresh.register({n: d for n, d in store.fielddefs.items() if n not in (without or set())})
    return fresh


def types_from_msgdef(
    msgtype: str, text: str, parse: Callable[[str, str], dict[str, Any]]
) -> dict[str, Any]:
    """Parse a ros2msg bag definition: the main type, then ``====`` / ``MSG: pkg/Type`` blocks."""
    types: dict[str, Any] = {}
    name: str | None = msgtype
    block: list[str] = []
    for line in text.splitlines() + ["=" * 8]:
        if line.startswith("=" * 8):
            if block:
                if name is None:
                    raise BagError(f"definition of {msgtype}: a block without a 'MSG:' line")
                types.update(parse("\n".join(block), name))
            name, block = None, []
        elif name is None and line.startswith("MSG: "):
            name = normalize_msgtype(line[5:].strip())
        else:
            block.append(line)
    return types
