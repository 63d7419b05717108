"""CUDA devices: what a GPU is (name, compute capability: what makes a TensorRT engine built on it
valid elsewhere), whether this is a Jetson board, and cuda-python's runtime module. Every source
is optional: without cuda-python, nvidia-smi or a GPU the answers are None.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class GpuInfo:
    """Identity of a CUDA device: what makes a TensorRT engine built on it valid elsewhere."""

    index: int
    name: str
    compute_capability: str  # "8.7"

    def describe(self) -> str:
        return f"cuda:{self.index} ({self.name}, sm_{self.compute_capability.replace('.', '')})"


def jetson_model() -> str | None:
    """The board name on an NVIDIA Jetson (from the device tree), else None."""
    for path in (Path("/proc/device-tree/model"), Path("/sys/firmware/devicetree/base/model")):
        try:
            text = path.read_bytes().decode(errors="replace").strip("\x00 \n")
        except OSError:
            continue
        if "jetson" in text.lower() or "nvidia" in text.lower():
            return text
    return None


def import_cudart() -> Any:
    """cuda-python's runtime module (``cuda.bindings.runtime``, or ``cuda.cudart`` before 12.6)."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        from cuda import cudart  # older cuda-python layout; ImportError propagates if absent
    return cudart


def cuda_device_info(index: int = 0) -> GpuInfo | None:
    """Name and compute capability of CUDA device ``index``, or None if there is none.

    Asks cuda-python when installed, else ``nvidia-smi``; both are optional.
    """
    try:
        cudart = import_cudart()
    except ImportError:
        cudart = None
    if cudart is not None:
        try:
            err, prop = cudart.cudaGetDeviceProperties(index)
            if int(getattr(err, "value", err)) == 0:
                name = prop.name.decode() if isinstance(prop.name, bytes) else str(prop.name)
                return GpuInfo(index, name.strip("\x00 "), f"{prop.major}.{prop.minor}")
        except Exception:  # no driver / no device: report no GPU rather than crash
            pass
    try:
        out = subprocess.run(
            [
                "nvidia-smi",
                f"--id={index}",
                "--query-gpu=name,compute_cap",
                "--format=csv,noheader",
            ],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    if not out or "," not in out:
        return None
    name, cap = (part.strip() for part in out.splitlines()[0].rsplit(",", 1))
    return GpuInfo(index, name, cap)
