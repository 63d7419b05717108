"""pipeline.launch.py included from a parent launch file (navigation_stack.launch.py) as a
navigation stack does: under PushRosNamespace, with a SetRemap of its output, the stack's
parameters file, all nodes composed in one process, and a recording played losslessly as fast as
the pipeline keeps up (speed 0). Every window comes out on the remapped topic, classified as the
offline evaluation classifies it; the parameters file applies in the composed process too."""

from __future__ import annotations

import tempfile
import unittest
from pathlib import Path

import pytest

# Where the launch stack is missing (no ROS 2 install, no overlay), skip this module with the
# reason, as launch_helpers.py does for the modules that import it first.
pytest.importorskip(
    "launch_testing",
    reason="the ROS 2 launch stack (launch_testing) is not installed: source a ROS 2 "
    "installation, or run scripts/setup.sh where the ros-overlay is present",
)

import launch_testing
import launch_testing.asserts
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch_helpers import Listener, namespace, offline_predictions

from hsnn_perception.core.io.bag.write import synthetic_to_bag
from hsnn_perception.msg import Classification, GestureLabel
from hsnn_perception.nodes.base import reliable_qos
from hsnn_perception.nodes.conversions import time_to_us
from launch import LaunchDescription

SAMPLES = 12
FRAME_ID = "dvs_of_the_stack"
PARENT = Path(__file__).with_name("navigation_stack.launch.py")


@pytest.mark.launch_test
def generate_test_description():
    robot = namespace("robot")
    work = Path(tempfile.mkdtemp(prefix="hsnn-include-test-"))
    bag = work / "gestures.db3"  # sqlite3 this time
    synthetic_to_bag(bag, SAMPLES, seed=8, storage="sqlite3")
    params = work / "stack.yaml"
    # The stack's recording plays once this test's listener is up (labels and the remapped
    # output have a subscriber): the pipeline itself comes up in about 2 s, before the listener
    # may have matched, and a volatile subscriber misses what came before.
    params.write_text(
        f"/{robot}/event_driver:\n  ros__parameters:\n    frame_id: {FRAME_ID}\n"
        "    wait_for_topics: [labels, perception/gesture]\n"
        "/**/some_planner:\n  ros__parameters:\n    max_speed: 0.5\n"
    )
    listener = Listener(robot)
    remapped = listener.subscribe(Classification, f"/{robot}/perception/gesture", reliable_qos(100))
    plain = listener.subscribe(Classification, f"/{robot}/classification", reliable_qos(100))
    labels = listener.subscribe(GestureLabel, f"/{robot}/labels", reliable_qos(100))
    stack = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(PARENT)),
        launch_arguments={
            "robot": robot,
            "params_file": str(params),
            "source": "rosbag",
            "source_path": str(bag),
            "speed": "0",
            "composed": "true",
        }.items(),
    )
    context = {"bag": bag, "remapped": remapped, "plain": plain, "labels": labels}
    return LaunchDescription([stack, launch_testing.actions.ReadyToTest()]), {
        **context,
        "listener": listener,
    }


class TestIncludedComposedLossless(unittest.TestCase):
    def test_every_window_on_the_remapped_topic_as_offline(self, listener, bag, remapped, plain):
        expected = offline_predictions(bag)
        self.assertTrue(
            listener.wait_for(lambda: len(remapped) >= len(expected), 180),
            f"{len(remapped)} of {len(expected)} windows on the remapped topic",
        )
        got = {time_to_us(m.window_stamp): int(m.class_id) for m in remapped}
        self.assertEqual(got, expected)
        self.assertEqual(len(remapped), len(expected), "each window once")
        self.assertEqual(plain, [], "nothing on the topic that was remapped away")

    def test_the_stack_parameters_file_applies_in_the_composed_process(self, listener, labels):
        self.assertTrue(listener.wait_for(lambda: len(labels) >= SAMPLES, 180))
        self.assertEqual({m.header.frame_id for m in labels}, {FRAME_ID})


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_the_process_exits_cleanly(self, proc_info, listener):
        listener.close()
        launch_testing.asserts.assertExitCodes(proc_info)
