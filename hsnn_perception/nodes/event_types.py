"""The event message types a node may publish or subscribe to, chosen by an ``event_type``
parameter (event driver, SNN node): this package's EventPacket or event_camera_msgs' (the stock
drivers' type, same fields)."""

from __future__ import annotations

import importlib

from hsnn_perception.core.io.bag.msgtypes import EVENT_PACKET_TYPES

# Checked before any import: importing a module runs its top-level code, and the name comes from
# a parameter.
EVENT_TYPES = EVENT_PACKET_TYPES
DEFAULT_EVENT_TYPE = EVENT_TYPES[0]


def load_message_type(name: str) -> type:
    """'pkg/msg/Type' (or 'pkg/Type') of EVENT_TYPES -> the message class; raises ValueError for
    any other name (nothing is imported then) and for one that is not installed."""
    parts = name.split("/")
    if len(parts) == 2:
        parts = [parts[0], "msg", parts[1]]
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"message type {name!r} is not of the form pkg/msg/Type")
    if "/".join(parts) not in EVENT_TYPES:
        raise ValueError(f"event_type {name!r} is not allowed; expected one of {EVENT_TYPES}")
    try:
        module = importlib.import_module(f"{parts[0]}.{parts[1]}")
        return getattr(module, parts[2])
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"message type {name!r} is not installed: {exc}") from exc
