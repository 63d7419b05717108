"""pipeline.launch.py with ``autostart:=false``: nothing configures itself, so a navigation stack's
lifecycle manager can own the nodes. Here the package's lifecycle_manager executable, started
apart from the launch as nav2's would be, brings them up; the synthetic source (the embedded
default) then has every window classified as the offline evaluation classifies the same
gestures."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
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
from ament_index_python.packages import get_package_prefix
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch_helpers import (
    NODES,
    Listener,
    namespace,
    offline_predictions,
    pipeline_launch_file,
    predictions,
)

from hsnn_perception.core.io.bag.write import synthetic_to_bag
from hsnn_perception.graph import PACKAGE
from launch import LaunchDescription

SAMPLES = 5
SEED = 17


@pytest.mark.launch_test
def generate_test_description():
    ns = namespace("launch_managed")
    listener = Listener(ns)
    pipeline = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(pipeline_launch_file()),
        launch_arguments={
            "autostart": "false",
            "num_samples": str(SAMPLES),
            "seed": str(SEED),
            "namespace": ns,
        }.items(),
    )
    return LaunchDescription([pipeline, launch_testing.actions.ReadyToTest()]), {
        "listener": listener,
        "ns": ns,
    }


class TestOutsideManager(unittest.TestCase):
    def test_nodes_wait_for_a_manager_then_classify_every_window(self, listener, ns):
        def states() -> set[str]:
            return {listener.lifecycle_state(node) for node in NODES}

        self.assertEqual(states(), {"unconfigured"}, "autostart:=false: nobody self-starts")
        time.sleep(2)
        self.assertEqual(states(), {"unconfigured"})
        self.assertEqual(listener.classified(), [])

        bag = Path(tempfile.mkdtemp(prefix="hsnn-managed-")) / "same_gestures.mcap"
        synthetic_to_bag(bag, SAMPLES, seed=SEED)
        expected = offline_predictions(bag)

        manager = os.path.join(get_package_prefix(PACKAGE), "lib", PACKAGE, "lifecycle_manager")
        names = "[" + ",".join(NODES) + "]"
        outside = subprocess.Popen(
            [
                manager,
                "--ros-args",
                "-r",
                f"__ns:=/{ns}",
                "-r",
                "__node:=stack_manager",
                "-p",
                f"node_names:={names}",
            ],
        )
        try:
            self.assertTrue(
                listener.wait_for(lambda: len(listener.complete()) >= len(expected), 180),
                f"{len(listener.complete())} of {len(expected)} windows",
            )
            self.assertEqual(states(), {"active"})
            self.assertEqual(predictions(listener.classified()), expected)
        finally:
            outside.send_signal(signal.SIGINT)
            self.assertEqual(outside.wait(10), 0)


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_every_process_exits_cleanly(self, proc_info, listener):
        listener.close()
        launch_testing.asserts.assertExitCodes(proc_info)
