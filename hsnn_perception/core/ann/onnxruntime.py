"""The ONNX Runtime classifier backend: the ANN part on the execution provider chosen by
:func:`resolve_providers` (TensorRT EP, CUDA EP, CPU), in the precision asked for.

Threads are set explicitly: a classifier is one stage of a pipeline that shares the machine with
the other stages, so by default its session runs one intra-op thread and one inter-op thread, and
its worker threads do not spin while they wait for work (ONNX Runtime's default is a pool as wide
as the machine whose threads spin between runs: at ~6 inferences/s that burned a third of a core
doing nothing; issue 15).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from hsnn_perception.core.ann.artifacts import default_cache_dir
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
from hsnn_perception.core.ann.devices import cuda_device_info, jetson_model
from hsnn_perception.core.ann.precision import PRECISIONS, prepare_precision_model

CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"
TENSORRT_PROVIDER = "TensorrtExecutionProvider"
#: Short names accepted for ``providers`` (full onnxruntime names are accepted too).
PROVIDER_ALIASES = {"tensorrt": TENSORRT_PROVIDER, "cuda": CUDA_PROVIDER, "cpu": CPU_PROVIDER}
#: What ``providers="auto"`` tries, fastest first.
AUTO_PROVIDERS = (TENSORRT_PROVIDER, CUDA_PROVIDER, CPU_PROVIDER)
#: Intra-op threads of a classifier session unless told otherwise: one, as one stage of a pipeline.
DEFAULT_THREADS = 1


def session_options(threads: int = DEFAULT_THREADS, spin: bool = False) -> Any:
    """ONNX Runtime session options with the threads set explicitly: ``threads`` intra-op threads
    (0: ONNX Runtime's own choice, one per physical core), one inter-op thread (the graph runs
    sequentially), and worker threads that sleep between runs instead of spinning unless ``spin``
    (session config entries ``session.intra_op.allow_spinning`` / ``inter_op``)."""
    import onnxruntime as ort

    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
        raise BackendError(
            f"threads must be an integer >= 0 (0: ONNX Runtime's choice), got {threads!r}"
        )
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    allow = "1" if spin else "0"
    options.add_session_config_entry("session.intra_op.allow_spinning", allow)
    options.add_session_config_entry("session.inter_op.allow_spinning", allow)
    return options


def describe_device(provider: str) -> str:
    """``backend.device`` for an onnxruntime provider: "cpu", "jetson ..." or "cuda:0 (...)"."""
    if provider not in (CUDA_PROVIDER, TENSORRT_PROVIDER):
        return "cpu"
    board = jetson_model()
    if board is not None:
        return f"jetson {board}"
    gpu = cuda_device_info(0)
    return gpu.describe() if gpu is not None else "cuda:0"


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
    ``threads`` and ``spin``: see :func:`session_options` (one thread, no spinning by default).
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
        threads: int = DEFAULT_THREADS,
        spin: bool = False,
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
        sess_options = session_options(threads, spin)  # checks them before any work
        self.threads, self.spin = threads, spin
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

    def infer(self, x: NDArray[Any]) -> NDArray[Any]:
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
