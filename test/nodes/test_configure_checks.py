"""In process, without DDS traffic: every parameter a node's callbacks use is checked at configure
(a bad value fails the transition, counted as ``errors.parameter``, the node stays up), and the
timers a node makes on activate live exactly while it is active."""

from __future__ import annotations

import math

import pytest
import rclpy
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter

from hsnn_bridge.accumulator_node import AccumulatorBridgeNode
from hsnn_perception.nodes.classifier_node import ClassifierNode
from hsnn_perception.nodes.energy_aggregator import EnergyAggregatorNode
from hsnn_perception.nodes.event_driver import EventDriverNode
from hsnn_perception.nodes.snn_node import SnnFeatureNode


@pytest.fixture
def ros():
    rclpy.init()
    yield
    rclpy.try_shutdown()


def make(node_class: type, **parameters: object):  # noqa: ANN201 - the node made
    overrides = [Parameter("autostart", value=False)]
    overrides += [Parameter(name, value=value) for name, value in parameters.items()]
    return node_class(parameter_overrides=overrides)


@pytest.mark.parametrize(
    ("node_class", "name", "value"),
    [
        (EventDriverNode, "timer_period_s", 0.0),
        (EventDriverNode, "max_packets_per_tick", 0),
        (EventDriverNode, "wait_for_subscribers", -1),
        (EventDriverNode, "settle_s", math.nan),
        (EventDriverNode, "qos_depth", 0),
        (SnnFeatureNode, "energy_chip", "loihi3"),
        (SnnFeatureNode, "loihi_cores", -2),
        (SnnFeatureNode, "heal_packets", 0),
        (SnnFeatureNode, "window_queue", 0),
        (SnnFeatureNode, "flush_idle_s", math.nan),
        (SnnFeatureNode, "max_packet_events", 0),
        (SnnFeatureNode, "input_mapping", "stretch"),
        (SnnFeatureNode, "input_roi", [0, 0, 64]),
        (ClassifierNode, "energy_model_device", "nowhere"),
        (AccumulatorBridgeNode, "energy_per_add_j", -1.0),
        (EnergyAggregatorNode, "timeout_s", math.inf),
    ],
)
def test_a_bad_value_fails_configure_and_says_which(ros, node_class, name, value):
    node = make(node_class, **{name: value})
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert node.counters["errors.parameter"] == 1, dict(node.counters)
        assert repr(name) in node.last_errors["parameter"]
        assert node._state_machine.current_state[1] == "unconfigured"
    finally:
        node.destroy_node()


def test_active_timers_live_while_the_node_is_active(ros):
    node = make(EnergyAggregatorNode)
    try:
        housekeeping = len(list(node.timers))  # diagnostics
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        assert len(list(node.timers)) == housekeeping + 1  # the expiry of pending windows
        assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
        assert len(list(node.timers)) == housekeeping
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        assert len(list(node.timers)) == housekeeping + 1
        assert node.counters["errors"] == 0, dict(node.last_errors)
    finally:
        node.destroy_node()


def test_a_recording_plays_again_after_cleanup_and_configure(ros):
    from rclpy.executors import SingleThreadedExecutor

    driver = make(
        EventDriverNode, source="synthetic", num_samples=1, speed=0.0, settle_s=0.0, window_us=0
    )
    executor = SingleThreadedExecutor()
    executor.add_node(driver)

    def play() -> None:
        assert driver.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert driver.trigger_activate() == TransitionCallbackReturn.SUCCESS
        for _ in range(2000):
            if driver._finished:
                break
            executor.spin_once(timeout_sec=0.01)
        assert driver._finished

    try:
        play()
        first = driver._seq
        assert first > 0
        assert driver.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
        assert driver.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
        play()
        assert driver._seq == 2 * first, "the whole recording again, seq counting on"
    finally:
        driver.destroy_node()
