"""Accumulator bridge node: sums SNN output spikes over intervals of I timesteps and publishes the
ANN's input tensor (the paper's accumulator circuit between Loihi and the edge-AI device)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from rclpy.lifecycle import LifecyclePublisher, State, TransitionCallbackReturn

from hsnn_perception.core.energy.meters import cpu_meter
from hsnn_perception.core.energy.profiles import FP32_ADD_J
from hsnn_perception.core.errors import ConfigurationError, ModelError
from hsnn_perception.core.events.stream import SequenceGaps
from hsnn_perception.core.hybrid.accumulator import check_interval
from hsnn_perception.core.hybrid.bundle import ModelBundle, default_bundle_path
from hsnn_perception.core.hybrid.pipeline import BridgeStage
from hsnn_perception.core.io.spike_codec import SpikeCodecError, decode_spikes
from hsnn_perception.core.registry import node_name
from hsnn_perception.graph import SPIKES, SPIKES_TENSOR, TENSORS
from hsnn_perception.msg import TensorList
from hsnn_perception.nodes.base import HsnnNode, guarded_transition, reliable_qos, run_node
from hsnn_perception.nodes.conversions import (
    MessageFieldError,
    tensor_list_bytes,
)

# Spike counts per neuron and step above this are not spikes (a graded spike is at most a few
# bits): the bound also keeps every sum of a window far inside int64 and float32's exact range.
MAX_SPIKE_COUNT = 1 << 16


def check_spikes(spikes: np.ndarray) -> np.ndarray:
    """``spikes`` if it holds spike counts: a bool, integer or float array of finite values in
    [0, MAX_SPIKE_COUNT]; MessageFieldError (reason ``spikes``) names what is wrong."""
    if spikes.dtype.kind not in "biuf":
        raise MessageFieldError("spikes", f"spikes of dtype {spikes.dtype}")
    # bool, uint8 and uint16 cannot leave the range (the SNN node sends uint8): no pass over the
    # data, which costs more than the rest of the bridge's checks together.
    if (
        spikes.size == 0
        or spikes.dtype.kind == "b"
        or (spikes.dtype.kind == "u" and np.iinfo(spikes.dtype).max <= MAX_SPIKE_COUNT)
    ):
        return spikes
    if spikes.dtype.kind == "f" and not np.isfinite(spikes).all():
        raise MessageFieldError("spikes", "spikes hold NaN or infinite values")
    low, high = spikes.min(), spikes.max()
    if low < 0 or high > MAX_SPIKE_COUNT:
        raise MessageFieldError(
            "spikes", f"spike counts from {low} to {high}, outside [0, {MAX_SPIKE_COUNT}]"
        )
    return spikes


class AccumulatorBridgeNode(HsnnNode):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(node_name("bridge"), **kwargs)
        p = self.declare
        p("model", "")  # bundle: gives T, the feature shape and the ANN input name
        p("interval", 0)  # I; 0 = the bundle's
        p("output_name", "")  # tensor name; empty = the ANN's input name in the bundle
        # Energy of the accumulator on the host CPU: measured by RAPL when readable, otherwise
        # modelled as additions x this many joules (default: a published fp32 add; 0: unavailable).
        p("energy_per_add_j", FP32_ADD_J)
        # Made at configure, released at cleanup: the model, the meter, the publishers, the
        # parameters the callbacks use (read and checked once).
        self.bundle: ModelBundle | None = None
        self.interval = 0  # timesteps summed into one frame
        self.output_name = ""
        self._stage: BridgeStage | None = None  # the accumulation, timed and metered
        self._pub: LifecyclePublisher | None = None
        self._energy_pub: LifecyclePublisher | None = None
        self._gaps = SequenceGaps()  # window ids of snn/spikes that never arrived

    @guarded_transition
    def on_configure(self, state: State) -> TransitionCallbackReturn:
        try:
            self.bundle = ModelBundle.load(str(self.param("model")) or str(default_bundle_path()))
            interval = int(self.param("interval")) or self.bundle.interval
            check_interval(self.bundle.timesteps, interval)
            energy_per_add_j = self.checked(
                "energy_per_add_j", lambda v: 0 <= v < math.inf, "finite, >= 0 (0: unavailable)"
            )
        # A missing or inconsistent model (BundleError, AccumulatorError), a bad parameter.
        except (ModelError, ConfigurationError, ValueError) as exc:
            self.reject("parameter", f"cannot configure: {exc}")
            return TransitionCallbackReturn.FAILURE
        if interval != self.bundle.interval:
            self.get_logger().warn(
                f"interval {interval} differs from the {self.bundle.interval} the model was "
                "trained with; the ANN's input shape will not match"
            )
        self.interval = interval
        self.output_name = str(self.param("output_name")) or self.bundle.ann_input_name
        self._stage = BridgeStage(interval, cpu_meter(), energy_per_add_j)
        self._pub = self.managed_publisher(TensorList, TENSORS, reliable_qos(20), hold=True)
        self._energy_pub = self.energy_publisher()
        self.get_logger().info(
            f"accumulating {self.bundle.timesteps} steps in intervals of {interval} -> "
            f"{self.bundle.timesteps // interval} frames as {self.output_name!r}"
        )
        return TransitionCallbackReturn.SUCCESS

    @guarded_transition
    def on_activate(self, state: State) -> TransitionCallbackReturn:
        # Raw: the spikes are read straight from the bytes DDS delivers (conversions.py).
        self.active_subscription(TensorList, SPIKES, self._on_spikes, reliable_qos(20), raw=True)
        return super().on_activate(state)

    def _on_spikes(self, msg: bytes) -> None:
        self.count("received.windows")
        window = self.take_window(msg, self._gaps)
        if window is None:
            return
        window_id, start_us, frame_id, arrays = window
        try:
            expected = (self.bundle.timesteps, *self.bundle.feature_shape)
            try:  # dense or sparse (core/io/spike_codec.py), whichever the SNN node sent
                spikes = decode_spikes(arrays, SPIKES_TENSOR, max_size=math.prod(expected))
            except SpikeCodecError as exc:
                raise MessageFieldError("tensor", f"{exc} (got {sorted(arrays)[:8]})") from None
            if spikes.shape != expected:
                raise MessageFieldError(
                    "tensor", f"spikes of shape {spikes.shape}, expected {expected}"
                )
            spikes = check_spikes(spikes)
        except MessageFieldError as exc:
            self.reject(exc.reason, f"window {window_id}: {exc}")
            return
        self.trace("ready", start_us)
        out = self._stage.run(spikes)
        self.trace("out", start_us)
        tensors = {self.output_name: out.value}
        self._pub.publish(tensor_list_bytes(window_id, start_us, frame_id, tensors))
        self.trace("pub", start_us)
        self.count("published.tensors")
        self.publish_energy(
            self._energy_pub, out.figure, window_id, start_us, host_latency_s=out.latency_s
        )

    def diagnostic_values(self) -> dict[str, str]:
        # Window ids that never arrived on snn/spikes (lost in DDS, or dropped by the SNN node).
        return self._gaps.diagnostics("windows", "window_id")


def main(args: list[str] | None = None) -> int:
    return run_node(AccumulatorBridgeNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
