"""The extension points and their implementations, by name: the one place every name list is
read from (node parameters, launch arguments, command-line choices, error messages).

An entry names its implementation as ``"module:attribute"`` and that module is imported only
when the entry is loaded, so listing the names (graph.py, which launch files import, and the
argument parsers) imports nothing but this module, and loading one implementation imports only
its own packages (a classifier on onnxruntime never imports tensorrt or torch). The registries
own these lazy imports, so no factory module imports its implementations back (no import
cycles). Adding an implementation is one module plus one line here (docs/architecture.md).

No rclpy, no numpy: the standard library only.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hsnn_perception.core.errors import ConfigurationError


class UnknownNameError(ConfigurationError, ValueError):
    """A name no registry entry (or alias) has."""


@dataclass(frozen=True)
class Entry:
    """One implementation: ``target`` is ``"package.module:attribute"``, called (or used) with
    ``options`` as keyword arguments; ``in_pipeline`` says the ROS nodes offer it too (variants
    kept for benchmarks and the command-line tools are not)."""

    name: str
    target: str
    summary: str
    options: Mapping[str, Any] = field(default_factory=dict)
    in_pipeline: bool = True

    def load(self) -> Any:
        """The implementation's attribute, its module imported now (first use only)."""
        module, _, attribute = self.target.partition(":")
        return getattr(importlib.import_module(module), attribute)


class Registry:
    """Named entries of one extension point (``what`` names it in messages), plus aliases."""

    def __init__(
        self, what: str, entries: Iterable[Entry], aliases: Mapping[str, str] | None = None
    ) -> None:
        self.what = what
        self._entries = {e.name: e for e in entries}
        self._aliases = dict(aliases or {})
        missing = set(self._aliases.values()) - set(self._entries)
        if missing:
            raise ValueError(f"{what} aliases of no entry: {sorted(missing)}")

    def names(self, *, pipeline: bool = False, aliases: bool = False) -> tuple[str, ...]:
        """Entry names in registration order (``pipeline``: only those the nodes offer;
        ``aliases``: with the aliases after them)."""
        names = tuple(n for n, e in self._entries.items() if e.in_pipeline or not pipeline)
        if aliases:
            names += tuple(a for a, n in self._aliases.items() if n in names)
        return names

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self._aliases

    def unknown(self, name: object, *, pipeline: bool = False) -> str:
        """The message for a name that is not registered."""
        names = ", ".join(self.names(pipeline=pipeline))
        return f"unknown {self.what} {name!r}; expected one of {names}"

    def entry(self, name: str) -> Entry:
        """The entry called ``name`` (or aliased so); :class:`UnknownNameError` if none is."""
        entry = self._entries.get(self._aliases.get(name, name))
        if entry is None:
            raise UnknownNameError(self.unknown(name))
        return entry


# SNN backends: a loader ``(path, *, input_shape, engine, energy_probe, **options)`` returning an
# ``snn.api.SnnBackend``; used by ``snn.api.load_snn``.
SNN_BACKENDS = Registry(
    "SNN backend",
    [
        Entry(
            "native",
            "hsnn_perception.core.snn.runtime:open_native",
            "this project's runtime, Loihi fixed-point arithmetic, event-driven (numba), no torch",
            {"compute": "auto"},
        ),
        Entry(
            "native-numpy",
            "hsnn_perception.core.snn.runtime:open_native",
            "the native runtime's whole-window dense path, numpy convolutions",
            {"compute": "numpy", "synapses": "dense"},
            in_pipeline=False,
        ),
        Entry(
            "native-torch",
            "hsnn_perception.core.snn.runtime:open_native",
            "the native runtime's whole-window dense path, torch convolutions",
            {"compute": "torch", "synapses": "dense"},
            in_pipeline=False,
        ),
        Entry(
            "lava",
            "hsnn_perception.core.snn.lava:open_lava",
            "Lava's CPU simulation, Loihi2SimCfg(select_tag='fixed_pt')",
            {"hardware": False},
        ),
        Entry(
            "lava-hw",
            "hsnn_perception.core.snn.lava:open_lava",
            "Loihi 2 through Intel's lava-loihi extension",
            {"hardware": True},
        ),
    ],
    aliases={"lava-sim": "lava", "loihi2-hw": "lava-hw"},
)

