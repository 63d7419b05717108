"""Import lava-dl's slayer and netx on the machines this project runs on.

lava-dl 0.6 imports its object-detection subpackage from ``slayer/__init__``, and that subpackage
needs torchvision, which has no CPU build for the torch we use. Nothing here uses object detection,
so an empty module stands in for it before the import.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from hsnn_perception.core.errors import SnnError

_OBJECT_DETECTION = "lava.lib.dl.slayer.object_detection"


class LavaUnavailableError(SnnError, ImportError):
    """Lava or lava-dl is not installed (or cannot be imported) in this environment."""


def _shim_object_detection() -> None:
    if _OBJECT_DETECTION not in sys.modules:
        try:
            import torchvision  # noqa: F401
        except Exception:  # any failure of torchvision means we must not import the real module
            sys.modules[_OBJECT_DETECTION] = types.ModuleType(_OBJECT_DETECTION)


def import_slayer() -> Any:
    """Return ``lava.lib.dl.slayer`` (imports torch)."""
    _shim_object_detection()
    try:
        import lava.lib.dl.slayer as slayer
    except Exception as exc:  # ImportError, or the dataclass error of an unpatched lava-nc
        raise LavaUnavailableError(f"lava-dl slayer cannot be imported: {exc}") from exc
    return slayer


def import_netx() -> Any:
    """Return ``lava.lib.dl.netx`` (imports torch through slayer)."""
    _shim_object_detection()
    try:
        import lava.lib.dl.netx as netx
    except Exception as exc:
        raise LavaUnavailableError(f"lava-dl netx cannot be imported: {exc}") from exc
    return netx
