"""Classifier backends: the ANN part of a hybrid model (an ONNX file) on ONNX Runtime or TensorRT.

The classifier node builds one backend when it is configured and calls ``infer`` per window::

    backend = create_backend("onnxruntime", Path("ann.onnx"), providers="auto", precision="fp32")
    logits = backend.infer(x)   # x: (1, F*C, H, W) float32 -> (1, classes) float32
    backend.close()

``create_backend(kind="tensorrt", ...)`` returns :class:`~hsnn_perception.core.ann.tensorrt.
TensorRTBackend` (imported only then). Reduced precision is put *into the graph* here, on the CPU,
so it can be checked without a GPU: INT8 as a QDQ (QuantizeLinear/DequantizeLinear) model made by
onnxruntime's static quantizer with entropy calibration, FP16 as a float16 model with float32
inputs/outputs. Both are cached beside a JSON sidecar that names what they were made from, so a
stale file is remade rather than used. See docs/tensorrt.md.

Heavy packages (onnxruntime, onnx, cuda-python, tensorrt) are imported inside the functions that
need them: importing this module costs only numpy.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from hsnn_perception.core.errors import ClassifierError
from hsnn_perception.core.registry import CLASSIFIER_BACKENDS, UnknownNameError

Logger = Callable[[str], None]

PRECISIONS = ("fp32", "fp16", "int8")
CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"
TENSORRT_PROVIDER = "TensorrtExecutionProvider"
#: Short names accepted for ``providers`` (full onnxruntime names are accepted too).
PROVIDER_ALIASES = {"tensorrt": TENSORRT_PROVIDER, "cuda": CUDA_PROVIDER, "cpu": CPU_PROVIDER}
#: What ``providers="auto"`` tries, fastest first.
AUTO_PROVIDERS = (TENSORRT_PROVIDER, CUDA_PROVIDER, CPU_PROVIDER)
ARTIFACT_FORMAT = "hsnn-classifier-artifact/1"
#: Fewer calibration samples than this give noisy activation ranges (a warning is logged).
MIN_CALIBRATION_SAMPLES = 100

_LOG = logging.getLogger(__name__)


class BackendError(ClassifierError, ValueError):
    """A classifier backend cannot be built or was given bad input (the message says what)."""


class BackendUnavailableError(BackendError):
    """The requested backend needs a package or device this machine does not have."""


# --------------------------------------------------------------------------------------------
# small shared helpers


def make_logger(logger: Logger | None) -> Logger:
    """Return ``logger`` or one that writes to this module's :mod:`logging` logger."""
    return logger if logger is not None else _LOG.info


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes (read in chunks: engines can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_array(data: np.ndarray) -> str:
    """Hex sha256 of an array's dtype, shape and bytes (identifies a calibration set)."""
    arr = np.ascontiguousarray(data)
    digest = hashlib.sha256(f"{arr.dtype.str}{arr.shape}".encode())
    digest.update(arr.tobytes())
    return digest.hexdigest()


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/hsnn/classifier`` (``~/.cache/hsnn/classifier``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hsnn" / "classifier"


def check_model_file(model_path: str | Path) -> Path:
    """Return ``model_path`` as a Path, or raise :class:`BackendError` if it is not a file."""
    path = Path(model_path)
    if not path.exists():
        raise BackendError(f"ONNX model {path} does not exist")
    if not path.is_file():
        raise BackendError(f"ONNX model {path} is not a file")
    return path


def load_onnx(path: Path) -> Any:
    """Load and check an ONNX model with the onnx package; a corrupt file raises BackendError."""
    import onnx

    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as exc:  # protobuf DecodeError, ValidationError, OSError ...
        raise BackendError(f"{path} is not a valid ONNX model: {exc}") from exc
    return model


def onnx_io_shapes(model: Any) -> tuple[dict[str, tuple[int | None, ...]], list[str]]:
    """Graph inputs (initializers excluded) with their shapes (None = dynamic) and output names."""
    initializers = {init.name for init in model.graph.initializer}
    inputs: dict[str, tuple[int | None, ...]] = {}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        dims = value.type.tensor_type.shape.dim
        inputs[value.name] = tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)
    return inputs, [value.name for value in model.graph.output]


def check_bundle_fit(
    model_path: Path | str,
    input_name: str,
    input_shape: Sequence[int],
    output_name: str,
    num_classes: int,
) -> None:
    """Raise BackendError, naming what differs, when a bundle's ANN does not take the tensor the
    accumulator makes (name, shape) or does not give one score per label."""
    path = Path(model_path)
    model = load_onnx(path)
    inputs, outputs = onnx_io_shapes(model)
    if input_name not in inputs:
        raise BackendError(
            f"{path} has no input {input_name!r} (inputs: {', '.join(inputs) or 'none'}); the "
            "bundle's manifest names it in ann.input_name"
        )
    want = tuple(input_shape)
    got = inputs[input_name]
    if len(got) != len(want) or any(
        g is not None and g != w for g, w in zip(got[1:], want[1:], strict=True)
    ):
        raise BackendError(
            f"{path}: input {input_name!r} is {format_shape(got)} but the accumulator gives "
            f"{format_shape(want)} (bundle interval / SNN output shape)"
        )
    if output_name not in outputs:
        raise BackendError(
            f"{path} has no output {output_name!r} (outputs: {', '.join(outputs)}); the bundle's "
            "manifest names it in ann.output_name"
        )
    value = next(v for v in model.graph.output if v.name == output_name)
    dims = value.type.tensor_type.shape.dim
    scores = dims[-1].dim_value if len(dims) and dims[-1].HasField("dim_value") else None
    if scores is not None and scores != num_classes:
        raise BackendError(
            f"{path}: output {output_name!r} gives {scores} scores but the bundle has "
            f"{num_classes} labels"
        )


def check_bundle_ann(bundle: Any, input_name: str | None = None) -> None:
    """:func:`check_bundle_fit` for a ``ModelBundle``'s ANN (``input_name`` overrides the
    manifest's, as the classifier node's parameter does)."""
    check_bundle_fit(
        bundle.ann_file,
        input_name or bundle.ann_input_name,
        bundle.ann_input_shape,
        bundle.ann_output_name,
        bundle.num_classes,
    )


def is_quantized_onnx(model: Any) -> bool:
    """True if the graph already carries explicit INT8 quantization (QDQ or QOperator nodes)."""
    quant_ops = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul"}
    return any(node.op_type in quant_ops for node in model.graph.node)


def format_shape(shape: Sequence[int | None]) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


def validate_input(
    x: Any, input_shape: Sequence[int | None], what: str = "classifier input"
) -> np.ndarray:
    """Check one inference input and return it as a contiguous float32 array.

    A missing leading batch axis is added. Raises :class:`BackendError` naming the problem for a
    non-array, a non-real dtype, a wrong shape, an empty array, or NaN/infinite values (a NaN
    would otherwise come back as plausible-looking logits).
    """
    if not isinstance(x, np.ndarray):
        raise BackendError(f"{what} must be a numpy array, got {type(x).__name__}")
    if x.dtype.kind not in "biuf":
        raise BackendError(f"{what} has dtype {x.dtype}; expected float32 (or a real number type)")
    shape = tuple(input_shape)
    if x.ndim == len(shape) - 1:
        x = x[np.newaxis]
    if x.ndim != len(shape) or any(
        want is not None and want != got for want, got in zip(shape, x.shape, strict=True)
    ):
        raise BackendError(
            f"{what} has shape {tuple(x.shape)}; the model expects {format_shape(shape)}"
        )
    if x.size == 0:
        raise BackendError(f"{what} is empty (shape {tuple(x.shape)})")
    with np.errstate(over="ignore"):  # float64 beyond float32's range becomes inf, caught below
        x = np.ascontiguousarray(x, dtype=np.float32)
    finite = np.isfinite(x)
    if not finite.all():
        n_nan = int(np.isnan(x).sum())
        n_inf = int(x.size - finite.sum()) - n_nan
        raise BackendError(f"{what} contains {n_nan} NaN and {n_inf} infinite values")
    return x


def as_calibration_array(data: Any, input_shape: Sequence[int | None]) -> np.ndarray:
    """Stack calibration inputs into ``(N, *input_shape[1:])`` float32.

    Accepts an array ``(N, C, H, W)`` (N samples), or an iterable of per-sample arrays shaped
    like one inference input (with or without the batch axis of 1).
    """
    shape = tuple(input_shape)
    if isinstance(data, np.ndarray):
        arr = data
        if arr.ndim == len(shape) + 1 and arr.shape[1] == 1:
            arr = arr[:, 0]  # (N, 1, C, H, W): a list of batch-1 inputs stacked
    elif isinstance(data, Iterable):
        samples = [
            validate_input(item, shape, f"calibration sample {i}")[0] for i, item in enumerate(data)
        ]
        if not samples:
            raise BackendError("calibration_data is empty")
        arr = np.stack(samples)
    else:
        raise BackendError(
            f"calibration_data must be an array or an iterable of arrays, not {data!r}"
        )
    if arr.ndim != len(shape) or arr.shape[0] == 0:
        raise BackendError(
            f"calibration_data has shape {tuple(arr.shape)}; expected (N, "
            f"{', '.join('?' if d is None else str(d) for d in shape[1:])}) with N >= 1"
        )
    checked = validate_input(arr, (None, *shape[1:]), "calibration_data")
    return checked


# --------------------------------------------------------------------------------------------
# artifacts (derived models, engines) cached beside a JSON sidecar naming what they came from


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


# --------------------------------------------------------------------------------------------
# reduced-precision ONNX models, made on the CPU


def _onnxruntime_version() -> str:
    import onnxruntime

    return str(onnxruntime.__version__)


def derived_model_key(
    source_sha256: str, transform: str, calibration_sha256: str | None = None
) -> dict[str, Any]:
    """Cache key of a model derived from an ONNX file (its hash, the transform, the tool)."""
    return {
        "source_sha256": source_sha256,
        "transform": transform,
        "calibration_sha256": calibration_sha256,
        "onnxruntime": _onnxruntime_version(),
    }


def quantize_int8_qdq(
    model_path: Path,
    calibration: np.ndarray,
    out_path: Path,
    *,
    input_name: str,
    per_channel: bool = True,
) -> None:
    """Write an explicitly quantized (QDQ, symmetric INT8) copy of ``model_path`` to ``out_path``.

    Activation ranges come from entropy (KL divergence) calibration over ``calibration``
    (``(N, C, H, W)``), the same criterion as TensorRT's IInt8EntropyCalibrator2. Symmetric
    activations and weights because TensorRT accepts only zero-point-0 INT8; weights per channel.
    """
    from onnxruntime.quantization import CalibrationDataReader
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._next = 0

        def get_next(self) -> dict[str, np.ndarray] | None:
            if self._next >= len(calibration):
                return None
            sample = calibration[self._next : self._next + 1]
            self._next += 1
            return {input_name: sample}

        def rewind(self) -> None:
            self._next = 0

    with tempfile.TemporaryDirectory(prefix="hsnn-qdq-") as tmp:
        prepared = Path(tmp) / "model.pre.onnx"
        tmp_out = Path(tmp) / "model.qdq.onnx"
        # shape inference + constant folding first, as onnxruntime's quantizer recommends; its
        # progress messages go to stdout, which a ROS node's console does not need
        with contextlib.redirect_stdout(io.StringIO()):
            quant_pre_process(str(model_path), str(prepared))
            _quantize_static_qdq(prepared, tmp_out, _Reader(), per_channel=per_channel)
        out_path.write_bytes(tmp_out.read_bytes())


def _quantize_static_qdq(
    model_path: Path, out_path: Path, reader: Any, *, per_channel: bool
) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    quantize_static(
        str(model_path),
        str(out_path),
        reader,
        quant_format=QuantFormat.QDQ,
        per_channel=per_channel,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.Entropy,
        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
    )


def convert_fp16(model_path: Path, out_path: Path) -> None:
    """Write a float16 copy of ``model_path`` whose inputs and outputs stay float32."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(model_path))
    half = convert_float_to_float16(model, keep_io_types=True)
    onnx.save(half, str(out_path))


def prepare_precision_model(
    model_path: Path,
    precision: str,
    *,
    cache_dir: Path,
    input_name: str,
    input_shape: Sequence[int | None],
    calibration_data: Any = None,
    force_rebuild: bool = False,
    logger: Logger | None = None,
) -> Path:
    """Return the ONNX file to run for ``precision``: the model itself, or a cached derived copy.

    ``fp32``: the model. ``fp16``: a float16 copy (float32 I/O). ``int8``: the model if it is
    already quantized (QDQ from quantization-aware training), else a QDQ copy calibrated on
    ``calibration_data``. Without calibration data a cached INT8 copy of the same model is
    reused (whatever data calibrated it); with none cached it is an error.
    """
    log = make_logger(logger)
    if precision not in PRECISIONS:
        raise BackendError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "fp32":
        return model_path
    source_sha = sha256_file(model_path)
    stem = model_path.name.removesuffix(".onnx")
    if precision == "fp16":
        out = Path(cache_dir) / f"{stem}.fp16.onnx"
        key = derived_model_key(source_sha, "fp16-keep-io")
        ok, reason = check_artifact(out, key)
        if ok and not force_rebuild:
            log(f"using {reason}")
            return out
        log(f"making an FP16 copy of {model_path.name}: {reason if not ok else 'force_rebuild'}")
        with tempfile.TemporaryDirectory(prefix="hsnn-fp16-") as tmp:
            tmp_out = Path(tmp) / "model.onnx"
            convert_fp16(model_path, tmp_out)
            write_artifact(out, tmp_out.read_bytes(), key, source=str(model_path))
        return out

    if is_quantized_onnx(load_onnx(model_path)):
        log(f"{model_path.name} is already quantized (QDQ); using it as is for int8")
        return model_path
    out = Path(cache_dir) / f"{stem}.int8.qdq.onnx"
    if calibration_data is None:
        key = derived_model_key(source_sha, "int8-qdq-entropy-symmetric")
        ok, reason = check_artifact(out, key, ignore=("calibration_sha256",))
        if ok and not force_rebuild:
            log(f"using {reason} (no calibration_data given: reusing the cached calibration)")
            return out
        raise BackendError(
            "precision 'int8' needs calibration_data (a few hundred ANN inputs, e.g. from "
            "hsnn_perception.core.ann.tensorrt.calibration_inputs) to quantize "
            f"{model_path.name}, and no valid cached INT8 model was found ({reason})"
        )
    calib = as_calibration_array(calibration_data, input_shape)
    if len(calib) < MIN_CALIBRATION_SAMPLES:
        log(
            f"only {len(calib)} calibration samples; a few hundred give steadier INT8 ranges "
            f"(>= {MIN_CALIBRATION_SAMPLES} recommended)"
        )
    key = derived_model_key(source_sha, "int8-qdq-entropy-symmetric", sha256_array(calib))
    ok, reason = check_artifact(out, key)
    if ok and not force_rebuild:
        log(f"using {reason}")
        return out
    log(f"calibrating INT8 on {len(calib)} samples: {reason if not ok else 'force_rebuild'}")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="hsnn-int8-") as tmp:
        tmp_out = Path(tmp) / "model.onnx"
        try:
            quantize_int8_qdq(model_path, calib, tmp_out, input_name=input_name)
        except BackendError:
            raise
        except Exception as exc:
            raise BackendError(f"INT8 quantization of {model_path} failed: {exc}") from exc
        write_artifact(
            out, tmp_out.read_bytes(), key, source=str(model_path), samples=int(len(calib))
        )
    log(f"INT8 calibration took {time.perf_counter() - start:.1f} s -> {out}")
    return out


# --------------------------------------------------------------------------------------------
# devices


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


def describe_device(provider: str) -> str:
    """``backend.device`` for an onnxruntime provider: "cpu", "jetson ..." or "cuda:0 (...)"."""
    if provider not in (CUDA_PROVIDER, TENSORRT_PROVIDER):
        return "cpu"
    board = jetson_model()
    if board is not None:
        return f"jetson {board}"
    gpu = cuda_device_info(0)
    return gpu.describe() if gpu is not None else "cuda:0"


# --------------------------------------------------------------------------------------------
# backends


@runtime_checkable
class Classifier(Protocol):
    """What the classifier node runs on a window's tensor: a :class:`ClassifierBackend`, or a
    readout for bundles without an ANN part."""

    name: str
    device: str  # "cpu", "cuda:0", "jetson ...": picks the power meter (meters.meter_for)

    def infer(self, x: np.ndarray) -> np.ndarray:
        """Logits (float32) for one input batch."""
        ...

    def close(self) -> None:
        """Release the session / engine and device memory (idempotent)."""
        ...


class ClassifierBackend:
    """Base of the classifier backend kinds (the entries of ``registry.CLASSIFIER_BACKENDS``):
    identity, I/O description, ``infer`` and ``close``; a :class:`Classifier`."""

    kind: str = ""
    name: str = ""
    device: str = "cpu"
    precision: str = "fp32"
    input_name: str = ""
    input_shape: tuple[int | None, ...] = ()
    output_name: str = ""
    build_seconds: float = 0.0

    def infer(self, x: np.ndarray) -> np.ndarray:
        """Logits (float32, ``(batch, classes)``) for one input batch."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the session / engine and device memory (idempotent)."""

    @property
    def closed(self) -> bool:
        return getattr(self, "_closed", False)

    def _check_open(self) -> None:
        if self.closed:
            raise BackendError(f"backend {self.name} is closed")

    def __enter__(self) -> ClassifierBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.name} on {self.device}: "
            f"{self.input_name}{format_shape(self.input_shape)} -> {self.output_name}>"
        )


