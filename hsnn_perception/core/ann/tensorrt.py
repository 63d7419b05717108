"""TensorRT classifier backend: builds (or loads a cached) engine from the ANN's ONNX file.

Engines are only valid for the TensorRT version and the GPU that built them, and for the exact
model, precision and input shapes: they are cached with that key
(:mod:`~hsnn_perception.core.ann.engine_cache`).

Precisions (see docs/tensorrt.md for why):

- ``fp32``: the model as is.
- ``fp16``: TensorRT <= 10 with ``BuilderFlag.FP16`` (TensorRT picks FP16 kernels where they are
  faster); TensorRT >= 11 removed that flag, so there a float16 copy of the model
  (:func:`~hsnn_perception.core.ann.precision.convert_fp16`) is built strongly typed.
- ``int8``, ``int8_method="qdq"`` (default): explicit quantization. A QDQ copy of the model is
  calibrated on the CPU with entropy calibration (onnxruntime's static quantizer) and cached beside
  the engine; TensorRT builds it as written. Works on TensorRT 8.6 to 11.
- ``int8``, ``int8_method="implicit"``: TensorRT's own ``IInt8EntropyCalibrator2`` (deprecated
  since TensorRT 10.1, removed in 11), with its calibration cache stored beside the engine.

Calibration inputs come from :func:`~hsnn_perception.core.ann.calibration.calibration_inputs`:
synthetic samples run through the same binning, SNN runtime and accumulator as the deployed
pipeline, so INT8 ranges match what the classifier will see. tensorrt and cuda-python are
imported only when a backend is built.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from hsnn_perception.core.ann.artifacts import (
    check_artifact,
    default_cache_dir,
    sha256_array,
    sha256_file,
    write_artifact,
)
from hsnn_perception.core.ann.backends import (
    BackendError,
    BackendUnavailableError,
    ClassifierBackend,
    Logger,
    check_model_file,
    load_onnx,
    make_logger,
    onnx_io_shapes,
    validate_input,
)
from hsnn_perception.core.ann.devices import GpuInfo, cuda_device_info, import_cudart, jetson_model
from hsnn_perception.core.ann.engine_cache import (
    CALIBRATION_COMPONENTS,
    EnginePaths,
    engine_key,
    resolve_engine,
)
from hsnn_perception.core.ann.precision import (
    as_calibration_array,
    is_quantized_onnx,
    prepare_precision_model,
)

INT8_METHODS = ("qdq", "implicit")


def tensorrt_requirements(device_index: int = 0) -> tuple[Any, Any, GpuInfo]:
    """Import tensorrt and cuda-python and find the GPU; raise naming everything that is missing.

    Returns ``(tensorrt module, cudart module, GpuInfo)``.
    """
    missing: list[str] = []
    trt: Any = None
    cudart: Any = None
    try:
        trt = importlib.import_module("tensorrt")
    except Exception as exc:  # ImportError, or OSError when libnvinfer is missing
        missing.append(f"the tensorrt Python package ({exc})")
    try:
        cudart = import_cudart()
    except Exception as exc:
        missing.append(f"cuda-python for device buffers ({exc})")
    gpu = cuda_device_info(device_index)
    if gpu is None:
        missing.append(f"an NVIDIA GPU (no CUDA device {device_index} found)")
    if missing:
        raise BackendUnavailableError(
            "backend 'tensorrt' needs the tensorrt Python package, cuda-python and an NVIDIA GPU; "
            f"not found: {'; '.join(missing)}. Use backend 'onnxruntime' (providers 'cpu') here."
        )
    assert trt is not None and cudart is not None and gpu is not None
    return trt, cudart, gpu


def tensorrt_major(version: str) -> int:
    """Major version number of a TensorRT version string ("10.13.3.9" -> 10)."""
    try:
        return int(version.split(".")[0])
    except ValueError as exc:
        raise BackendError(f"cannot read the TensorRT version {version!r}") from exc


def _cuda_check(result: Any, what: str) -> Any:
    """cuda-python calls return ``(err, *values)``; raise on an error, return the value(s)."""
    err: Any
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(getattr(err, "value", err)) != 0:  # cuda-python returns enum members
        raise BackendError(f"CUDA {what} failed: {err}")
    return values[0] if len(values) == 1 else tuple(values)


def _make_entropy_calibrator(
    trt: Any,
    cudart: Any,
    data: NDArray[Any] | None,
    cache_path: Path,
    cache_key: dict[str, Any],
    cache_ignore: Sequence[str],
    log: Logger,
) -> Any:
    """An ``IInt8EntropyCalibrator2`` feeding ``data`` one sample at a time (TensorRT <= 10)."""

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):  # type: ignore[misc]  # untyped base
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)  # pybind11 needs the explicit base init
            self._next = 0
            self._device: Any = None  # a CUDA device pointer
            if data is not None:
                self._device = _cuda_check(cudart.cudaMalloc(data[0].nbytes), "cudaMalloc")

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names: list[str]) -> list[int] | None:
            if data is None or self._next >= len(data):
                return None
            sample = np.ascontiguousarray(data[self._next : self._next + 1])
            self._next += 1
            _cuda_check(
                cudart.cudaMemcpy(
                    self._device,
                    sample.ctypes.data,
                    sample.nbytes,
                    cudart.cudaMemcpyKind.cudaMemcpyHostToDevice,
                ),
                "cudaMemcpy",
            )
            return [int(self._device)]

        def read_calibration_cache(self) -> bytes | None:
            ok, reason = check_artifact(cache_path, cache_key, cache_ignore)
            log(f"{'using' if ok else 'not using'} calibration cache: {reason}")
            return cache_path.read_bytes() if ok else None

        def write_calibration_cache(self, cache: Any) -> None:
            write_artifact(cache_path, bytes(cache), cache_key)
            log(f"wrote calibration cache {cache_path}")

        def free(self) -> None:
            if self._device is not None:
                cudart.cudaFree(self._device)
                self._device = None

    return EntropyCalibrator()


class TensorRTBackend(ClassifierBackend):
    """The ANN part as a TensorRT engine, run through an execution context with device buffers.

    Building (or loading) the engine happens here in the constructor, so a node does it when it
    is configured, not on the first message. ``int8_method``: "qdq" (explicit quantization,
    default) or "implicit" (IInt8EntropyCalibrator2, TensorRT <= 10). ``providers`` is
    onnxruntime's and ignored here (``device_index`` picks the GPU); it is accepted so that every
    backend kind is built with the same arguments by ``create_backend``.
    """

    kind = "tensorrt"

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
        int8_method: str = "qdq",
        device_index: int = 0,
        workspace_mb: int = 1024,
        output_name: str | None = None,
    ) -> None:
        start = time.perf_counter()
        self._closed = False
        self._buffers: list[Any] = []
        self._stream: Any = None
        log = make_logger(logger)
        self._log = log
        if precision not in ("fp32", "fp16", "int8"):
            raise BackendError(f"precision must be one of fp32, fp16, int8, got {precision!r}")
        if int8_method not in INT8_METHODS:
            raise BackendError(f"int8_method must be one of {INT8_METHODS}, got {int8_method!r}")
        self.model_path = check_model_file(model_path)
        model = load_onnx(self.model_path)
        inputs, outputs = onnx_io_shapes(model)
        if len(inputs) != 1:
            raise BackendError(
                f"{self.model_path} has {len(inputs)} inputs; a classifier takes exactly one"
            )
        self.input_name, model_shape = next(iter(inputs.items()))
        if output_name is not None and output_name not in outputs:
            raise BackendError(f"{self.model_path} has no output {output_name!r}")
        self.output_name = output_name or outputs[0]
        # dynamic dimensions (a symbolic batch) are fixed to 1: the node infers one window at a time
        fixed_shape = tuple(1 if d is None else d for d in model_shape)
        self.input_shape = fixed_shape
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()

        trt, cudart, gpu = tensorrt_requirements(device_index)
        self._cudart = cudart
        _cuda_check(cudart.cudaSetDevice(device_index), "cudaSetDevice")
        version = str(trt.__version__)
        major = tensorrt_major(version)
        if precision == "int8" and int8_method == "implicit" and major >= 11:
            raise BackendError(
                f"int8_method 'implicit' (IInt8EntropyCalibrator2) was removed in TensorRT 11; "
                f"this is TensorRT {version}. Use int8_method 'qdq'."
            )

        calib = None
        if precision == "int8" and calibration_data is not None:
            calib = as_calibration_array(calibration_data, self.input_shape)
        already_quantized = precision == "int8" and is_quantized_onnx(model)
        if already_quantized and int8_method != "qdq":
            log(f"{self.model_path.name} is already quantized (QDQ); building it as is")
            int8_method = "qdq"
        key = engine_key(
            onnx_sha256=sha256_file(self.model_path),
            precision=precision,
            input_shapes={self.input_name: fixed_shape},
            tensorrt_version=version,
            gpu_name=gpu.name,
            compute_capability=gpu.compute_capability,
            int8_method="qdq-in-model" if already_quantized else int8_method,
            calibration_sha256=None if calib is None or already_quantized else sha256_array(calib),
        )
        ignore = CALIBRATION_COMPONENTS if calib is None else ()
        paths = EnginePaths.for_model(self.cache_dir, self.model_path, precision, int8_method)
        self.engine_path = paths.engine

        def build() -> bytes:
            return self._build(
                trt, cudart, precision, int8_method, calib, paths, key, workspace_mb, log
            )

        self._trt_logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(self._trt_logger)
        data, built = resolve_engine(
            paths.engine, key, build, force_rebuild=force_rebuild, ignore=ignore, logger=log
        )
        engine = runtime.deserialize_cuda_engine(data)
        if engine is None and not built:
            log(f"cached {paths.engine.name} could not be deserialized; rebuilding")
            data, built = resolve_engine(paths.engine, key, build, force_rebuild=True, logger=log)
            engine = runtime.deserialize_cuda_engine(data)
        if engine is None:
            raise BackendError(f"TensorRT could not deserialize the engine built from {model_path}")
        self._runtime, self._engine = runtime, engine
        self._setup_context(trt, cudart)
        self.precision = precision
        self.name = f"tensorrt {version} {precision}"
        board = jetson_model()
        self.device = f"jetson {board}" if board else gpu.describe()
        self.gpu = gpu
        self.engine_built = built
        self.build_seconds = time.perf_counter() - start
        log(
            f"classifier backend {self.name} on {self.device} ready in {self.build_seconds:.1f} s "
            f"({'built' if built else 'cached'} engine {paths.engine})"
        )

    # ------------------------------------------------------------------ building

    def _build(
        self,
        trt: Any,
        cudart: Any,
        precision: str,
        int8_method: str,
        calib: NDArray[Any] | None,
        paths: EnginePaths,
        key: dict[str, Any],
        workspace_mb: int,
        log: Logger,
    ) -> bytes:
        major = tensorrt_major(str(trt.__version__))
        creation = trt.NetworkDefinitionCreationFlag
        source = self.model_path
        # TensorRT >= 11 has only strongly typed networks (precision lives in the graph); before
        # that, builder flags let TensorRT pick reduced-precision kernels (weak typing).
        strong = major >= 11 and hasattr(creation, "STRONGLY_TYPED")
        if precision == "fp16" and (strong or not hasattr(trt.BuilderFlag, "FP16")):
            source = self._derived(precision, calib, log)  # float16 copy, float32 I/O
            strong = hasattr(creation, "STRONGLY_TYPED")
        elif precision == "int8" and int8_method == "qdq":
            source = self._derived(precision, calib, log)  # explicitly quantized (QDQ) copy
        flags = 1 << int(creation.STRONGLY_TYPED) if strong else 0
        if major < 10 and hasattr(creation, "EXPLICIT_BATCH"):
            flags |= 1 << int(creation.EXPLICIT_BATCH)

        builder = trt.Builder(self._trt_logger)
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, self._trt_logger)
        if not parser.parse(source.read_bytes()):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise BackendError(f"TensorRT's ONNX parser rejected {source}: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
        if any(d < 0 for d in network.get_input(0).shape):
            profile = builder.create_optimization_profile()
            shape = tuple(self.input_shape)
            profile.set_shape(network.get_input(0).name, shape, shape, shape)
            config.add_optimization_profile(profile)
        if not strong and precision == "fp16":
            config.set_flag(trt.BuilderFlag.FP16)
        if not strong and precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)  # weakly typed networks need it for Q/DQ too
        calibrator = None
        if precision == "int8" and int8_method == "implicit":
            calib_key = {
                "onnx_sha256": key["onnx_sha256"],
                "calibration_sha256": key["calibration_sha256"],
                "tensorrt": key["tensorrt"],
                "algorithm": "entropy2",
            }
            ignore = CALIBRATION_COMPONENTS if calib is None else ()
            if calib is None and not check_artifact(paths.calibration_cache, calib_key, ignore)[0]:
                raise BackendError(
                    "precision 'int8' needs calibration_data (a few hundred ANN inputs, see "
                    "calibration_inputs) and no valid calibration cache was found"
                )
            calibrator = _make_entropy_calibrator(
                trt, cudart, calib, paths.calibration_cache, calib_key, ignore, log
            )
            config.int8_calibrator = calibrator
        try:
            serialized = builder.build_serialized_network(network, config)
        finally:
            if calibrator is not None:
                calibrator.free()
        if serialized is None:
            raise BackendError(
                f"TensorRT failed to build a {precision} engine from {source} (see its log above)"
            )
        return bytes(serialized)

    def _derived(self, precision: str, calib: NDArray[Any] | None, log: Logger) -> Path:
        return prepare_precision_model(
            self.model_path,
            precision,
            cache_dir=self.cache_dir,
            input_name=self.input_name,
            input_shape=self.input_shape,
            calibration_data=calib,
            logger=log,
        )

    # ------------------------------------------------------------------ running

    def _setup_context(self, trt: Any, cudart: Any) -> None:
        engine = self._engine
        context = engine.create_execution_context()
        if context is None:
            raise BackendError("TensorRT could not create an execution context (GPU memory?)")
        self._context = context
        context.set_input_shape(self.input_name, self.input_shape)
        self._stream = _cuda_check(cudart.cudaStreamCreate(), "cudaStreamCreate")
        self._host: dict[str, NDArray[Any]] = {}
        self._device: dict[str, int] = {}
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            shape = tuple(context.get_tensor_shape(name))
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
            host = np.empty(shape, dtype=dtype)
            ptr = _cuda_check(cudart.cudaMalloc(max(host.nbytes, 1)), "cudaMalloc")
            self._buffers.append(ptr)
            self._host[name] = host
            self._device[name] = int(ptr)
            context.set_tensor_address(name, int(ptr))
        if self.output_name not in self._host:
            raise BackendError(f"the engine has no output tensor {self.output_name!r}")

    def infer(self, x: NDArray[Any]) -> NDArray[Any]:
        self._check_open()
        batch = validate_input(x, self.input_shape, f"input {self.input_name!r}")
        cudart = self._cudart
        h2d = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        d2h = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        host_in = self._host[self.input_name]
        np.copyto(host_in, batch.astype(host_in.dtype, copy=False))
        out = self._host[self.output_name]
        _cuda_check(
            cudart.cudaMemcpyAsync(
                self._device[self.input_name],
                host_in.ctypes.data,
                host_in.nbytes,
                h2d,
                self._stream,
            ),
            "cudaMemcpyAsync (to device)",
        )
        if not self._context.execute_async_v3(int(self._stream)):
            raise BackendError(f"{self.name}: execute_async_v3 failed")
        _cuda_check(
            cudart.cudaMemcpyAsync(
                out.ctypes.data, self._device[self.output_name], out.nbytes, d2h, self._stream
            ),
            "cudaMemcpyAsync (to host)",
        )
        _cuda_check(cudart.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")
        return out.astype(np.float32, copy=True)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        cudart = getattr(self, "_cudart", None)
        if cudart is not None:
            for ptr in self._buffers:
                cudart.cudaFree(ptr)
            if self._stream is not None:
                cudart.cudaStreamDestroy(self._stream)
        self._buffers = []
        self._stream = None
        # drop the context before the engine, and the engine before the runtime (TensorRT order)
        for attr in ("_context", "_engine", "_runtime"):
            if hasattr(self, attr):
                setattr(self, attr, None)

    def __del__(self) -> None:  # device memory is not garbage collected with the object
        try:
            self.close()
        except Exception:
            pass
