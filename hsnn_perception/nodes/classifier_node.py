"""Classifier node: runs the non-spiking layers (ONNX Runtime anywhere, TensorRT on NVIDIA GPUs) on
the accumulator's tensors and publishes classifications and the stage's energy report."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np
from rclpy.lifecycle import LifecyclePublisher, State, TransitionCallbackReturn

from hsnn_perception.core.ann.readout import spike_count_readout
from hsnn_perception.core.energy.meters import meter_for
from hsnn_perception.core.energy.profiles import ANN_DEVICE_PROFILES, DEFAULT_ANN_DEVICE
from hsnn_perception.core.errors import ClassifierError, ConfigurationError, ModelError
from hsnn_perception.core.events.stream import SequenceGaps
from hsnn_perception.core.hybrid.bundle import ModelBundle, default_bundle_path
from hsnn_perception.core.hybrid.pipeline import ClassifierStage
from hsnn_perception.core.registry import node_name
from hsnn_perception.graph import CLASSIFICATION, CLASSIFIER_BACKENDS, TENSORS
from hsnn_perception.msg import Classification, TensorList
from hsnn_perception.nodes.base import HsnnNode, guarded_transition, reliable_qos, run_node
from hsnn_perception.nodes.conversions import (
    MessageFieldError,
    classification_bytes,
)

if TYPE_CHECKING:
    from hsnn_perception.core.ann.backends import Classifier


class SpikeCountReadout:
    """For bundles without an ANN part (the SNN baseline): the class is the output neuron with the
    most spikes over the window."""

    name = "spike-count readout (SNN baseline)"
    device = "cpu"

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes

    def infer(self, x: np.ndarray) -> np.ndarray:
        return spike_count_readout(x, self.num_classes)

    def close(self) -> None:
        pass


class ClassifierNode(HsnnNode):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(node_name("classifier"), **kwargs)
        p = self.declare
        p("model", "")
        p("backend", "onnxruntime")  # onnxruntime | tensorrt
        p("providers", "auto")  # onnxruntime: auto | tensorrt | cuda | cpu (comma list)
        p("precision", "fp32")  # fp32 | fp16 | int8
        p("cache_dir", "")  # TensorRT engines; empty = ~/.cache/hsnn/engines
        p("force_rebuild", False)
        p("input_name", "")  # empty = the bundle's ANN input name
        # Energy when nothing can be measured here: a device profile of
        # hsnn_perception.core.energy.profiles (e.g. jetson-orin-nano) to model from MACs, or empty
        # to report "unavailable".
        p("energy_model_device", DEFAULT_ANN_DEVICE)
        # Made at configure, released at cleanup: the model and its backend, the publishers, the
        # parameters the callbacks use (read and checked once).
        self.bundle: ModelBundle | None = None
        self.input_name = ""
        self.macs = 0  # per inference
        self._backend: Classifier | None = None
        self._stage: ClassifierStage | None = None  # the inference, timed and metered
        self._energy_model_device = DEFAULT_ANN_DEVICE
        self._pub: LifecyclePublisher | None = None
        self._energy_pub: LifecyclePublisher | None = None
        self._gaps = SequenceGaps()  # window ids of tensors that never arrived

    @guarded_transition
    def on_configure(self, state: State) -> TransitionCallbackReturn:
        kind = str(self.param("backend"))
        if kind not in CLASSIFIER_BACKENDS:
            self.reject("parameter", f"backend {kind!r} unknown; expected {CLASSIFIER_BACKENDS}")
            return TransitionCallbackReturn.FAILURE
        try:
            self._energy_model_device = self.checked(
                "energy_model_device",
                lambda v: v == "" or v in ANN_DEVICE_PROFILES,
                f"empty (no model) or one of {sorted(ANN_DEVICE_PROFILES)}",
            )
        except ConfigurationError as exc:
            self.reject("parameter", str(exc))
            return TransitionCallbackReturn.FAILURE
        try:
            self.bundle = ModelBundle.load(str(self.param("model")) or str(default_bundle_path()))
            self.input_name = str(self.param("input_name")) or self.bundle.ann_input_name
            started = time.monotonic()
            if self.bundle.ann_file is None:
                self._backend = SpikeCountReadout(self.bundle.num_classes)
                self.macs = 0
            else:
                from hsnn_perception.core.ann.backends import (
                    check_bundle_ann,
                    create_backend,
                )
                from hsnn_perception.core.ann.macs import count_macs

                check_bundle_ann(self.bundle, self.input_name)

                self._backend = create_backend(
                    kind,
                    self.bundle.ann_file,
                    providers=str(self.param("providers")),
                    precision=str(self.param("precision")),
                    cache_dir=str(self.param("cache_dir")) or None,
                    force_rebuild=bool(self.param("force_rebuild")),
                    logger=lambda m: self.get_logger().info(str(m)),
                )
                self.macs = count_macs(self.bundle.ann_file, self.bundle.ann_input_shape)
            self.get_logger().info(
                f"classifier {self._backend.name} on {self._backend.device} ready in "
                f"{time.monotonic() - started:.2f} s ({self.macs} MACs per inference)"
            )
        # A missing or corrupt model, no GPU for tensorrt (BackendUnavailableError is a
        # ClassifierError), an input name the model lacks: stay up and say why.
        except (ModelError, ClassifierError, ConfigurationError, ValueError, OSError) as exc:
            self.reject("model", f"cannot load the classifier: {exc}")
            return TransitionCallbackReturn.FAILURE
        self._stage = ClassifierStage(
            self._backend,
            self.bundle.num_classes,
            macs=self.macs,
            meter=meter_for(str(self._backend.device)),
            model_device=self._energy_model_device,
        )
        self._pub = self.managed_publisher(
            Classification, CLASSIFICATION, reliable_qos(50), hold=True
        )
        self._energy_pub = self.energy_publisher()
        return TransitionCallbackReturn.SUCCESS

    @guarded_transition
    def on_activate(self, state: State) -> TransitionCallbackReturn:
        # Raw: the input is read straight from the bytes DDS delivers (conversions.py).
        self.active_subscription(TensorList, TENSORS, self._on_tensors, reliable_qos(20), raw=True)
        return super().on_activate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self._close_backend()
        return super().on_cleanup(state)

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        self._close_backend()
        return TransitionCallbackReturn.SUCCESS

    def _close_backend(self) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend = None
        self._stage = None

    def _on_tensors(self, msg: bytes) -> None:
        self.count("received.tensors")
        window = self.take_window(msg, self._gaps)
        if window is None:
            return
        window_id, start_us, frame_id, arrays = window
        try:
            x = arrays.get(self.input_name)
            if x is None:
                raise MessageFieldError(
                    "tensor", f"no tensor named {self.input_name!r} (got {sorted(arrays)[:8]})"
                )
            expected = self.bundle.ann_input_shape
            if x.shape != expected:
                raise MessageFieldError(
                    "tensor", f"tensor {self.input_name!r} of shape {x.shape}, expected {expected}"
                )
            if x.dtype.kind not in "biuf":
                raise MessageFieldError("tensor", f"tensor {self.input_name!r} of dtype {x.dtype}")
            x = x.astype(np.float32, copy=False)
            if not np.isfinite(x).all():
                raise MessageFieldError(
                    "tensor", f"tensor {self.input_name!r} holds NaN or infinite values"
                )
        except MessageFieldError as exc:
            self.reject(exc.reason, f"window {window_id}: {exc}")
            return
        self.trace("ready", start_us)
        try:
            result = self._stage.run(x)
        # What a backend says about an inference it cannot run (the runtimes' own errors are
        # wrapped in BackendError) and logits that are not scores (InvalidLogitsError); anything
        # else is a bug, counted as internal.
        except (ClassifierError, ValueError) as exc:
            self.reject("inference", f"window {window_id}: {exc}")
            return
        self.trace("out", start_us)
        scores = result.value
        class_id = int(np.argmax(scores))
        # Serialized here, not built as a message (conversions.classification_bytes).
        self._pub.publish(
            classification_bytes(
                window_id,
                start_us,
                self.bundle.window_us,
                frame_id,
                self.bundle.labels[class_id],
                class_id,
                scores,
            )
        )
        self.trace("pub", start_us)
        self.count("published.classifications")
        self.publish_energy(
            self._energy_pub, result.figure, window_id, start_us, host_latency_s=result.latency_s
        )

    def diagnostic_values(self) -> dict[str, str]:
        # Window ids that never arrived on tensors (lost in DDS, or dropped upstream).
        return self._gaps.diagnostics("windows", "window_id")


def main(args: list[str] | None = None) -> int:
    return run_node(ClassifierNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
