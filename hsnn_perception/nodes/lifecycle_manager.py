"""Lifecycle manager: brings the pipeline's managed nodes up in dependency order, nav2-style.

Each node in ``node_names`` is configured, in order, then each is activated, in order. The graph
(hsnn_perception.graph) lists the consumers first and the event driver last, so a recorded source
starts playing only once every stage downstream is configured (models loaded, kernels compiled)
and active (subscribed). A node already in the wanted state is left as it is. If any node fails to
configure (all are tried, so one run names every problem) or to activate, nothing more is
activated: the error is in the log and on /diagnostics, and the nodes stay up for a fix.

Not a lifecycle node itself (as nav2's is not), and it creates no bonds: run nav2's
``lifecycle_manager`` instead with ``bond_timeout: 0.0`` if a navigation stack should own the nodes.

The service calls are awaited inside the executor (a coroutine), so the manager works in the
composed single-process runner too, where the managed nodes share its executor.
"""

from __future__ import annotations

import time
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from lifecycle_msgs.msg import State as StateMsg
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.task import Future

from hsnn_perception.core.errors import OrchestrationError
from hsnn_perception.graph import DIAGNOSTICS, LIFECYCLE_MANAGER
from hsnn_perception.nodes.base import reliable_qos, run_node

# What each wanted state needs, from each state it may be found in.
_STEPS = {
    "configure": {
        StateMsg.PRIMARY_STATE_UNCONFIGURED: Transition.TRANSITION_CONFIGURE,
    },
    "activate": {
        StateMsg.PRIMARY_STATE_INACTIVE: Transition.TRANSITION_ACTIVATE,
    },
}
_DONE = {
    "configure": (StateMsg.PRIMARY_STATE_INACTIVE, StateMsg.PRIMARY_STATE_ACTIVE),
    "activate": (StateMsg.PRIMARY_STATE_ACTIVE,),
}


# A request unanswered this long is checked on: asked again where it was lost (see _reach).
RECHECK_S = 3.0


class BringUpError(OrchestrationError, RuntimeError):
    """A managed node did not reach the state it was asked for."""


