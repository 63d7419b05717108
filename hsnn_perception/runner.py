"""All pipeline nodes in one process (the composed form of the launch file).

``ros2 run hsnn_perception composed_pipeline --ros-args -p source:=synthetic`` or
``python -m hsnn_perception.runner``. Arguments mirror the launch file's.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence
from typing import Any

from hsnn_perception.graph import STAGE_NODES, NodeSpec, ParametersFile, pipeline, qualified_name


def build_nodes(
    specs: Sequence[NodeSpec], namespace: str = "", params_files: Sequence[ParametersFile] = ()
) -> list[Any]:
    """The nodes of ``specs``, each with the graph's parameters and then what ``params_files``
    give it by name (later files win), as separate processes would get them."""
    from rclpy.parameter import Parameter

    nodes = []
    for spec in specs:
        module_name, class_name = spec.node_class.split(":")
        node_class = getattr(importlib.import_module(module_name), class_name)
        cli_args = ["--ros-args", "-r", f"__node:={spec.name}"]
        for src, dst in spec.remappings:
            cli_args += ["-r", f"{src}:={dst}"]
        parameters = dict(spec.parameters)
        for params_file in params_files:
            parameters.update(params_file.for_node(qualified_name(namespace, spec.name)))
        nodes.append(
            node_class(
                namespace=namespace,
                cli_args=cli_args,
                parameter_overrides=[Parameter(k, value=v) for k, v in parameters.items()],
            )
        )
    return nodes


def resolved_namespace(namespace: str) -> str:
    """The namespace the nodes get: ``namespace``, unless the process's ROS arguments remap it
    (``-r __ns:=/robot1``, as launch_ros does for a Node under PushRosNamespace). rcl applies
    that remap to every node of the process; asking rcl keeps its rules in one place."""
    import rclpy

    probe = rclpy.create_node(
        "hsnn_namespace_probe", namespace=namespace or "/", start_parameter_services=False
    )
    try:
        return probe.get_namespace()
    finally:
        probe.destroy_node()


def spin_composed(
    specs: Sequence[NodeSpec],
    namespace: str = "",
    args: list[str] | None = None,
    until: Any = None,
    params_files: Sequence[ParametersFile] = (),
) -> int:
    """Spin all nodes of ``specs`` in one process until a signal, shutdown or ``until()``: each
    node in its own executor and thread, so that the source's work (a synthetic gesture rendered
    in the driver's timer, a file read) and each stage's callbacks never hold up the next stage's
    message (bench/hops.py measures the hops)."""
    from hsnn_perception.nodes.base import run_nodes

    return run_nodes(
        lambda: build_nodes(specs, resolved_namespace(namespace), params_files),
        args,
        until,
        thread_per_node=True,
        event_streams=any(spec.name == STAGE_NODES["driver"] for spec in specs),
    )


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default="", help="model bundle directory (default: shipped model)")
    ap.add_argument("--source", default="synthetic", help="synthetic | aedat4 | camera | network")
    ap.add_argument("--source-path", default="", help="AEDAT4 file for source aedat4")
    ap.add_argument("--interval", type=int, default=0, help="accumulation interval I (0 = model's)")
    ap.add_argument("--snn-backend", default="native", help="native | lava | lava-hw")
    ap.add_argument("--classifier-backend", default="onnxruntime", help="onnxruntime | tensorrt")
    ap.add_argument("--num-samples", type=int, default=0, help="synthetic samples (0 = endless)")
    ap.add_argument("--speed", type=float, default=1.0, help="playback speed (0 = max)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--namespace", default="")
    ap.add_argument(
        "--graph-json", default="", help="node specs written by hsnn_perception.launcher"
    )
    ap.add_argument(
        "--params-file",
        action="append",
        default=[],
        help="ROS 2 parameters file applied to the nodes by name (repeatable; later wins)",
    )
    return ap


def main(argv: list[str] | None = None) -> int:
    import sys

    argv = sys.argv[1:] if argv is None else argv
    ours = argv[: argv.index("--ros-args")] if "--ros-args" in argv else argv
    opts = parser().parse_args(ours)
    try:
        if opts.graph_json:
            from pathlib import Path

            from hsnn_perception.graph import specs_from_json

            specs = specs_from_json(Path(opts.graph_json).read_text())
        else:
            specs = pipeline(
                model=opts.model,
                source=opts.source,
                source_path=opts.source_path,
                interval=opts.interval,
                snn_backend=opts.snn_backend,
                classifier_backend=opts.classifier_backend,
                num_samples=opts.num_samples,
                speed=opts.speed,
                seed=opts.seed,
            )
        # Read here, so that a bad file fails with a message, not in every node.
        params_files = [ParametersFile.read(path) for path in opts.params_file]
    except (OSError, ValueError, TypeError) as exc:
        print(f"composed_pipeline: {exc}", file=sys.stderr)
        return 2
    return spin_composed(specs, opts.namespace, args=argv, params_files=params_files)


if __name__ == "__main__":
    raise SystemExit(main())