def resolve_providers(
    requested: str | Sequence[str],
    available: Sequence[str],
    *,
    known: Sequence[str] | None = None,
    logger: Logger | None = None,
) -> list[str]:
    """Turn a provider request into the list handed to onnxruntime, CPU always last.

    ``requested``: "auto" (TensorRT EP, then CUDA EP, then CPU), a short name ("tensorrt",
    "cuda", "cpu"), a full onnxruntime provider name, or a sequence of these in order of
    preference. Providers this onnxruntime build does not offer (``available``) are dropped with a
    logged reason; if none is left the session falls back to CPU, again with a logged reason.
    Names that are no provider at all (not in ``known``) raise :class:`BackendError`.
    """
    log = make_logger(logger)
    names = [requested] if isinstance(requested, str) else list(requested)
    if not names:
        raise BackendError("providers is empty; use 'auto', 'tensorrt', 'cuda' or 'cpu'")
    wanted: list[str] = []
    for raw in names:
        if not isinstance(raw, str):
            raise BackendError(f"provider names must be strings, got {raw!r}")
        name = raw.strip()
        if name.lower() == "auto":
            expanded = list(AUTO_PROVIDERS)
        else:
            full = PROVIDER_ALIASES.get(name.lower(), name)
            if known is not None and full not in known:
                raise BackendError(
                    f"unknown onnxruntime provider {raw!r}; use 'auto', "
                    f"{', '.join(repr(a) for a in PROVIDER_ALIASES)} or a provider name such as "
                    f"{TENSORRT_PROVIDER!r}"
                )
            expanded = [full]
        wanted.extend(p for p in expanded if p not in wanted)
    chosen = [p for p in wanted if p in available]
    skipped = [p for p in wanted if p not in available]
    if skipped:
        log(
            f"onnxruntime providers {', '.join(skipped)} are not available in this onnxruntime "
            f"build (it offers {', '.join(available) or 'none'}); skipping them"
        )
    if not chosen:
        log(f"none of the requested providers is available; falling back to {CPU_PROVIDER}")
    if CPU_PROVIDER not in chosen:
        chosen.append(CPU_PROVIDER)  # nodes the GPU providers cannot place run on the CPU
    return chosen


