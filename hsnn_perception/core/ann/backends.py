"""The classifier backend interface: the ANN part of a hybrid model (an ONNX file) behind
:class:`ClassifierBackend`, built by :func:`create_backend` from the backend kinds of
``registry.CLASSIFIER_BACKENDS`` (ONNX Runtime, TensorRT; each imported only when built); the
checks shared by every kind (the model file, that a bundle's ANN fits its accumulator, one input).

The classifier node builds one backend when it is configured and calls ``infer`` per window::

    backend = create_backend("onnxruntime", Path("ann.onnx"), providers="auto", precision="fp32")
    logits = backend.infer(x)   # x: (1, F*C, H, W) float32 -> (1, classes) float32
    backend.close()

Reduced precision is made in :mod:`~hsnn_perception.core.ann.precision`, cached artifacts in
:mod:`~hsnn_perception.core.ann.artifacts`, CUDA devices described in
:mod:`~hsnn_perception.core.ann.devices`. See docs/tensorrt.md.

Heavy packages (onnxruntime, onnx, cuda-python, tensorrt) are imported inside the functions that
need them: importing this module costs only numpy.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from hsnn_perception.core.errors import ClassifierError
from hsnn_perception.core.registry import CLASSIFIER_BACKENDS, UnknownNameError

Logger = Callable[[str], object]  # a logging call; what it returns is ignored

_LOG = logging.getLogger(__name__)


class BackendError(ClassifierError, ValueError):
    """A classifier backend cannot be built or was given bad input (the message says what)."""


class BackendUnavailableError(BackendError):
    """The requested backend needs a package or device this machine does not have."""


def make_logger(logger: Logger | None) -> Logger:
    """Return ``logger`` or one that writes to this module's :mod:`logging` logger."""
    return logger if logger is not None else _LOG.info


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


def format_shape(shape: Sequence[int | None]) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


def validate_input(
    x: Any, input_shape: Sequence[int | None], what: str = "classifier input"
) -> NDArray[np.float32]:
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
        checked: NDArray[np.float32] = np.ascontiguousarray(x, dtype=np.float32)
    finite = np.isfinite(checked)
    if not finite.all():
        n_nan = int(np.isnan(checked).sum())
        n_inf = int(checked.size - finite.sum()) - n_nan
        raise BackendError(f"{what} contains {n_nan} NaN and {n_inf} infinite values")
    return checked


@runtime_checkable
class Classifier(Protocol):
    """What the classifier node runs on a window's tensor: a :class:`ClassifierBackend`, or a
    readout for bundles without an ANN part."""

    name: str
    device: str  # "cpu", "cuda:0", "jetson ...": picks the power meter (meters.meter_for)

    def infer(self, x: NDArray[Any]) -> NDArray[Any]:
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

    def infer(self, x: NDArray[Any]) -> NDArray[Any]:
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
        backend_class: Callable[..., ClassifierBackend] = CLASSIFIER_BACKENDS.entry(kind).load()
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
