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
