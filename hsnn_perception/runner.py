"""All pipeline nodes in one process and one executor (the composed form of the launch file).

``ros2 run hsnn_perception composed_pipeline --ros-args -p source:=synthetic`` or
``python -m hsnn_perception.runner``. Arguments mirror the launch file's.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence
from typing import Any

from hsnn_perception.graph import NodeSpec, pipeline


def build_nodes(specs: Sequence[NodeSpec], namespace: str = "") -> list[Any]:
    from rclpy.parameter import Parameter

    nodes = []
    for spec in specs:
        module_name, class_name = spec.node_class.split(":")
        node_class = getattr(importlib.import_module(module_name), class_name)
        cli_args = ["--ros-args", "-r", f"__node:={spec.name}"]
        for src, dst in spec.remappings:
            cli_args += ["-r", f"{src}:={dst}"]
        nodes.append(
            node_class(
                namespace=namespace,
                cli_args=cli_args,
                parameter_overrides=[Parameter(k, value=v) for k, v in spec.parameters.items()],
            )
        )
    return nodes


def spin_composed(
    specs: Sequence[NodeSpec], namespace: str = "", args: list[str] | None = None, until: Any = None
) -> int:
    """Spin all nodes of ``specs`` in one executor until Ctrl-C, shutdown or ``until()``."""
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

    rclpy.init(args=args)
    nodes: list[Any] = []
    try:
        nodes = build_nodes(specs, namespace)
        executor = SingleThreadedExecutor()
        for node in nodes:
            executor.add_node(node)
        while rclpy.ok() and (until is None or not until()):
            executor.spin_once(timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        for node in nodes:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


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

            return spin_composed(
                specs_from_json(Path(opts.graph_json).read_text()), opts.namespace, args=argv
            )
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
    except (OSError, ValueError, TypeError) as exc:
        print(f"composed_pipeline: {exc}", file=sys.stderr)
        return 2
    return spin_composed(specs, opts.namespace, args=argv)


if __name__ == "__main__":
    raise SystemExit(main())
