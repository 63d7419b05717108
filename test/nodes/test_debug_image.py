"""debug/image over real DDS: with debug_image on, the SNN node renders a window only while
someone subscribes (sensor_msgs/Image, rgb8, the size core/events/debug_image.py gives the model's
shapes, stamped with the window's sensor time, its spike panel from that window's spikes); off
(the default), there is no such publisher at all."""

from __future__ import annotations

import random

import numpy as np
import pytest
import rclpy
from sensor_msgs.msg import Image

from hsnn_perception.core.events.debug_image import GAP, render_debug_image
from hsnn_perception.core.hybrid.bundle import ModelBundle
from hsnn_perception.msg import EventPacket
from hsnn_perception.nodes.base import reliable_qos, sensor_qos
from hsnn_perception.nodes.conversions import read_tensor_list, time_to_us

from .test_bad_input import Probe, good_packets, start, warm_up

pytestmark = pytest.mark.slow


@pytest.fixture
def ros():
    rclpy.init()
    yield
    rclpy.try_shutdown()


def _warm_up(probe: Probe, bundle: ModelBundle, group) -> EventPacket:  # noqa: ANN001
    pub = probe.node.create_publisher(EventPacket, "events", sensor_qos(500))
    probe.wait_for_subscriber(pub)
    warm = warm_up(probe, pub, bundle, lambda: bool(probe.received["snn/spikes"]))
    assert warm, group.log("snn_feature")
    return pub


def test_debug_image_only_when_enabled_and_subscribed(ros, tmp_path, default_bundle_dir):
    bundle = ModelBundle.load(default_bundle_dir)
    ns = f"dbg_{random.randint(0, 10**6)}"
    topic = f"/{ns}/debug/image"
    params = {"debug_image": True, "diagnostics_period_s": 0.2}
    with start({"snn_feature"}, ns, tmp_path, snn_feature=params) as group:
        probe = Probe(ns)
        pub = _warm_up(probe, bundle, group)
        assert probe.spin_until(lambda: probe.node.count_publishers(topic) == 1, 10)
        # Enabled, nobody subscribed: windows go out, no image is rendered.
        for msg in good_packets(bundle, 3, seq0=100, t0_window=50):
            pub.publish(msg)
            probe.spin_until(lambda: False, 0.02)
        assert probe.spin_until(
            lambda: int(probe.diag("snn_feature").get("published.windows", 0)) >= 4, 60
        ), group.log("snn_feature")
        assert "published.debug_images" not in probe.diag("snn_feature")
        # Subscribed: each window comes out as an image too.
        images: list[Image] = []
        probe.node.create_subscription(Image, "debug/image", images.append, reliable_qos(10))
        packets = iter(good_packets(bundle, 60, seq0=200, t0_window=54))
        assert probe.spin_until(lambda: pub.publish(next(packets)) or len(images) >= 2, 60), (
            group.log("snn_feature")
        )
        image = images[-1]
        # The window's spikes come on their own topic: the probe may take them after the image.
        stamps = lambda: {read_tensor_list(m)[1] for m in probe.received["snn/spikes"]}  # noqa: E731
        assert probe.spin_until(lambda: time_to_us(image.header.stamp) in stamps(), 30)
    shape = render_debug_image(
        np.zeros((bundle.timesteps, 2, bundle.height, bundle.width), np.uint16),
        np.zeros((bundle.timesteps, *bundle.feature_shape), np.uint8),
    ).shape
    assert (image.height, image.width, image.encoding) == (*shape[:2], "rgb8")
    assert image.step == 3 * image.width and len(image.data) == image.height * image.step
    pixels = np.frombuffer(bytes(image.data), np.uint8).reshape(shape)
    events = pixels[:, : (pixels.shape[1] - GAP) // 2]
    assert events[..., 0].any() and events[..., 2].any()  # random events: both polarities
    # The spike panel is that window's spikes (same sensor-time stamp on both topics).
    stamp = time_to_us(image.header.stamp)
    assert stamp % bundle.window_us == 0 and stamp >= 54 * bundle.window_us
    spikes = {read_tensor_list(m)[1]: read_tensor_list(m)[2] for m in probe.received["snn/spikes"]}
    frames = np.zeros((bundle.timesteps, 2, bundle.height, bundle.width), np.uint16)
    want = render_debug_image(frames, spikes[stamp]["spikes"])
    assert (pixels[:, shape[1] // 2 :] == want[:, shape[1] // 2 :]).all()


def test_no_debug_image_publisher_by_default(ros, tmp_path, default_bundle_dir):
    bundle = ModelBundle.load(default_bundle_dir)
    ns = f"dbg_off_{random.randint(0, 10**6)}"
    images: list[Image] = []
    with start({"snn_feature"}, ns, tmp_path, snn_feature={"diagnostics_period_s": 0.2}) as group:
        probe = Probe(ns)
        probe.node.create_subscription(Image, "debug/image", images.append, reliable_qos(10))
        pub = _warm_up(probe, bundle, group)
        for msg in good_packets(bundle, 2, seq0=100, t0_window=50):
            pub.publish(msg)
            probe.spin_until(lambda: False, 0.02)
        assert probe.spin_until(lambda: len(probe.received["snn/spikes"]) >= 3, 60)
        assert probe.node.count_publishers(f"/{ns}/debug/image") == 0 and not images