# Classifier backends: a class (or factory) ``(model_path, *, providers, precision, cache_dir,
# force_rebuild, calibration_data, logger, **options)`` returning a
# ``ann.backends.ClassifierBackend``; used by ``ann.backends.create_backend``.
CLASSIFIER_BACKENDS = Registry(
    "classifier backend kind",
    [
        Entry(
            "onnxruntime",
            "hsnn_perception.core.ann.onnxruntime:OnnxRuntimeBackend",
            "ONNX Runtime on its best execution provider (TensorRT EP, CUDA EP, CPU)",
        ),
        Entry(
            "tensorrt",
            "hsnn_perception.core.ann.tensorrt:TensorRTBackend",
            "a TensorRT engine built (or loaded from the cache) for this GPU",
        ),
    ],
)

# Event encodings of event_camera_msgs/EventPacket payloads: an ``events.EventCodec``; used by
# ``events.codec_for`` (encode_packet, decode_packet and the stream decoder).
EVENT_CODECS = Registry(
    "encoding",
    [
        Entry("mono", "hsnn_perception.core.events.mono:MONO", "64-bit words, ns offsets"),
        Entry("evt3", "hsnn_perception.core.events.evt3:EVT3", "Prophesee EVT 3.0, 16-bit words"),
        Entry("libcaer", "hsnn_perception.core.events.libcaer:LIBCAER", "libcaer polarity events"),
        Entry(
            "libcaer_cmp",
            "hsnn_perception.core.events.libcaer_cmp:LIBCAER_CMP",
            "libcaer_driver's default",
        ),
    ],
)

# Power meters by the kind of device a stage runs on ("cuda" for every "cuda:N"): a factory
# ``() -> meters.PowerMeter | None`` (None: nothing measures that device on this machine); used
# by ``meters.meter_for``, which falls back to "cpu" (the host) for kinds not listed here.
POWER_METERS = Registry(
    "power meter device",
    [
        Entry("cuda", "hsnn_perception.core.energy.meters:gpu_meter", "NVML board power of GPU 0"),
        Entry(
            "cpu",
            "hsnn_perception.core.energy.meters:host_meter",
            "the Jetson module's input rail, else Intel RAPL package energy",
        ),
    ],
)


# The pipeline's nodes in data-flow order: stage name (the `stages` launch argument, energy
# reports, evaluation records) -> the node class, and in options its default node name and its
# executable (`ros2 run hsnn_perception <executable>`). Loading an entry imports rclpy: only the
# composed runner does. graph.py builds every NodeSpec from these.
STAGES = Registry(
    "stage",
    [
        Entry(
            "driver",
            "hsnn_perception.nodes.event_driver:EventDriverNode",
            "event-camera driver: files, cameras, bags, synthetic -> event packets",
            {"node": "event_driver", "executable": "event_driver"},
        ),
        Entry(
            "snn",
            "hsnn_perception.nodes.snn_node:SnnFeatureNode",
            "the spiking layers: event packets -> output spikes per window",
            {"node": "snn_feature", "executable": "snn_node"},
        ),
        Entry(
            "bridge",
            "hsnn_bridge.accumulator_node:AccumulatorBridgeNode",
            "the accumulator circuit: spikes summed over I bins -> the ANN's input tensor",
            {"node": "accumulator_bridge", "executable": "accumulator_bridge"},
        ),
        Entry(
            "classifier",
            "hsnn_perception.nodes.classifier_node:ClassifierNode",
            "the non-spiking layers: tensors -> classifications",
            {"node": "classifier", "executable": "classifier_node"},
        ),
        Entry(
            "energy",
            "hsnn_perception.nodes.energy_aggregator:EnergyAggregatorNode",
            "per-window energy totals over the stages' reports",
            {"node": "energy_aggregator", "executable": "energy_aggregator"},
        ),
    ],
)
# The stages that report energy per window, in the order reports and tables list them.
ENERGY_STAGES = ("driver", "snn", "bridge", "classifier")
# The node that brings the others up (not a stage: it carries no data).
LIFECYCLE_MANAGER = Entry(
    "lifecycle_manager",
    "hsnn_perception.nodes.lifecycle_manager:LifecycleManagerNode",
    "configures every node, then activates them consumers first, the driver last",
    {"node": "lifecycle_manager", "executable": "lifecycle_manager"},
)


