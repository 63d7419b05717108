"""The executors the nodes spin in (nodes/base.py): the SingleThreadedExecutor, rclpy's
EventsExecutor on request; the composed runner's executor-per-node threads serve
every node and stop when asked."""

from __future__ import annotations

import time

import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from std_msgs.msg import String

from hsnn_perception.nodes import base


@pytest.fixture
def ros():
    rclpy.init()
    yield
    rclpy.try_shutdown()


def test_single_executor_by_default_and_events_on_request(ros, monkeypatch):
    pytest.importorskip("rclpy.experimental")  # rclpy before Kilted: the single one only
    from rclpy.impl.implementation_singleton import rclpy_implementation

    monkeypatch.delenv("HSNN_EXECUTOR", raising=False)
    assert isinstance(base.make_executor(), SingleThreadedExecutor)
    monkeypatch.setenv("HSNN_EXECUTOR", "events")
    executor = base.make_executor()
    assert isinstance(executor, rclpy_implementation.EventsExecutor)
    executor.shutdown()
    monkeypatch.setenv("HSNN_EXECUTOR", "fast")
    with pytest.raises(ValueError, match="HSNN_EXECUTOR"):
        base.make_executor()


@pytest.mark.parametrize("thread_per_node", [False, True], ids=["one executor", "per node"])
def test_spin_nodes_serves_every_node_and_stops_when_asked(ros, thread_per_node):
    talker, listener = Node("exec_talker"), Node("exec_listener")
    heard: list[str] = []
    publisher = talker.create_publisher(String, "exec_test", 10)
    talker.create_timer(0.02, lambda: publisher.publish(String(data="x")))
    listener.create_subscription(String, "exec_test", lambda m: heard.append(m.data), 10)
    started = time.monotonic()
    base.spin_nodes(
        [talker, listener],
        until=lambda: len(heard) >= 3 or time.monotonic() - started > 20,
        thread_per_node=thread_per_node,
    )
    assert len(heard) >= 3
    talker.destroy_node()
    listener.destroy_node()
