"""Reduced precision put *into the graph*, on the CPU, so it can be checked without a GPU: INT8 as a
QDQ (QuantizeLinear/DequantizeLinear) model made by onnxruntime's static quantizer with entropy
calibration, FP16 as a float16 model with float32 inputs/outputs. Both are cached artifacts
(:mod:`~hsnn_perception.core.ann.artifacts`) keyed by the source model, the transform, the
calibration data and the onnxruntime version. See docs/tensorrt.md.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from hsnn_perception.core.ann.artifacts import (
    check_artifact,
    sha256_array,
    sha256_file,
    write_artifact,
)
from hsnn_perception.core.ann.backends import (
    BackendError,
    Logger,
    load_onnx,
    make_logger,
    validate_input,
)

PRECISIONS = ("fp32", "fp16", "int8")
#: Fewer calibration samples than this give noisy activation ranges (a warning is logged).
MIN_CALIBRATION_SAMPLES = 100


def is_quantized_onnx(model: Any) -> bool:
    """True if the graph already carries explicit INT8 quantization (QDQ or QOperator nodes)."""
    quant_ops = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul"}
    return any(node.op_type in quant_ops for node in model.graph.node)


def as_calibration_array(data: Any, input_shape: Sequence[int | None]) -> NDArray[Any]:
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
    calibration: NDArray[Any],
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

    class _Reader(CalibrationDataReader):  # type: ignore[misc]  # onnxruntime has no types
        def __init__(self) -> None:
            self._next = 0

        def get_next(self) -> dict[str, NDArray[Any]] | None:
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
            "hsnn_perception.core.ann.calibration.calibration_inputs) to quantize "
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