def node_name(stage: str) -> str:
    """The default node name of ``stage`` (``"snn"`` -> ``"snn_feature"``)."""
    return str(STAGES.entry(stage).options["node"])


# What the nodes publish on /diagnostics (one DiagnosticStatus "hsnn/<node>" each, key/values),
# and what each key counts. A key is listed whole, or as "<family>.*" for a family with details
# (errors.<reason>); "<stage>." stands for any stage of STAGES. Tools (DDS replay, the monitor)
# read these keys; test/nodes/test_diagnostics_keys.py checks that every key a node writes and
# every key a tool reads is listed here.
DIAGNOSTICS_KEYS: Mapping[str, str] = {
    "lifecycle_state": "the node's lifecycle state (unconfigured, inactive, active, ...)",
    "uptime_s": "seconds since the node started",
    "received.*": "inputs taken in: packets and events (SNN node), windows (bridge), tensors "
    "(classifier), reports (aggregator); each also as <key>.rate_hz",
    "published.*": "outputs sent: packets, events, labels, energy_reports (driver), windows, "
    "debug_images (SNN node), tensors (bridge), classifications (classifier), totals "
    "(aggregator); each also as <key>.rate_hz",
    "errors": "bad inputs rejected, all reasons together (also in the status message)",
    "errors.*": "bad inputs rejected by reason: parameter, model, packet, packet_size, tensor, "
    "spikes, inference, overload, geometry, ... (the reason names what was wrong)",
    "suppressed_logs.*": "rejections of a reason counted but not logged (log rate limit)",
    "dropped.*": "data given up: windows (the SNN thread was behind), windows_at_stop, "
    "events.<why> (events a decoder could not place), driver_only_windows (aggregator)",
    "lost.*": "messages that never arrived, from sequence or window-id gaps: packets (SNN "
    "node), windows (bridge, classifier), windows.<stage> (aggregator)",
    "seq_restarts": "event packet sequences that started again (a driver restart)",
    "seq_jumps": "event packet sequence numbers that jumped back or far ahead",
    "window_id_restarts": "window-id sequences that started again",
    "window_id_jumps": "window ids that jumped back or far ahead",
    "flushed.*": "windows the SNN node ended because the stream went idle",
    "flow.*": "the driver's flow control: waits, stalls, lost_windows, pending_windows",
    "expired.*": "aggregator windows given up before every stage reported (pending_overflow)",
    "saturated.*": "figures too large for their message field (op_counts)",
    "evt3_state_resets": "EVT3 decoder states reset (a lost packet, a geometry change)",
    "windows_emitted": "windows the SNN node's windower completed",
    "late_events": "events older than the window being filled (dropped)",
    "out_of_range_events": "events outside the windower's time range (dropped)",
    "held_packets": "packets held back until the window they belong to opens",
    "reorigins": "times the windower moved its origin (a jump in sensor time)",
    "skipped_windows": "silent windows skipped over in a long gap",
    "source_status": "the driver's source: ok, or why it is not (absent camera, ...)",
    "source_finished": "whether a recorded source has played to its end",
    "seq": "the driver's last packet sequence number",
    "pace": "the driver's playback pace against sensor time (1: keeps up; less: falls behind)",
    "late_max_ms": "the driver's worst lateness of a packet against its due time",
    "pending_windows": "aggregator windows waiting for reports",
    "end_to_end_latency_ms": "aggregator: last window's close to its last stage report",
    "<stage>.reports": "aggregator: energy reports of a stage",
    "<stage>.missing_windows": "aggregator: windows totalled without that stage's report",
    "<stage>.mean_latency_ms": "aggregator: the stage's mean reported latency",
}


def diagnostics_key_known(key: str) -> bool:
    """Whether ``key`` is listed in DIAGNOSTICS_KEYS (a ``.rate_hz`` twin included)."""
    key = key.removesuffix(".rate_hz")
    if key in DIAGNOSTICS_KEYS:
        return True
    head, _, rest = key.partition(".")
    if rest and f"{head}.*" in DIAGNOSTICS_KEYS:
        return True
    return bool(rest) and head in STAGES and f"<stage>.{rest}" in DIAGNOSTICS_KEYS