class OnnxRuntimeBackend(ClassifierBackend):
    """The ANN part on ONNX Runtime, on the execution provider chosen by :func:`resolve_providers`.

    ``precision``: "fp32"; "fp16" (TensorRT EP: its FP16 mode; CUDA EP: a float16 copy of the
    model; CPU: no fast FP16 path, so it runs FP32 and logs that); "int8" (a QDQ copy calibrated on
    ``calibration_data``, run by any provider). ``backend.precision`` is what actually runs.
    """

    kind = "onnxruntime"

    def __init__(
        self,
        model_path: str | Path,
        *,
        providers: str | Sequence[str] = "auto",
        precision: str = "fp32",
        cache_dir: str | Path | None = None,
        force_rebuild: bool = False,
        calibration_data: Any = None,
        logger: Logger | None = None,
        output_name: str | None = None,
        threads: int | None = None,
    ) -> None:
        start = time.perf_counter()
        self._closed = False
        log = make_logger(logger)
        self._log = log
        if precision not in PRECISIONS:
            raise BackendError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendUnavailableError(
                f"backend 'onnxruntime' needs the onnxruntime Python package: {exc}"
            ) from exc
        self.model_path = check_model_file(model_path)
        model = load_onnx(self.model_path)
        inputs, outputs = onnx_io_shapes(model)
        if len(inputs) != 1:
            raise BackendError(
                f"{self.model_path} has {len(inputs)} inputs ({', '.join(inputs) or 'none'}); "
                "a classifier takes exactly one"
            )
        self.input_name, self.input_shape = next(iter(inputs.items()))
        if output_name is not None and output_name not in outputs:
            raise BackendError(
                f"{self.model_path} has no output {output_name!r} (outputs: {', '.join(outputs)})"
            )
        self.output_name = output_name or outputs[0]
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()

        chosen = resolve_providers(
            providers, ort.get_available_providers(), known=ort.get_all_providers(), logger=log
        )
        run_precision = precision
        run_model = self.model_path
        options: list[dict[str, str]] = [{} for _ in chosen]
        if TENSORRT_PROVIDER in chosen:
            trt_dir = self.cache_dir / "ort-trt"
            trt_dir.mkdir(parents=True, exist_ok=True)
            options[chosen.index(TENSORRT_PROVIDER)] = {
                "trt_engine_cache_enable": "True",
                "trt_engine_cache_path": str(trt_dir),
                "trt_fp16_enable": str(precision == "fp16"),
                "trt_int8_enable": str(precision == "int8"),  # QDQ model: no calibration table
            }
        if precision == "int8":
            run_model = prepare_precision_model(
                self.model_path,
                "int8",
                cache_dir=self.cache_dir,
                input_name=self.input_name,
                input_shape=self.input_shape,
                calibration_data=calibration_data,
                force_rebuild=force_rebuild,
                logger=log,
            )
        elif precision == "fp16" and chosen[0] == CUDA_PROVIDER:
            run_model = prepare_precision_model(
                self.model_path,
                "fp16",
                cache_dir=self.cache_dir,
                input_name=self.input_name,
                input_shape=self.input_shape,
                force_rebuild=force_rebuild,
                logger=log,
            )
        elif precision == "fp16" and chosen[0] == CPU_PROVIDER:
            log("precision fp16 has no fast path on onnxruntime's CPU provider; running fp32")
            run_precision = "fp32"

        sess_options = ort.SessionOptions()
        if threads is not None:
            sess_options.intra_op_num_threads = int(threads)
        try:
            self._session = ort.InferenceSession(
                str(run_model), sess_options, providers=chosen, provider_options=options
            )
        except Exception as exc:
            raise BackendError(f"onnxruntime cannot load {run_model}: {exc}") from exc
        running = list(self._session.get_providers())
        dropped = [p for p in chosen if p not in running]
        if dropped:
            # onnxruntime drops a provider it cannot initialise (e.g. CUDA libraries missing)
            log(f"onnxruntime could not start {', '.join(dropped)}; running on {running[0]}")
        self.provider = running[0]
        if precision == "fp16" and self.provider == CPU_PROVIDER:
            run_precision = "fp32"
        self.precision = run_precision
        self.providers = tuple(running)
        self.name = f"onnxruntime[{self.provider}]" + (
            f" {run_precision}" if run_precision != "fp32" else ""
        )
        self.device = describe_device(self.provider)
        self.run_model_path = Path(run_model)
        self.build_seconds = time.perf_counter() - start
        log(f"classifier backend {self.name} on {self.device} ready in {self.build_seconds:.2f} s")

    def infer(self, x: np.ndarray) -> np.ndarray:
        self._check_open()
        batch = validate_input(x, self.input_shape, f"input {self.input_name!r}")
        try:
            (out,) = self._session.run([self.output_name], {self.input_name: batch})
        except Exception as exc:
            raise BackendError(f"{self.name} inference failed: {exc}") from exc
        return np.asarray(out, dtype=np.float32)

    def close(self) -> None:
        if not self._closed:
            self._session = None
            self._closed = True


def create_backend(
    kind: str,
    model_path: str | Path,
    *,
    providers: str | Sequence[str] = "auto",
    precision: str = "fp32",
    cache_dir: str | Path | None = None,
    force_rebuild: bool = False,
    calibration_data: Any = None,
    logger: Logger | None = None,
    **options: Any,
) -> ClassifierBackend:
    """Build a classifier backend of ``kind`` (a name of ``registry.CLASSIFIER_BACKENDS``:
    "onnxruntime" or "tensorrt"; its module is imported now) for ``model_path``.

    Raises :class:`BackendUnavailableError` if the backend's packages or GPU are missing and
    :class:`BackendError` for any other problem (bad model file, bad options).
    """
    try:
        backend_class = CLASSIFIER_BACKENDS.entry(kind).load()
    except UnknownNameError as exc:
        raise BackendError(str(exc)) from None
    return backend_class(
        model_path,
        providers=providers,
        precision=precision,
        cache_dir=cache_dir,
        force_rebuild=force_rebuild,
        calibration_data=calibration_data,
        logger=logger,
        **options,
    )
