"""``stages:=driver,snn`` (the Loihi host of a two-host deployment) with a recorded source: the
driver holds the recording back until the far end of snn/spikes listens (here a subscriber that
comes up seconds later), so no window is lost whichever host starts first."""

from __future__ import annotations

import signal
import tempfile
import time
from pathlib import Path

import pytest
from launch_helpers import Listener, namespace, offline_predictions
from test_launch_shutdown import LaunchRun

from hsnn_perception.core.io.bag.write import synthetic_to_bag
from hsnn_perception.msg import TensorList
from hsnn_perception.nodes.base import reliable_qos
from hsnn_perception.nodes.conversions import read_tensor_list

pytestmark = pytest.mark.slow


def test_the_loihi_half_waits_for_its_far_end():
    bag = Path(tempfile.mkdtemp(prefix="hsnn-partial-")) / "gestures.mcap"
    synthetic_to_bag(bag, 4, seed=12)
    windows = len(offline_predictions(bag))
    ns = namespace("loihi_host")
    run = LaunchRun(
        ns, "stages:=driver,snn", "source:=rosbag", f"source_path:={bag}", noninteractive=True
    )
    listener = Listener(ns)
    try:
        time.sleep(8)  # the half is up long before anything downstream listens
        spikes = listener.subscribe(TensorList, "snn/spikes", reliable_qos(100))
        assert listener.wait_for(lambda: len(spikes) >= windows, 60), (
            f"{len(spikes)} of {windows} windows\n" + run.output[-3000:]
        )
        ids = sorted(read_tensor_list(m)[0] for m in spikes)
        assert ids == list(range(windows)), ids
        run.proc.send_signal(signal.SIGINT)
        assert run.wait(30) == 0
    finally:
        listener.close()
        run.kill()