class LifecycleManagerNode(Node):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(LIFECYCLE_MANAGER, **kwargs)
        # All read-only at run time (set at launch): any DDS peer may call set_parameters. One
        # descriptor per parameter: rclpy writes the name and type into the one it is given.
        self.declare_parameter(
            "node_names",
            [""],
            ParameterDescriptor(
                description="managed nodes, in bring-up order (driver last)", read_only=True
            ),
        )
        # autostart: bring the nodes up at start, as nav2's does
        self.declare_parameter("autostart", True, ParameterDescriptor(read_only=True))
        # Configuring the SNN node compiles the network (numba, Lava's compiler): minutes on a
        # slow machine for Lava, so the default is generous.
        self.declare_parameter("transition_timeout_s", 300.0, ParameterDescriptor(read_only=True))
        self.declare_parameter("service_timeout_s", 60.0, ParameterDescriptor(read_only=True))
        self.node_names = [n for n in self.get_parameter("node_names").value if n]
        self.status = "waiting"
        self.detail = ""
        self.bringup_s: float | None = None
        self._diag_pub = self.create_publisher(DiagnosticArray, DIAGNOSTICS, reliable_qos(10))
        # Steady-clock timers: under use_sim_time a ROS-time timer waits for /clock, which the
        # driver publishes only once this manager has brought it up.
        self._steady = Clock(clock_type=ClockType.STEADY_TIME)
        self._diag_timer = self.create_timer(1.0, self.publish_diagnostics, clock=self._steady)
        self._lifecycle_clients: dict[str, tuple[Any, Any]] = {}
        self._start_timer = None
        if self.get_parameter("autostart").value:
            self._start_timer = self.create_timer(0.0, self._start, clock=self._steady)

    def _start(self) -> None:
        self.destroy_timer(self._start_timer)
        self.executor.create_task(self.bring_up())

    async def bring_up(self) -> bool:
        """Configure every node, then activate every node, in ``node_names`` order."""
        started = time.monotonic()
        self.status = "bringing up"
        # Every node is asked to configure, so one run reports every node that cannot (a missing
        # model, a bad parameter); nothing is activated unless all of them could.
        failures = []
        for name in self.node_names:
            try:
                await self._reach(name, "configure")
            except BringUpError as exc:
                failures.append(str(exc))
        try:
            if failures:
                raise BringUpError("; ".join(failures))
            for name in self.node_names:
                await self._reach(name, "activate")
        except BringUpError as exc:
            self.status, self.detail = "failed", str(exc)
            self.get_logger().error(f"bring-up stopped, nothing more is activated: {exc}")
            self.publish_diagnostics()
            return False
        self.bringup_s = time.monotonic() - started
        self.status, self.detail = "active", ""
        self.get_logger().info(
            f"{len(self.node_names)} nodes configured and active in {self.bringup_s:.1f} s: "
            + ", ".join(self.node_names)
        )
        self.publish_diagnostics()
        return True

    def _clients_for(self, name: str) -> tuple[Any, Any]:
        if name not in self._lifecycle_clients:
            self._lifecycle_clients[name] = (
                self.create_client(GetState, f"{name}/get_state"),
                self.create_client(ChangeState, f"{name}/change_state"),
            )
        return self._lifecycle_clients[name]

    async def _reach(self, name: str, step: str) -> None:
        get_state, change_state = self._clients_for(name)
        service_timeout = float(self.get_parameter("service_timeout_s").value)
        await self._wait_for_service(get_state, service_timeout)
        state = await self._state(get_state, service_timeout)
        if state is None:
            raise BringUpError(f"{get_state.srv_name} did not answer within {service_timeout:g} s")
        if state.id in _DONE[step]:
            return
        transition = _STEPS[step].get(state.id)
        if transition is None:
            raise BringUpError(f"{name} is {state.label!r}; cannot {step} it from there")
        self.detail = f"{step} {name}"
        self.get_logger().info(f"{step} {name}")
        request = ChangeState.Request()
        request.transition.id = transition
        await self._wait_for_service(change_state, service_timeout)
        timeout = float(self.get_parameter("transition_timeout_s").value)
        deadline = time.monotonic() + timeout
        future = change_state.call_async(request)
        asked = time.monotonic()
        while not future.done():
            if time.monotonic() > deadline:
                change_state.remove_pending_request(future)
                raise BringUpError(f"{name} did not {step} within {timeout:g} s")
            await self._sleep(0.05)
            if time.monotonic() - asked < RECHECK_S:
                continue
            # No answer yet. A node busy with a long transition cannot answer get_state either;
            # one that answers tells whether the request (or only its response) was lost: a
            # service freshly discovered can miss its first request while it matches the client.
            now = await self._state(get_state, 1.0)
            asked = time.monotonic()
            if now is None or future.done():
                continue
            if now.id in _DONE[step]:
                change_state.remove_pending_request(future)
                return
            if now.id == state.id:
                change_state.remove_pending_request(future)
                self.get_logger().warn(f"{step} request to {name} unanswered: asking again")
                future = change_state.call_async(request)
        if not future.result().success:
            # A repeated request fails where the first one succeeded: the state decides.
            now = await self._state(get_state, service_timeout)
            if now is None or now.id not in _DONE[step]:
                raise BringUpError(f"{name} refused to {step} (its log says why)")

    async def _wait_for_service(self, client: Any, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not client.service_is_ready():
            if time.monotonic() > deadline:
                raise BringUpError(f"{client.srv_name} not available after {timeout_s:g} s")
            await self._sleep(0.05)

    async def _state(self, client: Any, timeout_s: float) -> Any:
        """The node's current state, or None if it did not answer within ``timeout_s``. Asked
        again every RECHECK_S: a request can be lost while a new service is being matched."""
        deadline = time.monotonic() + timeout_s
        while True:
            future = client.call_async(GetState.Request())
            attempt_end = min(deadline, time.monotonic() + RECHECK_S)
            while not future.done() and time.monotonic() < attempt_end:
                await self._sleep(0.05)
            if future.done():
                return future.result().current_state
            client.remove_pending_request(future)
            if time.monotonic() >= deadline:
                return None

    async def _sleep(self, seconds: float) -> None:
        """Yield to the executor for ``seconds`` (rclpy has no asyncio loop to sleep on)."""
        done = Future()
        timer = self.create_timer(
            seconds, lambda: done.done() or done.set_result(None), clock=self._steady
        )
        await done
        self.destroy_timer(timer)

    def publish_diagnostics(self) -> None:
        status = DiagnosticStatus()
        status.name = f"hsnn/{self.get_name()}"
        status.hardware_id = self.get_fully_qualified_name()
        status.level = {
            "failed": DiagnosticStatus.ERROR,
            "active": DiagnosticStatus.OK,
        }.get(self.status, DiagnosticStatus.WARN)
        status.message = f"{self.status}: {self.detail}" if self.detail else self.status
        values = {"managed_nodes": ",".join(self.node_names), "state": self.status}
        if self.bringup_s is not None:
            values["bringup_s"] = f"{self.bringup_s:.2f}"
        status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.status = [status]
        self._diag_pub.publish(msg)


def main(args: list[str] | None = None) -> int:
    return run_node(LifecycleManagerNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
