"""The hsnn pipeline: event driver -> SNN feature -> accumulator bridge -> classifier, plus the
energy aggregator. Every node and argument comes from hsnn_perception.graph.

    ros2 launch hsnn_perception pipeline.launch.py snn_backend:=lava interval:=2 namespace:=robot1
"""

import tempfile

from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node

from hsnn_perception.graph import (
    LAUNCH_ARGUMENTS,
    LIFECYCLE_MANAGER,
    parse_bool,
    pipeline_from_arguments,
    specs_to_json,
)
from launch import LaunchDescription

GRAPH_ARGUMENTS = [a for a in LAUNCH_ARGUMENTS if a not in ("namespace", "composed", "params_file")]


def _nodes(context, *args, **kwargs):
    values = {name: LaunchConfiguration(name).perform(context) for name in LAUNCH_ARGUMENTS}
    specs = pipeline_from_arguments({k: values[k] for k in GRAPH_ARGUMENTS})
    namespace = values["namespace"]
    extra = [values["params_file"]] if values["params_file"] else []
    if parse_bool("composed", values["composed"]):
        graph = tempfile.NamedTemporaryFile("w", suffix=".json", prefix="hsnn-graph-", delete=False)
        graph.write(specs_to_json(specs))
        graph.close()
        # The runner applies the parameters file to each node by name, on top of the graph's
        # parameters, as the separate processes below do.
        files = [arg for path in extra for arg in ("--params-file", path)]
        return [
            # No `name`: a node-name remap would rename every node in the process.
            Node(
                package="hsnn_perception",
                executable="composed_pipeline",
                namespace=namespace,
                arguments=["--graph-json", graph.name, "--namespace", namespace, *files],
                output="screen",
            )
        ]
    return [
        (Node if spec.name == LIFECYCLE_MANAGER else LifecycleNode)(
            package=spec.package,
            executable=spec.executable,
            name=spec.name,
            namespace=namespace,
            parameters=[spec.parameters, *extra],
            remappings=list(spec.remappings),
            output="screen",
        )
        for spec in specs
    ]


def generate_launch_description():
    declared = [
        DeclareLaunchArgument(name, default_value=default, description=description)
        for name, (default, description) in LAUNCH_ARGUMENTS.items()
    ]
    return LaunchDescription([*declared, OpaqueFunction(function=_nodes)])
