"""Artifacts derived from a model (reduced-precision ONNX copies, TensorRT engines), cached beside a
JSON sidecar that names what they were made from (the key), so a stale or damaged file is remade
rather than used; written atomically, so a crash leaves nothing that passes the check.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

ARTIFACT_FORMAT = "hsnn-classifier-artifact/1"


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes (read in chunks: engines can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_array(data: NDArray[Any]) -> str:
    """Hex sha256 of an array's dtype, shape and bytes (identifies a calibration set)."""
    arr = np.ascontiguousarray(data)
    digest = hashlib.sha256(f"{arr.dtype.str}{arr.shape}".encode())
    digest.update(arr.tobytes())
    return digest.hexdigest()


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/hsnn/classifier`` (``~/.cache/hsnn/classifier``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hsnn" / "classifier"


def sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def key_mismatches(
    stored: dict[str, Any], current: dict[str, Any], ignore: Iterable[str] = ()
) -> list[str]:
    """Names of the key components that differ between ``stored`` and ``current``."""
    skip = set(ignore)
    names = sorted((set(stored) | set(current)) - skip)
    return [name for name in names if stored.get(name) != current.get(name)]


def check_artifact(path: Path, key: dict[str, Any], ignore: Iterable[str] = ()) -> tuple[bool, str]:
    """Is the cached ``path`` valid for ``key``? Returns ``(ok, reason)``.

    Valid means: the file and its sidecar exist, the sidecar's key equals ``key`` in every
    component (except those in ``ignore``), and the file's sha256 matches the one recorded when
    it was written (a truncated or replaced file is not loaded).
    """
    side = sidecar_path(path)
    if not path.is_file():
        return False, f"no cached {path.name}"
    if not side.is_file():
        return False, f"{path.name} has no sidecar {side.name}"
    try:
        meta = json.loads(side.read_text())
        stored = meta["key"]
        recorded_sha = meta["sha256"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return False, f"sidecar {side.name} is unreadable ({exc})"
    if not isinstance(stored, dict):
        return False, f"sidecar {side.name} has no key"
    differ = key_mismatches(stored, key, ignore)
    if differ:
        detail = ", ".join(f"{n}: {stored.get(n)!r} -> {key.get(n)!r}" for n in differ)
        return False, f"cached {path.name} was made for another configuration ({detail})"
    if sha256_file(path) != recorded_sha:
        return False, f"cached {path.name} does not match the sha256 in its sidecar"
    return True, f"cached {path.name} matches"


def write_artifact(path: Path, data: bytes, key: dict[str, Any], **extra: Any) -> None:
    """Write ``data`` to ``path`` and its sidecar, each atomically (temp file + rename).

    The artifact is written before the sidecar, so a crash in between leaves a file with a stale
    or missing sidecar, which :func:`check_artifact` rejects.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "format": ARTIFACT_FORMAT,
        "key": key,
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
        "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **extra,
    }
    _atomic_write(path, data)
    _atomic_write(sidecar_path(path), (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode())


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; caches are shared between users of a robot
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
