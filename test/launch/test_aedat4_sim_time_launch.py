"""pipeline.launch.py on an AEDAT4 recording (written by dv-processing) with ``use_sim_time``: the
driver publishes the recording's sensor time on /clock (``publish_clock`` from a parameters file),
every window is classified as the offline evaluation of the same events classifies it, and the
nodes stamp their reports in sensor time, not host time."""

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
import numpy as np
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch_helpers import Listener, namespace, offline_predictions, pipeline_launch_file

from hsnn_perception.core.events.synthetic import SyntheticGestures
from hsnn_perception.core.io.bag.convert import aedat4_to_bag
from hsnn_perception.core.io.bag.msgtypes import time_to_ns
from hsnn_perception.core.sources.dv import write_aedat4
from hsnn_perception.msg import Classification, EnergyReport
from hsnn_perception.nodes.base import reliable_qos
from hsnn_perception.nodes.conversions import time_to_us
from launch import LaunchDescription

SAMPLES = 6
START_US = 1_000_000_000  # a camera clock 1000 s after its start


@pytest.mark.launch_test
def generate_test_description():
    ns = namespace("launch_aedat4")
    work = Path(tempfile.mkdtemp(prefix="hsnn-aedat4-test-"))
    gen = SyntheticGestures(height=128, width=128, seed=21)
    events = np.concatenate([e for e, *_ in gen.stream(SAMPLES, start_us=START_US)])
    recording = write_aedat4(work / "gestures.aedat4", events, 128, 128)
    bag = work / "same_events.mcap"
    aedat4_to_bag(recording, None, bag)
    params = work / "params.yaml"
    params.write_text("/**/event_driver:\n  ros__parameters:\n    publish_clock: true\n")
    listener = Listener(ns)
    classes = listener.subscribe(Classification, "classification", reliable_qos(100))
    totals = listener.subscribe(EnergyReport, "energy/total", reliable_qos(100))
    pipeline = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(pipeline_launch_file()),
        launch_arguments={
            "source": "aedat4",
            "source_path": str(recording),
            "use_sim_time": "true",
            "namespace": ns,
            "params_file": str(params),
        }.items(),
    )
    context = {"listener": listener, "bag": bag, "classes": classes, "totals": totals}
    return LaunchDescription([pipeline, launch_testing.actions.ReadyToTest()]), context


class TestAedat4UnderSimTime(unittest.TestCase):
    def test_every_window_classified_as_offline(self, listener, bag, classes):
        expected = offline_predictions(bag)
        self.assertGreaterEqual(len(expected), SAMPLES)
        self.assertTrue(
            listener.wait_for(lambda: len(classes) >= len(expected), 180),
            f"{len(classes)} of {len(expected)} windows classified",
        )
        self.assertEqual({time_to_us(m.window_stamp): int(m.class_id) for m in classes}, expected)

    def test_reports_are_stamped_in_sensor_time(self, listener, totals):
        self.assertTrue(listener.wait_for(lambda: len(totals) >= SAMPLES, 180))
        end_us = START_US + SAMPLES * 160_000
        for report in totals:
            stamp_us = time_to_ns(report.header.stamp) // 1000
            # The ROS clock follows /clock: within the recording (plus the end-of-stream flush),
            # never the host's wall clock and never 0 (no /clock heard).
            self.assertTrue(START_US <= stamp_us <= end_us + 1_000_000, stamp_us)


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_every_process_exits_cleanly(self, proc_info, listener):
        listener.close()
        launch_testing.asserts.assertExitCodes(proc_info)
