"""The TensorRT engine cache: an engine is only valid for the TensorRT version and the GPU that
built it, and for the exact model, precision and input shapes. Each engine is stored with a JSON
sidecar holding that key (:func:`engine_key`); a cached engine is loaded only if its sidecar's key
equals the current one and the engine's sha256 matches, otherwise it is rebuilt
(:func:`resolve_engine`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hsnn_perception.core.ann.artifacts import check_artifact, write_artifact
from hsnn_perception.core.ann.backends import BackendError, Logger, make_logger

ENGINE_FORMAT = "hsnn-trt-engine/1"
#: Key components a cached engine may differ in when no calibration data is given: the node
#: reuses the engine (or calibration) that the bench or an earlier run made.
CALIBRATION_COMPONENTS = ("calibration_sha256",)


def engine_key(
    *,
    onnx_sha256: str,
    precision: str,
    input_shapes: dict[str, Sequence[int]],
    tensorrt_version: str,
    gpu_name: str,
    compute_capability: str,
    int8_method: str | None = None,
    calibration_sha256: str | None = None,
) -> dict[str, Any]:
    """Everything that makes a serialized engine valid, as a flat JSON-able dict.

    Flat so that :func:`~hsnn_perception.core.ann.artifacts.key_mismatches` names the
    component that changed (e.g. ``compute_capability: '8.7' -> '9.0'``).
    """
    return {
        "format": ENGINE_FORMAT,
        "onnx_sha256": onnx_sha256,
        "precision": precision,
        "int8_method": int8_method if precision == "int8" else None,
        "calibration_sha256": calibration_sha256 if precision == "int8" else None,
        "input_shapes": {name: [int(d) for d in shape] for name, shape in input_shapes.items()},
        "tensorrt": tensorrt_version,
        "gpu_name": gpu_name,
        "compute_capability": compute_capability,
    }


@dataclass(frozen=True)
class EnginePaths:
    """Where one model's engine of one precision lives in the cache directory."""

    engine: Path
    calibration_cache: Path  # implicit INT8 only

    @classmethod
    def for_model(
        cls, cache_dir: Path, model_path: Path, precision: str, int8_method: str = "qdq"
    ) -> EnginePaths:
        stem = model_path.name.removesuffix(".onnx")
        tag = precision if precision != "int8" else f"int8-{int8_method}"
        return cls(
            engine=Path(cache_dir) / f"{stem}.{tag}.engine",
            calibration_cache=Path(cache_dir) / f"{stem}.int8-implicit.calib",
        )


def resolve_engine(
    engine_path: Path,
    key: dict[str, Any],
    build: Callable[[], bytes],
    *,
    force_rebuild: bool = False,
    ignore: Iterable[str] = (),
    logger: Logger | None = None,
) -> tuple[bytes, bool]:
    """Return ``(serialized engine, built)``: the cached engine if valid for ``key``, else new.

    ``build()`` makes the engine (seconds to minutes); it is timed and logged, and the result is
    written beside a sidecar holding ``key``. A stale, foreign or damaged cached engine is never
    returned.
    """
    log = make_logger(logger)
    ok, reason = check_artifact(engine_path, key, ignore)
    if ok and not force_rebuild:
        log(f"loading {reason}")
        return engine_path.read_bytes(), False
    log(f"building TensorRT engine {engine_path.name}: {'force_rebuild' if ok else reason}")
    start = time.perf_counter()
    data = build()
    seconds = time.perf_counter() - start
    if not data:
        raise BackendError(f"TensorRT produced no engine for {engine_path.name}")
    write_artifact(engine_path, data, key, build_seconds=round(seconds, 3))
    log(f"built {engine_path.name} ({len(data) / 1e6:.1f} MB) in {seconds:.1f} s")
    return data, True
