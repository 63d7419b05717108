"""The pipeline graph, described once: nodes, executables, topics, parameters.

The launch files, the single-process composed runner (hsnn_perception.runner), the multi-process
launcher used by the demo and the tests (hsnn_perception.launcher) all build the pipeline from
:func:`pipeline`. No rclpy here, so it can be imported by launch files and plain tools.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from hsnn_perception.core import registry

PACKAGE = "hsnn_perception"

# Topic names, relative so that a namespace applies; every one is remappable.
EVENTS = "events"
LABELS = "labels"
SPIKES = "snn/spikes"
SPIKES_TENSOR = "spikes"  # the tensor (dense, or its sparse parts) in each snn/spikes message
TENSORS = "tensors"
CLASSIFICATION = "classification"
ENERGY = "energy"
ENERGY_TOTAL = "energy/total"
DIAGNOSTICS = "/diagnostics"
CLOCK = "/clock"

SOURCES = ("synthetic", "aedat4", "camera", "network", "rosbag")
# Stage name -> node name (core/registry.py STAGES); `stages` selects a subset (e.g. one host of
# a two-host deployment).
STAGE_NODES = {stage: registry.node_name(stage) for stage in registry.STAGES.names()}
# What each stage publishes for the next one: where a stage runs here and its consumer does not
# (another host), a recorded source waits for that topic's far subscriber before playing.
# (The driver's own output is covered by its wait for an events subscriber.)
STAGE_OUTPUTS = {"snn": (SPIKES, "bridge"), "bridge": (TENSORS, "classifier")}
LIFECYCLE_MANAGER = str(registry.LIFECYCLE_MANAGER.options["node"])
# Bring-up order: consumers first, the source last, so nothing is published into a graph that is
# not yet listening (nav2 lists its nodes the same way): the stages' data-flow order, reversed.
BRINGUP_ORDER = tuple(STAGE_NODES[s] for s in reversed(registry.STAGES.names()))
# How long a split pipeline's nodes hold what they publish for a reader on the other host that
# is not matched yet (nodes.base.HeldPublisher): DDS discovery across a link takes seconds.
SPLIT_HOLD_S = 10.0
RECORDED_SOURCES = ("synthetic", "aedat4", "rosbag")  # paced by the driver, may be held back
# The backends the nodes offer, from the registries (names only: no backend is imported here).
SNN_BACKENDS = registry.SNN_BACKENDS.names(pipeline=True)
CLASSIFIER_BACKENDS = registry.CLASSIFIER_BACKENDS.names(pipeline=True)


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
    stages: tuple[str, ...] | list[str] = tuple(STAGE_NODES),
    overrides: dict[str, dict[str, Any]] | None = None,
    remappings: dict[str, tuple[tuple[str, str], ...]] | None = None,
) -> list[NodeSpec]:
    """The four stages and the energy aggregator with their parameters, and the lifecycle
    manager that brings them up in order.

    ``model`` empty means the shipped default bundle; ``interval`` 0 means the bundle's own.
    ``stages`` selects the nodes to run (names of STAGE_NODES). With ``autostart`` the lifecycle
    manager configures and activates them, the driver last; without it nothing starts until an
    outside manager (e.g. nav2's lifecycle_manager) drives them. A recorded source waits for a
    subscriber on its events topic in any case; a live one never waits.
    ``overrides`` maps a node name to extra parameters; ``remappings`` a node name to remaps.
    """
    unknown_stages = set(stages) - set(STAGE_NODES)
    if unknown_stages or not stages:
        raise ValueError(
            f"unknown stages {sorted(unknown_stages)}; expected some of {', '.join(STAGE_NODES)}"
        )
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; expected one of {', '.join(SOURCES)}")
    if snn_backend not in SNN_BACKENDS:
        raise ValueError(f"unknown snn backend {snn_backend!r}; expected one of {SNN_BACKENDS}")
    if classifier_backend not in CLASSIFIER_BACKENDS:
        raise ValueError(
            f"unknown classifier backend {classifier_backend!r}; expected one of "
            f"{CLASSIFIER_BACKENDS}"
        )
    from hsnn_perception.core.hybrid.bundle import resolve_model

    model = resolve_model(model)
    # The nodes never start themselves here: the manager (or an outside one) brings them up.
    common: dict[str, Any] = {"use_sim_time": use_sim_time, "autostart": False}
    if set(stages) != set(STAGE_NODES):
        # Part of a pipeline split over hosts: a reader on the other host is discovered after
        # this half is up, so what the nodes publish before it matches is held, not lost.
        common["hold_unmatched_s"] = SPLIT_HOLD_S
    window_us = model_window_us(model)
    # A recorded source played as fast as possible is played as fast as the pipeline keeps up:
    # the driver's flow control holds it back and the events travel reliably, so nothing is lost
    # (a live camera or stream never waits, whatever `speed` says).
    lossless = float(speed) == 0 and source in RECORDED_SOURCES and window_us > 0
    events_qos = "reliable" if lossless else "sensor"
    # With the window length known, the driver reports its own work per window too.
    reporting = [s for s in registry.ENERGY_STAGES if window_us or s != "driver"]
    nodes = [
        _stage_spec(
            "driver",
            {
                **common,
                "source": source,
                "path": source_path,
                "seed": int(seed),
                "num_samples": int(num_samples),
                "speed": float(speed),
                "window_us": window_us,
                "flow_control": lossless,
                "events_qos": events_qos,
                # A recording must not play into a graph that is not listening yet, here or
                # on the host the pipeline continues on.
                "wait_for_subscribers": 1 if source in RECORDED_SOURCES else 0,
                "wait_for_topics": [
                    topic
                    for stage, (topic, consumer) in STAGE_OUTPUTS.items()
                    if source in RECORDED_SOURCES and stage in stages and consumer not in stages
                ]
                or [""],
            },
        ),
        _stage_spec(
            "snn",
            {
                **common,
                "model": model,
                "backend": snn_backend,
                "events_qos": events_qos,
            },
        ),
        _stage_spec(
            "bridge",
            {**common, "model": model, "interval": int(interval)},
        ),
        _stage_spec(
            "classifier",
            {**common, "model": model, "backend": classifier_backend},
        ),
        _stage_spec(
            "energy",
            {**common, "stages": reporting},
        ),
    ]
    selected = {STAGE_NODES[stage] for stage in stages}
    nodes = [n for n in nodes if n.name in selected]
    if autostart:
        managed = [name for name in BRINGUP_ORDER if name in selected]
        nodes.append(lifecycle_manager(managed, use_sim_time=use_sim_time))
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


def lifecycle_manager(node_names: list[str], use_sim_time: bool = False) -> NodeSpec:
    """The manager that configures, then activates, ``node_names`` in that order."""
    return _spec(
        registry.LIFECYCLE_MANAGER,
        {"node_names": list(node_names), "use_sim_time": use_sim_time},
    )


def _spec(entry: registry.Entry, parameters: dict[str, Any]) -> NodeSpec:
    return NodeSpec(
        name=str(entry.options["node"]),
        executable=str(entry.options["executable"]),
        module=entry.target.partition(":")[0],
        node_class=entry.target,
        parameters=parameters,
    )


def _stage_spec(stage: str, parameters: dict[str, Any]) -> NodeSpec:
    """The node of ``stage`` as core/registry.py STAGES describes it, with ``parameters``."""
    return _spec(registry.STAGES.entry(stage), parameters)


def unmanaged(specs: list[NodeSpec], name: str) -> list[NodeSpec]:
    """``specs`` with node ``name`` taken out of the lifecycle manager's hands (a tool that
    starts the source itself once its own listeners are connected)."""
    return [
        s.with_parameters(node_names=[n for n in s.parameters["node_names"] if n != name])
        if s.name == LIFECYCLE_MANAGER
        else s
        for s in specs
    ]


def _rcl_name_pattern(key: str) -> re.Pattern[str]:
    """A parameters-file node key as rcl matches it: absolute, ``/**`` any number of tokens,
    ``/*`` exactly one."""
    key = key if key.startswith("/") else "/" + key
    parts = re.split(r"(/\*\*|/\*)", key)
    regex = "".join(
        r"(/[^/]+)*" if p == "/**" else r"/[^/]+" if p == "/*" else re.escape(p) for p in parts
    )
    return re.compile(regex + "$")


@dataclass(frozen=True)
class ParametersFile:
    """A ROS 2 parameters file, read once, giving each node what rclcpp/rclpy would: every
    matching key in file order, nested names joined with dots. For the composed runner, whose
    nodes share one process (the launch file hands the file to the separate processes as
    ``--params-file``)."""

    path: str
    doc: dict[str, Any]

    @classmethod
    def read(cls, path: str) -> ParametersFile:
        import yaml

        try:
            with open(path) as f:
                doc = yaml.safe_load(f)
        except (OSError, yaml.YAMLError) as exc:
            raise ValueError(f"cannot read parameters file {path}: {exc}") from None
        if not isinstance(doc, dict):
            raise ValueError(f"parameters file {path} is not a mapping of node names")
        return cls(path, doc)

    def for_node(self, node_fqn: str) -> dict[str, Any]:
        """The parameters this file gives the node ``node_fqn`` (``/ns/name``)."""

        def flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
            if isinstance(value, dict):
                for k, v in value.items():
                    flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
            else:
                out[prefix] = value

        found: dict[str, Any] = {}
        for key, body in self.doc.items():
            if not _rcl_name_pattern(str(key)).match(node_fqn):
                continue
            params = body.get("ros__parameters") if isinstance(body, dict) else None
            if not isinstance(params, dict):
                raise ValueError(
                    f"parameters file {self.path}: {key!r} has no ros__parameters mapping"
                )
            flatten("", params, found)
        return found


def parameters_from_file(path: str, node_fqn: str) -> dict[str, Any]:
    """What the parameters file at ``path`` gives the node ``node_fqn`` (see ParametersFile)."""
    return ParametersFile.read(path).for_node(node_fqn)


def model_window_us(model: str = "") -> int:
    """Sensor time per window of bundle ``model`` (empty: the shipped default), or 0 if it cannot
    be read (the nodes that load it then say why)."""
    from hsnn_perception.core.hybrid.bundle import BundleError, ModelBundle, default_bundle_path

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
    "model": (
        "",
        "model bundle directory, or a shipped model's name: synthetic-128 (2x128x128) "
        "(empty: the shipped default, 2x32x32)",
    ),
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
        "the lifecycle manager brings the nodes up in order, driver last (false: an outside "
        "manager such as nav2's does)",
    ),
    "composed": ("false", "run all nodes in one process (one executor thread per node)"),
    "stages": (
        ",".join(STAGE_NODES),
        "comma-separated stages to run here (e.g. driver,snn on one host, the rest on another)",
    ),
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
        stages=[x.strip() for x in args["stages"].split(",") if x.strip()],
    )
