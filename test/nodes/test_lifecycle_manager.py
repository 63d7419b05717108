"""The lifecycle manager over real services: a managed node whose first change_state request is
lost (no answer ever comes, as when a freshly discovered service misses it) is asked again and
brought up; a node that refuses stops the bring-up with its name."""

from __future__ import annotations

import random
import time

import pytest
import rclpy
from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter

from hsnn_perception.nodes.lifecycle_manager import LifecycleManagerNode

pytestmark = pytest.mark.slow

NEXT = {
    Transition.TRANSITION_CONFIGURE: (
        State.PRIMARY_STATE_UNCONFIGURED,
        State.PRIMARY_STATE_INACTIVE,
    ),
    Transition.TRANSITION_ACTIVATE: (State.PRIMARY_STATE_INACTIVE, State.PRIMARY_STATE_ACTIVE),
}


class LostRequestError(Exception):
    """Raised in a service callback: rclpy then sends no response (a lost request)."""


class ManagedStandIn(Node):
    """The lifecycle services of a managed node, losing its first ``lose`` change requests."""

    def __init__(self, name: str, namespace: str, lose: int = 0, refuse: bool = False) -> None:
        super().__init__(name, namespace=namespace)
        self.state = State.PRIMARY_STATE_UNCONFIGURED
        self.lose, self.refuse, self.requests = lose, refuse, 0
        self.create_service(GetState, "~/get_state", self._get)
        self.create_service(ChangeState, "~/change_state", self._change)

    def _get(self, request: GetState.Request, response: GetState.Response) -> GetState.Response:
        response.current_state.id = self.state
        return response

    def _change(self, request: ChangeState.Request, response: ChangeState.Response):  # noqa: ANN201
        self.requests += 1
        if self.requests <= self.lose:
            raise LostRequestError
        start, end = NEXT[request.transition.id]
        response.success = self.state == start and not self.refuse
        if response.success:
            self.state = end
        return response


def bring_up(stand_ins: list[ManagedStandIn], namespace: str) -> LifecycleManagerNode:
    manager = LifecycleManagerNode(
        namespace=namespace,
        parameter_overrides=[Parameter("node_names", value=[n.get_name() for n in stand_ins])],
    )
    executor = SingleThreadedExecutor()
    for node in (manager, *stand_ins):
        executor.add_node(node)
    deadline = time.monotonic() + 60
    while manager.status not in ("active", "failed") and time.monotonic() < deadline:
        try:
            executor.spin_once(timeout_sec=0.05)
        except LostRequestError:
            pass
    return manager


@pytest.fixture
def ros():
    rclpy.init()
    yield
    rclpy.try_shutdown()


def test_a_lost_request_is_asked_again(ros):
    ns = f"mgr_{random.randint(0, 10**6)}"
    flaky = ManagedStandIn("flaky", ns, lose=1)
    steady = ManagedStandIn("steady", ns)
    manager = bring_up([flaky, steady], ns)
    assert manager.status == "active", manager.detail
    assert flaky.state == steady.state == State.PRIMARY_STATE_ACTIVE
    assert flaky.requests == 3  # configure lost, configure again, activate


def test_a_refusal_stops_the_bring_up_and_names_the_node(ros):
    ns = f"mgr_{random.randint(0, 10**6)}"
    refusing = ManagedStandIn("refusing", ns, refuse=True)
    other = ManagedStandIn("other", ns)
    manager = bring_up([refusing, other], ns)
    assert manager.status == "failed" and "refusing refused to configure" in manager.detail
    # Every node was asked to configure; none was activated.
    assert other.state == State.PRIMARY_STATE_INACTIVE
