"""A parent launch file as a navigation stack would write it: the hsnn pipeline included under a
namespace, its classifications remapped to the topic the stack consumes, its parameters from the
stack's own file, all nodes in one process.

    ros2 launch <this file> robot:=robot1 params_file:=/path/to/stack.yaml
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, GroupAction, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import PushRosNamespace, SetRemap

from launch import LaunchDescription

ARGUMENTS = {
    "robot": ("robot1", "the robot's namespace"),
    "params_file": ("", "parameters of the stack (hsnn nodes included)"),
    "source": ("synthetic", "hsnn event source"),
    "source_path": ("", "hsnn recording"),
    "speed": ("1.0", "hsnn playback speed"),
    "composed": ("true", "hsnn nodes in one process"),
}


def generate_launch_description():
    robot = LaunchConfiguration("robot")
    pipeline = os.path.join(
        get_package_share_directory("hsnn_perception"), "launch", "pipeline.launch.py"
    )
    perception = GroupAction(
        [
            PushRosNamespace(robot),
            # What the stack consumes, under its own name.
            SetRemap(
                src=PathJoinSubstitution(["/", robot, "classification"]),
                dst=PathJoinSubstitution(["/", robot, "perception", "gesture"]),
            ),
            IncludeLaunchDescription(
                PythonLaunchDescriptionSource(pipeline),
                launch_arguments={
                    name: LaunchConfiguration(name)
                    for name in ("params_file", "source", "source_path", "speed", "composed")
                }.items(),
            ),
        ]
    )
    return LaunchDescription(
        [
            *(
                DeclareLaunchArgument(name, default_value=default, description=text)
                for name, (default, text) in ARGUMENTS.items()
            ),
            perception,
        ]
    )
