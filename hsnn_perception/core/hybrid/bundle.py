"""Deployable hybrid model bundles: a directory with ``manifest.json``, the SNN part as netx HDF5
and the ANN part as ONNX.

``manifest.json`` (format ``hsnn-bundle/1``)::

    {
      "format": "hsnn-bundle/1",
      "name": "synthetic-S2A4",
      "sensor": {"height": 128, "width": 128},           # geometry of the event stream
      "input": {"channels": 2, "height": 64, "width": 64},  # after spatial downsampling
      "bin_us": 10000, "timesteps": 16, "interval": 4,
      "labels": ["...", ...],
      "snn": {"file": "snn.net", "output_shape": [C, H, W]},    # or null (ANN baseline)
      "ann": {"file": "ann.onnx", "input_name": "frames",        # or null (SNN baseline)
              "output_name": "logits"},
      "recipe": {...},   # how it was trained (free form)
      "metrics": {...}   # e.g. {"test_accuracy": 0.93, "measured_with": "..."}
    }

The SNN sees binary input spikes (a pixel spikes in a bin if it had at least one event of that
polarity), shape ``(channels, height, width)`` per timestep. With ``snn`` null the input spikes go
straight to the accumulator. The accumulator sums the SNN output over ``interval`` steps, giving
``timesteps // interval`` frames that are stacked on the channel axis as the ANN input
``(1, frames * C, H, W)``. With ``ann`` null, the class is the argmax of the output spike counts.
"""

from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hsnn_perception.core.errors import ModelError

BUNDLE_FORMAT = "hsnn-bundle/1"
MANIFEST = "manifest.json"

# Limits on what a bundle may ask of the loader (a bundle may come from anywhere: a download, a
# shared folder). A real manifest is about 2 KB with nesting depth 3 (recipe/metrics add a level
# or two); json's recursive parser raises RecursionError near depth 1000, so depth is checked on
# the raw text before parsing.
MAX_MANIFEST_BYTES = 1 << 20
MAX_MANIFEST_DEPTH = 32
# The shipped SNN is ~20 KB and the ANN ~100 KB; 512 MiB leaves room for far larger models while
# refusing a file that would exhaust a small robot computer's memory when loaded.
MAX_MODEL_FILE_BYTES = 512 << 20
# Event coordinates are uint16 (EVENT_DTYPE), so no sensor is larger; the other bounds are far
# above any sensible model and keep the accumulator's buffers (frames * C * H * W) small.
MAX_SENSOR_DIM = 65535
MAX_INPUT_CHANNELS = 64
MAX_TIMESTEPS = 4096
MAX_LABELS = 10_000
MAX_FEATURE_ELEMENTS = 1 << 26  # elements of one ANN input (int8/float: <= 256 MiB)

_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_JSON_BRACKET = re.compile(r"[\[\]{}]")


class BundleError(ModelError, ValueError):
    """A model bundle is missing, unreadable or inconsistent."""


def json_depth(text: str) -> int:
    """Deepest nesting of ``[``/``{`` in JSON text (brackets inside strings do not count)."""
    depth = deepest = 0
    for m in _JSON_BRACKET.finditer(_JSON_STRING.sub("", text)):
        depth += 1 if m.group() in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def _read_manifest(manifest_path: Path) -> Any:
    try:
        size = manifest_path.stat().st_size
        if size > MAX_MANIFEST_BYTES:
            raise BundleError(
                f"{manifest_path}: {size} bytes, more than the {MAX_MANIFEST_BYTES} a manifest "
                "may have (not a bundle manifest?)"
            )
        with manifest_path.open("rb") as f:
            raw = f.read(MAX_MANIFEST_BYTES + 1)  # the file may grow after stat
        if len(raw) > MAX_MANIFEST_BYTES:
            raise BundleError(f"{manifest_path}: more than {MAX_MANIFEST_BYTES} bytes")
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BundleError(f"cannot read {manifest_path}: {exc}") from exc
    depth = json_depth(text)
    if depth > MAX_MANIFEST_DEPTH:
        raise BundleError(
            f"{manifest_path}: JSON nested {depth} levels deep, more than the "
            f"{MAX_MANIFEST_DEPTH} a manifest may have"
        )
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise BundleError(f"cannot read {manifest_path}: {exc}") from exc


