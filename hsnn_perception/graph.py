"""The pipeline graph, described once: nodes, executables, topics, parameters.

The launch files, the single-process composed runner (hsnn_perception.runner), the multi-process
launcher used by the demo and the tests (hsnn_perception.launcher) all build the pipeline from
:func:`pipeline`. No rclpy here, so it can be imported by launch files and plain tools.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

PACKAGE = "hsnn_perception"

# Topic names, relative so that a namespace applies; every one is remappable.
EVENTS = "events"
LABELS = "labels"
SPIKES = "snn/spikes"
TENSORS = "tensors"
CLASSIFICATION = "classification"
ENERGY = "energy"
ENERGY_TOTAL = "energy/total"
DIAGNOSTICS = "/diagnostics"
CLOCK = "/clock"

SOURCES = ("synthetic", "aedat4", "camera", "network", "rosbag")
RECORDED_SOURCES = ("synthetic", "aedat4", "rosbag")  # paced by the driver, may be held back
SNN_BACKENDS = ("native", "lava", "lava-hw")
CLASSIFIER_BACKENDS = ("onnxruntime", "tensorrt")


@dataclass(frozen=True)
class NodeSpec:
    """One node of the pipeline: how to start it and with what."""

    name: str
    executable: str  # `ros2 run hsnn_perception <executable>`
    module: str  # python -m <module> runs the same node
    node_class: str  # "<module>:<Class>" for the composed runner
    parameters: dict[str, Any] = field(default_factory=dict)
    remappings: tuple[tuple[str, str], ...] = ()
    package: str = PACKAGE

    def with_parameters(self, **overrides: Any) -> NodeSpec:
        return replace(self, parameters={**self.parameters, **overrides})


def pipeline(
    *,
    model: str = "",
    source: str = "synthetic",
    interval: int = 0,
    snn_backend: str = "native",
    classifier_backend: str = "onnxruntime",
    use_sim_time: bool = False,
    autostart: bool = True,
    num_samples: int = 0,
    seed: int = 0,
    speed: float = 1.0,
    source_path: str = "",
    overrides: dict[str, dict[str, Any]] | None = None,
    remappings: dict[str, tuple[tuple[str, str], ...]] | None = None,
) -> list[NodeSpec]:
    """The four stages and the energy aggregator with their parameters.

    ``model`` empty means the shipped default bundle; ``interval`` 0 means the bundle's own.
    ``overrides`` maps a node name to extra parameters; ``remappings`` a node name to remaps.
    """
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; expected one of {', '.join(SOURCES)}")
    if snn_backend not in SNN_BACKENDS:
        raise ValueError(f"unknown snn backend {snn_backend!r}; expected one of {SNN_BACKENDS}")
    if classifier_backend not in CLASSIFIER_BACKENDS:
        raise ValueError(
            f"unknown classifier backend {classifier_backend!r}; expected one of "
            f"{CLASSIFIER_BACKENDS}"
        )
    common = {"use_sim_time": use_sim_time, "autostart": autostart}
    window_us = model_window_us(model)
    # A recorded source played as fast as possible is played as fast as the pipeline keeps up:
    # the driver's flow control holds it back and the events travel reliably, so nothing is lost
    # (a live camera or stream never waits, whatever `speed` says).
    lossless = float(speed) == 0 and source in RECORDED_SOURCES and window_us > 0
    events_qos = "reliable" if lossless else "sensor"
    # With the window length known, the driver reports its own work per window too.
    stages = (
        ["driver", "snn", "bridge", "classifier"] if window_us else ["snn", "bridge", "classifier"]
    )
    nodes = [
        NodeSpec(
            name="event_driver",
            executable="event_driver",
            module="hsnn_perception.nodes.event_driver",
            node_class="hsnn_perception.nodes.event_driver:EventDriverNode",
            parameters={
                **common,
                "source": source,
                "path": source_path,
                "seed": int(seed),
                "num_samples": int(num_samples),
                "speed": float(speed),
                "window_us": window_us,
                "flow_control": lossless,
                "events_qos": events_qos,
            },
        ),
        NodeSpec(
            name="snn_feature",
            executable="snn_node",
            module="hsnn_perception.nodes.snn_node",
            node_class="hsnn_perception.nodes.snn_node:SnnFeatureNode",
            parameters={
                **common,
                "model": model,
                "backend": snn_backend,
                "events_qos": events_qos,
            },
        ),
        NodeSpec(
            name="accumulator_bridge",
            executable="accumulator_bridge",
            module="hsnn_bridge.accumulator_node",
            node_class="hsnn_bridge.accumulator_node:AccumulatorBridgeNode",
            parameters={**common, "model": model, "interval": int(interval)},
        ),
        NodeSpec(
            name="classifier",
            executable="classifier_node",
            module="hsnn_perception.nodes.classifier_node",
            node_class="hsnn_perception.nodes.classifier_node:ClassifierNode",
            parameters={**common, "model": model, "backend": classifier_backend},
        ),
        NodeSpec(
            name="energy_aggregator",
            executable="energy_aggregator",
            module="hsnn_perception.nodes.energy_aggregator",
            node_class="hsnn_perception.nodes.energy_aggregator:EnergyAggregatorNode",
            parameters={**common, "stages": stages},
        ),
    ]
    overrides = overrides or {}
    remappings = remappings or {}
    unknown = (set(overrides) | set(remappings)) - {n.name for n in nodes}
    if unknown:
        raise ValueError(f"overrides name unknown nodes: {sorted(unknown)}")
    return [
        replace(
            n.with_parameters(**overrides.get(n.name, {})),
            remappings=tuple(remappings.get(n.name, ())),
        )
        for n in nodes
    ]


def model_window_us(model: str = "") -> int:
    """Sensor time per window of bundle ``model`` (empty: the shipped default), or 0 if it cannot
    be read (the nodes that load it then say why)."""
    from hsnn_perception.core.bundle import BundleError, ModelBundle, default_bundle_path

    try:
        return int(ModelBundle.load(model or default_bundle_path()).window_us)
    except (BundleError, OSError):
        return 0


def specs_to_json(specs: list[NodeSpec] | tuple[NodeSpec, ...]) -> str:
    return json.dumps([asdict(s) for s in specs], indent=1)


def specs_from_json(text: str) -> list[NodeSpec]:
    docs = json.loads(text)
    return [
        NodeSpec(**{**d, "remappings": tuple(tuple(r) for r in d.get("remappings", ()))})
        for d in docs
    ]


def qualified_name(namespace: str, name: str) -> str:
    """``/namespace/name`` for a relative topic or node name; absolute names are kept."""
    if name.startswith("/"):
        return name
    ns = namespace.strip("/")
    return f"/{ns}/{name}" if ns else f"/{name}"


# Launch arguments of launch/pipeline.launch.py: name -> (default, description). The launch file
# declares exactly these and hands their values to pipeline_from_arguments().
LAUNCH_ARGUMENTS: dict[str, tuple[str, str]] = {
    "model": ("", "model bundle directory (empty: the shipped default model)"),
    "source": ("synthetic", "event source: " + " | ".join(SOURCES)),
    "source_path": ("", "AEDAT4 file (source aedat4) or rosbag2 bag (source rosbag)"),
    "interval": ("0", "accumulation interval I in timesteps (0: the model's)"),
    "snn_backend": ("native", "SNN backend: " + " | ".join(SNN_BACKENDS)),
    "classifier_backend": ("onnxruntime", "classifier backend: " + " | ".join(CLASSIFIER_BACKENDS)),
    "num_samples": ("0", "synthetic source: gestures to play (0: endless)"),
    "speed": ("1.0", "playback speed of synthetic/file sources (1: real time, 0: max)"),
    "seed": ("0", "synthetic source seed"),
    "namespace": ("", "namespace of every node and topic"),
    "use_sim_time": ("false", "use /clock (e.g. from rosbag play or the driver's publish_clock)"),
    "autostart": (
        "true",
        "nodes configure and activate themselves (false: a lifecycle manager does)",
    ),
    "composed": ("false", "run all nodes in one process (one executor)"),
    "params_file": ("", "YAML parameters file applied to the nodes on top of the arguments"),
}


def parse_bool(name: str, text: str) -> bool:
    lowered = str(text).strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off", ""):
        return False
    raise ValueError(f"launch argument {name}:={text!r} is not a boolean")


def pipeline_from_arguments(arguments: dict[str, str]) -> list[NodeSpec]:
    """The node specs for launch-argument strings (as ``ros2 launch`` hands them over)."""
    unknown = set(arguments) - set(LAUNCH_ARGUMENTS)
    if unknown:
        raise ValueError(f"unknown launch arguments: {sorted(unknown)}")
    args = {k: arguments.get(k, default) for k, (default, _) in LAUNCH_ARGUMENTS.items()}

    def number(name: str, kind: type) -> Any:
        try:
            return kind(args[name])
        except ValueError:
            raise ValueError(
                f"launch argument {name}:={args[name]!r} is not a {kind.__name__}"
            ) from None

    return pipeline(
        model=args["model"],
        source=args["source"],
        source_path=args["source_path"],
        interval=number("interval", int),
        snn_backend=args["snn_backend"],
        classifier_backend=args["classifier_backend"],
        num_samples=number("num_samples", int),
        speed=number("speed", float),
        seed=number("seed", int),
        use_sim_time=parse_bool("use_sim_time", args["use_sim_time"]),
        autostart=parse_bool("autostart", args["autostart"]),
    )