def _model_file(root: Path, part: Any, name: str) -> Path | None:
    """The file a manifest's ``snn``/``ann`` entry names, which must stay inside the bundle."""
    if not part:
        return None
    if not isinstance(part, dict):
        raise BundleError(f"{root / MANIFEST}: {name} must be an object or null")
    rel = part.get("file")
    if not isinstance(rel, str) or not rel or "\x00" in rel:
        raise BundleError(f"{root / MANIFEST}: {name}.file must be a file name, got {rel!r}")
    if os.path.isabs(rel):
        raise BundleError(
            f"{root / MANIFEST}: {name}.file {rel!r} is an absolute path; a bundle names its "
            "files relative to its own directory"
        )
    return root / rel


@dataclass(frozen=True)
class ModelBundle:
    path: Path
    name: str
    sensor_height: int
    sensor_width: int
    channels: int
    height: int
    width: int
    bin_us: int
    timesteps: int
    interval: int
    labels: tuple[str, ...]
    snn_file: Path | None
    snn_output_shape: tuple[int, ...] | None
    ann_file: Path | None
    ann_input_name: str = "frames"
    ann_output_name: str = "logits"
    recipe: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @property
    def frames(self) -> int:
        """Accumulated frames per window (T / I)."""
        return self.timesteps // self.interval

    @property
    def window_us(self) -> int:
        return self.bin_us * self.timesteps

    @property
    def feature_shape(self) -> tuple[int, ...]:
        """Shape of one timestep of what reaches the accumulator (SNN output, or input spikes)."""
        if self.snn_output_shape is not None:
            return self.snn_output_shape
        return (self.channels, self.height, self.width)

    @property
    def ann_input_shape(self) -> tuple[int, ...]:
        c, h, w = self.feature_shape
        return (1, self.frames * c, h, w)

    @classmethod
    def load(cls, path: str | Path) -> ModelBundle:
        root = Path(path)
        manifest_path = root / MANIFEST if root.is_dir() else root
        root = manifest_path.parent
        if not manifest_path.is_file():
            raise BundleError(f"no model bundle at {path}: {manifest_path} does not exist")
        return cls.from_manifest(_read_manifest(manifest_path), root)

    @classmethod
    def from_manifest(cls, doc: dict[str, Any], root: Path) -> ModelBundle:
        if not isinstance(doc, dict) or doc.get("format") != BUNDLE_FORMAT:
            raise BundleError(f"{root / MANIFEST}: format is not {BUNDLE_FORMAT!r}")
        try:
            snn = doc.get("snn")
            ann = doc.get("ann")
            bundle = cls(
                path=root,
                name=str(doc["name"]),
                sensor_height=int(doc["sensor"]["height"]),
                sensor_width=int(doc["sensor"]["width"]),
                channels=int(doc["input"]["channels"]),
                height=int(doc["input"]["height"]),
                width=int(doc["input"]["width"]),
                bin_us=int(doc["bin_us"]),
                timesteps=int(doc["timesteps"]),
                interval=int(doc["interval"]),
                labels=tuple(str(label) for label in doc["labels"]),
                snn_file=_model_file(root, snn, "snn"),
                snn_output_shape=tuple(int(d) for d in snn["output_shape"]) if snn else None,
                ann_file=_model_file(root, ann, "ann"),
                ann_input_name=str(ann.get("input_name", "frames")) if ann else "frames",
                ann_output_name=str(ann.get("output_name", "logits")) if ann else "logits",
                recipe=dict(doc.get("recipe") or {}),
                metrics=dict(doc.get("metrics") or {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"{root / MANIFEST}: missing or invalid field: {exc}") from exc
        bundle.validate()
        return bundle

    def validate(self) -> None:
        where = self.path / MANIFEST
        if self.timesteps < 1 or self.bin_us < 1:
            raise BundleError(f"{where}: timesteps and bin_us must be positive")
        dims = (self.sensor_height, self.sensor_width, self.channels, self.height, self.width)
        if min(dims) < 1:
            raise BundleError(f"{where}: sensor and input sizes must be positive, got {dims}")
        for name, value, limit in (
            ("sensor.height", self.sensor_height, MAX_SENSOR_DIM),
            ("sensor.width", self.sensor_width, MAX_SENSOR_DIM),
            ("input.channels", self.channels, MAX_INPUT_CHANNELS),
            ("timesteps", self.timesteps, MAX_TIMESTEPS),
            ("labels", len(self.labels), MAX_LABELS),
        ):
            if value > limit:
                raise BundleError(f"{where}: {name} is {value}, more than the limit {limit}")
        if self.snn_output_shape is not None and min(self.snn_output_shape, default=1) < 1:
            raise BundleError(
                f"{where}: snn.output_shape must be positive, got {self.snn_output_shape}"
            )
        if self.interval < 1 or self.timesteps % self.interval:
            raise BundleError(
                f"{where}: interval {self.interval} does not divide timesteps {self.timesteps}"
            )
        if self.sensor_height % self.height or self.sensor_width % self.width:
            raise BundleError(
                f"{where}: input {self.height}x{self.width} must divide sensor "
                f"{self.sensor_height}x{self.sensor_width} (integer downsampling)"
            )
        if not self.labels:
            raise BundleError(f"{where}: no labels")
        for label in self.labels:  # each goes out as a ROS string: UTF-8, ended by a zero
            try:
                label.encode()
            except UnicodeEncodeError:
                raise BundleError(f"{where}: label {label!r} is not valid UTF-8") from None
            if "\x00" in label:
                raise BundleError(f"{where}: label {label!r} holds a zero character")
        if self.snn_file is None and self.ann_file is None:
            raise BundleError(f"{where}: a bundle needs an SNN part, an ANN part or both")
        if self.snn_output_shape is not None and len(self.snn_output_shape) != 3:
            raise BundleError(f"{where}: snn.output_shape must be [C, H, W]")
        if self.snn_output_shape is not None or self.ann_file is not None:
            elements = 1
            for d in self.ann_input_shape:
                elements *= d
            if elements > MAX_FEATURE_ELEMENTS:
                raise BundleError(
                    f"{where}: the accumulated input {list(self.ann_input_shape)} has {elements} "
                    f"elements, more than the limit {MAX_FEATURE_ELEMENTS}"
                )
        for name, part in (("snn.file", self.snn_file), ("ann.file", self.ann_file)):
            if part is not None:
                self._check_model_file(name, part)

    def _check_model_file(self, name: str, part: Path) -> None:
        """The file must exist, be a regular file, lie inside the bundle directory once symlinks
        are resolved (no ``..``, no link to another bundle's or the system's files) and be of a
        loadable size."""
        where = self.path / MANIFEST
        try:
            root = self.path.resolve(strict=True)
            real = part.resolve(strict=True)
        except (OSError, RuntimeError):  # missing, or a symlink loop
            raise BundleError(f"{where}: {name}: model file {part} does not exist") from None
        if not real.is_relative_to(root):
            raise BundleError(
                f"{where}: {name}: {part} resolves to {real}, outside the bundle directory "
                f"{root}; a bundle may only use its own files"
            )
        st = real.stat()
        if not stat.S_ISREG(st.st_mode):
            raise BundleError(f"{where}: {name}: {part} is not a regular file")
        if st.st_size > MAX_MODEL_FILE_BYTES:
            raise BundleError(
                f"{where}: {name}: {part} has {st.st_size} bytes, more than the limit "
                f"{MAX_MODEL_FILE_BYTES}"
            )

    def to_manifest(self) -> dict[str, Any]:
        return {
            "format": BUNDLE_FORMAT,
            "name": self.name,
            "sensor": {"height": self.sensor_height, "width": self.sensor_width},
            "input": {"channels": self.channels, "height": self.height, "width": self.width},
            "bin_us": self.bin_us,
            "timesteps": self.timesteps,
            "interval": self.interval,
            "labels": list(self.labels),
            "snn": None
            if self.snn_file is None
            else {
                "file": self.snn_file.name,
                "output_shape": list(self.snn_output_shape or ()),
            },
            "ann": None
            if self.ann_file is None
            else {
                "file": self.ann_file.name,
                "input_name": self.ann_input_name,
                "output_name": self.ann_output_name,
            },
            "recipe": self.recipe,
            "metrics": self.metrics,
        }

    def save_manifest(self) -> Path:
        out = self.path / MANIFEST
        out.write_text(json.dumps(self.to_manifest(), indent=2) + "\n")
        return out


def default_bundle_path() -> Path:
    """The shipped model: models/default in a checkout, or in the package's install share dir."""
    here = Path(__file__).resolve()
    for candidate in (
        here.parents[3] / "models" / "default",  # source checkout
    ):
        if (candidate / MANIFEST).is_file():
            return candidate
    try:
        from ament_index_python.packages import get_package_share_directory

        share = Path(get_package_share_directory("hsnn_perception"))
        return share / "models" / "default"
    except Exception:
        return here.parents[3] / "models" / "default"


def resolve_model(model: str) -> str:
    """``model`` as a bundle path: a shipped model's name (a folder beside the default, e.g.
    ``synthetic-128`` for models/synthetic-128) becomes its path; anything else (a path, empty for
    the default) is kept, and whoever loads it reports a bundle it cannot load."""
    if not model or "/" in model or Path(model).exists():
        return model
    shipped = default_bundle_path().parent / model
    return str(shipped) if (shipped / MANIFEST).is_file() else model
