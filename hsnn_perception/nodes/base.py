"""What every hsnn node shares: lifecycle with optional autostart, QoS profiles, counted errors and
a diagnostics publisher."""

from __future__ import annotations

import ctypes
import faulthandler
import functools
import math
import os
import signal
import struct
import sys
import threading
import time
import traceback
from collections import Counter, deque
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.lifecycle import LifecycleNode, State, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)

from hsnn_perception.core.errors import ConfigurationError
from hsnn_perception.graph import DIAGNOSTICS, ENERGY

# bench/hops.py: with HSNN_HOP_TRACE set to a directory, every node of a process appends
# "<node> <point> <key> <host ns> [<extra>]" lines to one file there (where a message waits
# between the stages). Unset (always, outside that benchmark), tracing costs one None check.
_HOP_TRACE_DIR = os.environ.get("HSNN_HOP_TRACE") or None
_hop_trace_file: Any = None
_hop_trace_lock = threading.Lock()


def hop_trace(node: str, point: str, key: int, extra: int = 0) -> None:
    """Record that ``node`` reached ``point`` for message ``key`` (a window's sensor start in
    us, or an event packet's seq) now, on the host clock shared by every process."""
    if _HOP_TRACE_DIR is None:
        return
    global _hop_trace_file
    now = time.time_ns()
    with _hop_trace_lock:
        if _hop_trace_file is None:
            path = os.path.join(_HOP_TRACE_DIR, f"trace-{os.getpid()}.txt")
            _hop_trace_file = open(path, "a", buffering=1)  # noqa: SIM115 - process lifetime
        _hop_trace_file.write(f"{node} {point} {key} {now} {extra}\n")


def _trace_key(msg: Any) -> tuple[int, int]:
    """(key, extra) of a received message for hop_trace: an event packet's seq and its header
    stamp (host time at publish), else the header stamp (a window's sensor start) in us."""
    if isinstance(msg, bytes):  # a raw subscription's TensorList: the stamp leads the CDR
        sec, nanosec = struct.unpack_from("<iI", msg, 4)
        return (sec * 1_000_000_000 + nanosec) // 1000, 0
    stamp = msg.header.stamp
    stamp_ns = int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)
    seq = getattr(msg, "seq", None)
    return (int(seq), stamp_ns) if seq is not None else (stamp_ns // 1000, 0)


def sensor_qos(depth: int) -> QoSProfile:
    """Best-effort, volatile, keep-last: ROS 2's sensor-data profile with a deeper queue, so a
    burst of packets during a long SNN step is kept but a slow reader never blocks the driver."""
    return QoSProfile(
        reliability=qos_profile_sensor_data.reliability,
        durability=qos_profile_sensor_data.durability,
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
    )


def reliable_qos(depth: int = 50) -> QoSProfile:
    return QoSProfile(
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.VOLATILE,
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
    )


EVENT_QOS = ("sensor", "reliable")
# How long an energy report waits after its window's data message (DeferredPublisher): longer
# than a data hop takes (about 1-3 ms on loopback), far shorter than a window.
REPORT_DELAY_S = 0.005
MAX_REPORT_DELAY_S = 30.0


def event_qos(kind: str, depth: int) -> QoSProfile:
    """QoS of the event stream: ``sensor`` (best effort, the default: a live camera must never
    wait) or ``reliable`` (lossless, for a recorded source whose driver holds back on its own:
    the driver's flow control). A reliable publisher also serves best-effort subscribers; a
    reliable subscriber connects only to a reliable publisher."""
    if kind == "sensor":
        return sensor_qos(depth)
    if kind == "reliable":
        return reliable_qos(depth)
    raise ParameterValueError(f"events_qos {kind!r} unknown; expected one of {EVENT_QOS}")


class ParameterValueError(ConfigurationError, ValueError):
    """A node parameter has a value the node cannot use."""


def guarded_transition(
    fn: Callable[[Any, State], TransitionCallbackReturn],
) -> Callable[[Any, State], TransitionCallbackReturn]:
    """A lifecycle callback that fails the transition (logged and counted) instead of raising:
    a bad parameter or a missing model leaves the node up, in its previous state."""

    @functools.wraps(fn)
    def wrapper(self: HsnnNode, state: State) -> TransitionCallbackReturn:
        try:
            return fn(self, state)
        # The last line of defence: the transitions catch the failures they expect by name; this
        # catches the rest (a bug, an untyped third-party error), so no transition ends a node.
        except Exception as exc:  # noqa: BLE001
            self.reject("transition", f"{fn.__name__} failed: {exc}")
            return TransitionCallbackReturn.FAILURE

    return wrapper


class HeldPublisher:
    """A publisher that keeps what it is given while no subscriber is matched, for up to
    ``hold_s`` after activation, and sends it in order once one is.

    Where the reader runs on another host it is its own DDS participant, discovered some time
    after this node is up (seconds, under load), and a volatile message sent before the match is
    lost: the first windows of a recording played into a split pipeline were. Holding at each
    producer makes the match that matters (this writer's) the one waited for. A topic may have
    several readers on the other host (the energy aggregator and an operator's monitor), each its
    own participant, matched one after the other: what is held goes out once ``settle_s`` has
    passed with no new match after the first (a reader matched last missed the first windows'
    reports when the first match released them). After that, or once ``hold_s`` has passed, it
    is a plain publisher (what is still held then goes to the readers matched by then, or with
    none, to nobody, counted by ``on_drop``)."""

    CAPACITY = 256  # messages held at most (windows and reports: 40 s of 160 ms windows)
    SETTLE_S = 1.0  # after a match, how long to wait for another before sending what is held

    def __init__(
        self,
        publisher: Any,
        hold_s: float,
        on_drop: Callable[[int], None],
        settle_s: float = SETTLE_S,
    ) -> None:
        self.publisher = publisher
        self.hold_s = hold_s
        self.settle_s = settle_s
        self._matched = 0  # readers matched while holding, and when the last of them did
        self._matched_at = 0.0
        # No more than the writer's history keeps: what is held goes out at once on the match,
        # and a keep-last history would drop the oldest of a larger burst without a count.
        qos = getattr(publisher, "qos_profile", None)
        depth = int(getattr(qos, "depth", 0) or 0)
        self.capacity = min(self.CAPACITY, depth) if depth > 0 else self.CAPACITY
        self._on_drop = on_drop
        self._held: deque[Any] = deque()
        self._deadline: float | None = None  # None: not holding
        # publish() runs on a node's worker or report thread, poll() on its executor.
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:  # topic_name, get_subscription_count, ...
        return getattr(self.publisher, name)

    @property
    def holding(self) -> bool:
        return self._deadline is not None

    def arm(self) -> None:
        """Start holding (on activation), unless a subscriber is matched already."""
        if self.hold_s > 0 and self.publisher.get_subscription_count() == 0:
            self._deadline = time.monotonic() + self.hold_s
            self._matched = 0

    def publish(self, msg: Any) -> None:
        with self._lock:
            if self._deadline is not None and not self._poll():
                if len(self._held) >= self.capacity:
                    self._held.popleft()
                    self._on_drop(1)
                self._held.append(msg)
                return
        self.publisher.publish(msg)

    def poll(self) -> bool:
        """Whether holding is over: readers matched and none more for ``settle_s`` (what was held
        goes out now), or the time is up (what was held goes to the readers matched by then, or
        is dropped)."""
        with self._lock:
            return self._poll()

    def _poll(self) -> bool:
        if self._deadline is None:
            return True
        now = time.monotonic()
        matched = self.publisher.get_subscription_count()
        if matched > self._matched:
            self._matched, self._matched_at = matched, now
        settled = matched > 0 and now - self._matched_at >= self.settle_s
        if settled or (matched > 0 and now >= self._deadline):
            self._deadline = None
            while self._held:
                self.publisher.publish(self._held.popleft())
            return True
        if now >= self._deadline:
            self._deadline = None
            if self._held:
                self._on_drop(len(self._held))
                self._held.clear()
            return True
        return False

    def disarm(self) -> None:
        """Stop holding and forget what is held (deactivation)."""
        with self._lock:
            self._deadline = None
            self._held.clear()


class DeferredPublisher:
    """A publisher that sends each message ``delay_s`` after it is handed over, in order, from a
    thread of its own.

    For what is off the data path (energy reports): sent at once, a report's building and
    publishing, and the aggregator it wakes, compete with the next stage for the CPU at the very
    moment that stage's input arrives (on 2 cores, every data hop was 0.3-0.5 ms slower for it,
    bench/hops.py). :meth:`publish_later` hands over a function that builds the message, so the
    building is off the data path too. ``flush`` sends what waits now (deactivation, shutdown); a
    publish or a build that fails is reported through ``on_error`` and the next one still goes
    out."""

    def __init__(
        self, publisher: Any, delay_s: float, on_error: Callable[[BaseException], None]
    ) -> None:
        self.publisher = publisher
        self.delay_s = delay_s
        self._on_error = on_error
        # (due on the monotonic clock, message or builder, whether it is a builder)
        self._queue: deque[tuple[float, Any, bool]] = deque()
        self._wake = threading.Condition()
        self._send_lock = threading.Lock()  # one sender at a time: the thread, or a flush
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="deferred_publisher", daemon=True)
        self._thread.start()

    def __getattr__(self, name: str) -> Any:  # topic_name, get_subscription_count, ...
        return getattr(self.publisher, name)

    @property
    def pending(self) -> int:
        return len(self._queue)

    def publish(self, msg: Any) -> None:
        self._put(msg, False)

    def publish_later(self, build: Callable[[], Any]) -> None:
        """Send what ``build()`` returns; it is called when the message is due."""
        self._put(build, True)

    def _put(self, item: Any, is_builder: bool) -> None:
        with self._wake:
            if self._closed:
                raise RuntimeError(f"publish on {self.topic_name} after close")
            self._queue.append((time.monotonic() + self.delay_s, item, is_builder))
            self._wake.notify()

    def flush(self) -> None:
        """Send everything that waits, now, in order."""
        with self._send_lock:
            with self._wake:
                waiting = list(self._queue)
                self._queue.clear()
            for _, item, is_builder in waiting:
                self._send(item, is_builder)

    def close(self) -> None:
        """Flush, then stop the thread; further publishes raise."""
        with self._wake:
            self._closed = True
            self._wake.notify()
        self.flush()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=1.0)

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._queue and not self._closed:
                    self._wake.wait()
                if not self._queue:
                    return
                wait = self._queue[0][0] - time.monotonic()
                if wait > 0:
                    self._wake.wait(wait)  # a later publish or close also wakes it: look again
                    continue
            with self._send_lock:
                with self._wake:
                    if not self._queue:  # a flush took it meanwhile
                        continue
                    _, item, is_builder = self._queue.popleft()
                self._send(item, is_builder)

    def _send(self, item: Any, is_builder: bool) -> None:
        try:
            self.publisher.publish(item() if is_builder else item)
        except Exception as exc:  # noqa: BLE001 - reported; the next message still goes out
            self._on_error(exc)


class HsnnNode(LifecycleNode):
    """Lifecycle node with counters that end up on /diagnostics.

    With ``autostart`` (default) the node configures and activates itself, which is what
    ``ros2 run`` users expect; set it false to let a lifecycle manager (e.g. nav2's) drive it.
    """

    MAX_LOGS_PER_KIND_PER_S = 20

    def __init__(self, name: str, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self._defaults: dict[str, Any] = {}
        self._log_budget: dict[str, tuple[float, int]] = {}
        self._managed_publishers: list[Any] = []
        self._active_subscriptions: list[Any] = []
        self._active_timers: list[Any] = []
        self._held_publishers: list[HeldPublisher] = []
        self._deferred_publishers: list[DeferredPublisher] = []
        self.declare_parameter("autostart", True)
        # Where a publisher's readers run on another host (graph.pipeline sets it for a split
        # pipeline): what it publishes before the first match is held this long (HeldPublisher).
        self.declare("hold_unmatched_s", 0.0)
        # Energy reports are sent this long after their window's data message (DeferredPublisher).
        self.declare("report_delay_s", REPORT_DELAY_S)
        self.declare_parameter("diagnostics_period_s", 1.0)
        self.counters: Counter[str] = Counter()
        self.last_errors: dict[str, str] = {}
        self._lock = threading.Lock()
        self.add_on_set_parameters_callback(self._refuse_parameter_changes)
        self.add_pre_set_parameters_callback(self._note_parameter_request)
        self._started = time.monotonic()
        self._steady_clock = Clock(clock_type=ClockType.STEADY_TIME)
        self._diag_pub = self.create_publisher(DiagnosticArray, DIAGNOSTICS, reliable_qos(10))
        period = float(self.get_parameter("diagnostics_period_s").value)
        self._diag_timer = self.steady_timer(max(period, 0.05), self.publish_diagnostics)
        if self.get_parameter("autostart").value:
            # After construction, so subclasses have declared their parameters.
            self._autostart_timer = self.steady_timer(0.0, self._autostart)

    def steady_timer(self, period_s: float, callback: Callable[[], None]) -> Any:
        """A timer on the host's steady clock. Housekeeping (autostart, diagnostics, flushing,
        pacing) must run under ``use_sim_time`` too: a ROS-time timer waits for /clock, which
        may not be published yet, or has stopped at the end of a recording."""
        return self.create_timer(
            period_s, self.guarded(callback, "timer"), clock=self._steady_clock
        )

    def trace(self, point: str, key: int, extra: int = 0) -> None:
        """:func:`hop_trace` for this node (a no-op outside bench/hops.py)."""
        if _HOP_TRACE_DIR is not None:
            hop_trace(self.get_name(), point, key, extra)

    def guarded(self, callback: Callable[..., None], what: str) -> Callable[..., None]:
        """``callback`` that never raises: an exception escaping it (a bug, or bad data no check
        caught) is logged with where it came from, counted as ``errors.internal``, and the node
        serves the next message. Callbacks reject the bad input they know of themselves."""

        @functools.wraps(callback)  # keeps the signature: rclpy inspects it (message info or not)
        def wrapper(*args: Any) -> None:
            try:
                callback(*args)
            except Exception as exc:  # noqa: BLE001 - the point: no message or tick ends a node
                frame = traceback.extract_tb(exc.__traceback__)[-1]
                where = f"{os.path.basename(frame.filename)}:{frame.lineno}"
                name = getattr(callback, "__name__", repr(callback))
                self.reject(
                    "internal", f"{what} {name} failed at {where}: {type(exc).__name__}: {exc}"
                )

        return wrapper

    def declare(self, name: str, default: Any, description: str = "") -> None:
        """Declare a parameter that accepts any type at launch, so that a wrong type (an int for a
        float, a string for a number) is reported by :meth:`param` instead of killing the node.

        Read-only at run time: set at launch (command line, params file, launch parameters), and
        a set_parameters call is refused. DDS does not authenticate callers, and the parameters
        name files, types and devices or are read at configure, where a peer's change would take
        effect on the next (equally unauthenticated) lifecycle transition: docs/security.md."""
        self.declare_parameter(
            name,
            default,
            ParameterDescriptor(description=description, dynamic_typing=True, read_only=True),
        )
        self._defaults[name] = default

    def _refuse_parameter_changes(self, parameters: list[Parameter]) -> SetParametersResult:
        """On-set-parameters guard: once declared, no parameter changes, including those declared
        without a read-only descriptor (autostart, diagnostics_period_s, rclpy's use_sim_time).
        A new declaration passes: rclpy runs this callback for it too."""
        for parameter in parameters:
            if self.has_parameter(parameter.name):
                return SetParametersResult(
                    successful=False,
                    reason=f"parameter {parameter.name!r} of {self.get_fully_qualified_name()} "
                    "is read-only at run time: set it at launch",
                )
        return SetParametersResult(successful=True)

    def _note_parameter_request(self, parameters: list[Parameter]) -> list[Parameter]:
        """Pre-set hook (set_parameters calls only, never declarations): every request is refused
        (read-only descriptor, the guard above, or undeclared), so log and count it as a rejected
        input: a peer trying to change a node shows on /diagnostics."""
        names = ", ".join(parameter.name for parameter in parameters)
        self.reject("set_parameters", f"refused set_parameters({names}): read-only at run time")
        return parameters

    def param(self, name: str) -> Any:
        """The parameter converted to its default's type; ParameterValueError if it cannot be."""
        value = self.get_parameter(name).value
        default = self._defaults.get(name)
        try:
            if isinstance(default, bool):
                if isinstance(value, str) and value.lower() in ("true", "false"):
                    return value.lower() == "true"
                if not isinstance(value, bool):
                    raise TypeError
                return value
            if isinstance(default, int):
                if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                    raise TypeError
                return int(value)
            if isinstance(default, float):
                if isinstance(value, bool):
                    raise TypeError
                return float(value)
            if isinstance(default, str):
                return "" if value is None else str(value)
            if isinstance(default, list):
                return list(value)
        except (TypeError, ValueError):
            raise ParameterValueError(
                f"parameter {name!r} = {value!r} is not a valid {type(default).__name__}"
            ) from None
        return value

    def checked(self, name: str, valid: Callable[[Any], bool], requirement: str) -> Any:
        """The parameter as :meth:`param` gives it if ``valid(value)``, else ParameterValueError
        saying it must be ``requirement``. For on_configure: what a callback uses is read and
        checked there, once, so a bad value fails the transition instead of every callback."""
        value = self.param(name)
        if not valid(value):
            raise ParameterValueError(f"parameter {name!r} = {value!r} must be {requirement}")
        return value

    def _autostart(self) -> None:
        self.destroy_timer(self._autostart_timer)
        if self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
            self.trigger_activate()

    # counting ----
    def count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.counters[key] += n

    def take_window(self, msg: Any, gaps: Any) -> Any:
        """A received TensorList (object or serialized bytes) as ``conversions.TensorListContent``
        with its window id counted in ``gaps`` (a ``SequenceGaps``); None when a field is wrong:
        then it is rejected (counted, logged with the window id it claims), its id still counted
        in ``gaps`` when it has a valid one, as every message that arrived counts."""
        from hsnn_perception.nodes.conversions import (
            MessageFieldError,
            peek_window_id,
            read_tensor_message,
        )

        try:
            window = read_tensor_message(msg)
        except MessageFieldError as exc:
            seen = peek_window_id(msg)
            if seen is not None:
                gaps.see(seen)
            self.reject(exc.reason, f"window {seen}: {exc}")
            return None
        gaps.see(window[0])
        return window

    def reject(self, kind: str, detail: str) -> None:
        """Log bad input with what was wrong, count it, and carry on."""
        with self._lock:
            self.counters[f"errors.{kind}"] += 1
            self.counters["errors"] += 1
            self.last_errors[kind] = detail
        # Every rejection is logged with its reason, up to a rate per kind so that a flood of bad
        # packets cannot drown the log; the counters keep the full count.
        now = time.monotonic()
        window_start, logged = self._log_budget.get(kind, (now, 0))
        if now - window_start > 1.0:
            window_start, logged = now, 0
        if logged < self.MAX_LOGS_PER_KIND_PER_S:
            self.get_logger().warn(f"{kind}: {detail}")
        else:
            self.count(f"suppressed_logs.{kind}")
        self._log_budget[kind] = (window_start, logged + 1)

    def diagnostic_values(self) -> dict[str, str]:
        """Extra key/values for this node's diagnostic status (subclasses add theirs)."""
        return {}

    def publish_diagnostics(self) -> None:
        elapsed = max(time.monotonic() - self._started, 1e-9)
        with self._lock:
            counters = dict(self.counters)
            errors = dict(self.last_errors)
        status = DiagnosticStatus()
        status.name = f"hsnn/{self.get_name()}"
        status.hardware_id = self.get_fully_qualified_name()
        state = self._state_machine.current_state[1] if hasattr(self, "_state_machine") else ""
        if counters.get("errors", 0):
            status.level = DiagnosticStatus.WARN
            status.message = f"{counters['errors']} bad inputs rejected; last: " + "; ".join(
                f"{k}: {v}" for k, v in list(errors.items())[-3:]
            )
        else:
            status.level = DiagnosticStatus.OK
            status.message = "ok"
        values = {"lifecycle_state": str(state), "uptime_s": f"{elapsed:.1f}"}
        for key, value in sorted(counters.items()):
            values[key] = str(value)
            if key.startswith(("received", "published")):
                values[f"{key}.rate_hz"] = f"{value / elapsed:.2f}"
        values.update(self.diagnostic_values())
        status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.status = [status]
        self._diag_pub.publish(msg)

    # lifecycle: entities owned per state ----
    def managed_publisher(
        self,
        msg_type: type,
        topic: str,
        qos: QoSProfile,
        hold: bool = False,
        deferred: bool = False,
    ) -> Any:
        """A lifecycle publisher (silent unless active), destroyed on cleanup. With ``hold``
        (a topic read on another host in a split pipeline) it is a :class:`HeldPublisher` for
        ``hold_unmatched_s``. With ``deferred`` (what is off the data path: energy reports) it
        is a :class:`DeferredPublisher` sending ``report_delay_s`` after each publish (0: at
        once, still from its own thread)."""
        publisher: Any = self.create_lifecycle_publisher(msg_type, topic, qos)
        self._managed_publishers.append(publisher)
        hold_s = float(self.param("hold_unmatched_s")) if hold else 0.0
        if hold_s > 0 and math.isfinite(hold_s):  # a bad value holds nothing
            publisher = HeldPublisher(
                publisher, hold_s, lambda n: self.count("dropped.unmatched", n)
            )
            self._held_publishers.append(publisher)
        if deferred:
            delay_s = float(self.param("report_delay_s"))
            if not (delay_s > 0 and math.isfinite(delay_s)):  # a bad value sends at once
                delay_s = 0.0
            publisher = DeferredPublisher(
                publisher, min(delay_s, MAX_REPORT_DELAY_S), self._deferred_failed
            )
            self._deferred_publishers.append(publisher)
        return publisher

    def energy_publisher(self) -> Any:
        """The stage's publisher of per-window energy reports on ``energy``: reliable (the
        aggregator joins every stage's report of a window), held in a split pipeline, and sent
        after the window's data message rather than beside it (``report_delay_s``)."""
        from hsnn_perception.msg import EnergyReport

        return self.managed_publisher(
            EnergyReport, ENERGY, reliable_qos(100), hold=True, deferred=True
        )

    def publish_energy(
        self,
        publisher: Any,
        figure: Any,
        window_id: int,
        window_start_us: int,
        host_latency_s: float | None = None,
    ) -> None:
        """The stage's energy report of a window on ``publisher`` (:meth:`energy_publisher`):
        stamped now (ROS time, and the host time at which the stage finished the window), built
        and sent ``report_delay_s`` later by the report thread."""
        from hsnn_perception.nodes.conversions import energy_report, ns_to_time

        stamp_ns = self.get_clock().now().nanoseconds
        host_ns = time.time_ns()
        publisher.publish_later(
            lambda: energy_report(
                figure,
                window_id,
                window_start_us,
                ns_to_time(stamp_ns),
                host_latency_s=host_latency_s,
                host_ns=host_ns,
            )
        )

    def _deferred_failed(self, exc: BaseException) -> None:
        self.reject("internal", f"deferred publish failed: {type(exc).__name__}: {exc}")

    def _flush_deferred(self) -> None:
        for deferred in self._deferred_publishers:
            deferred.flush()

    def _close_deferred(self) -> None:
        """Send what the deferred publishers hold and stop their threads (before the publishers
        go: cleanup, or the node's destruction)."""
        for deferred in self._deferred_publishers:
            deferred.close()
        self._deferred_publishers.clear()

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        for held in self._held_publishers:
            held.arm()
        if any(held.holding for held in self._held_publishers):
            self.active_timer(0.05, self._poll_held)
        return super().on_activate(state)

    def _poll_held(self) -> None:
        for held in self._held_publishers:
            held.poll()

    def active_subscription(
        self,
        msg_type: type,
        topic: str,
        callback: Callable[[Any], None],
        qos: QoSProfile,
        raw: bool = False,
    ) -> Any:
        """A subscription that lives while the node is active (create it in on_activate). With
        ``raw`` the callback gets the serialized message (bytes)."""
        guarded = self.guarded(callback, f"subscription {topic}")
        if _HOP_TRACE_DIR is not None:
            guarded = self._traced(guarded, topic)
        subscription = self.create_subscription(msg_type, topic, guarded, qos, raw=raw)
        self._active_subscriptions.append(subscription)
        return subscription

    def _traced(self, callback: Callable[[Any], None], topic: str) -> Callable[[Any], None]:
        """``callback`` recording its entry and exit (bench/hops.py)."""

        def traced(msg: Any) -> None:
            try:
                key, extra = _trace_key(msg)
            except (AttributeError, TypeError, ValueError):
                key, extra = -1, 0
            self.trace(f"in:{topic}", key, extra)
            callback(msg)
            self.trace(f"done:{topic}", key, extra)

        return traced

    def active_timer(self, period_s: float, callback: Callable[[], None]) -> Any:
        """A steady-clock timer (:meth:`steady_timer`) that lives while the node is active
        (create it in on_activate): destroyed on deactivate."""
        timer = self.steady_timer(period_s, callback)
        self._active_timers.append(timer)
        return timer

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self._flush_deferred()  # while the publishers are still active
        for held in self._held_publishers:
            held.disarm()
        for timer in self._active_timers:
            self.destroy_timer(timer)
        self._active_timers.clear()
        for subscription in self._active_subscriptions:
            self.destroy_subscription(subscription)
        self._active_subscriptions.clear()
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self._close_deferred()
        for publisher in self._managed_publishers:
            self.destroy_lifecycle_publisher(publisher)
        self._managed_publishers.clear()
        self._held_publishers.clear()
        return TransitionCallbackReturn.SUCCESS

    def destroy_node(self) -> None:
        # A stop while active: what still waits is sent while the publishers exist.
        self._close_deferred()
        super().destroy_node()

    def on_error(self, state: State) -> TransitionCallbackReturn:
        self.get_logger().error(f"lifecycle error in state {state.label}")
        return TransitionCallbackReturn.SUCCESS


# A node asked to stop (SIGINT/SIGTERM/SIGHUP) finishes its clean shutdown within this time or is
# ended anyway, so that `ros2 launch` never has to escalate to SIGKILL (it waits 5 s for SIGINT).
SHUTDOWN_GRACE_S = 2.0
# Last resort where the interpreter cannot run the watchdog (a C extension holding the GIL): a C
# thread dumps the stacks and exits with status 1, still before launch's SIGTERM/SIGKILL.
HARD_EXIT_S = 2.8
_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGINT) -> None:
    """Linux: have the kernel send ``sig`` to this process when its parent dies, so that no node
    outlives its launcher. SIGINT by default: the node's own bounded shutdown
    (:class:`ShutdownGuard`) then runs as on Ctrl-C, deactivating the node, sending what it holds
    and deleting its DDS participant (its /dev/shm file). That is what a stopped ``ros2 launch``
    leaves its nodes to: launch dies at once on SIGTERM (``docker stop``, ``kill``) without
    signalling them. With SIGKILL here they died mid-work and each left its shared-memory file.
    A node inside a long C call that holds the GIL (nothing of ours does once started) handles the
    signal when the call returns. Call it after ``SHUTDOWN.install()``. A no-op where prctl is not
    available."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent died before prctl took effect
        os.kill(os.getpid(), sig)


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class ShutdownGuard:
    """Turns SIGINT, SIGTERM and SIGHUP into a bounded shutdown.

    The handler only marks the request: the spin loop (:func:`spin_nodes`) sees it within one
    short wait and the nodes are destroyed in order. rclpy's own signal handling is not used: it
    shuts the context down under running callbacks (publishes then fail in a loop) and under a
    node still being constructed. A watchdog ends the process with status 0 if the clean shutdown
    has not finished within SHUTDOWN_GRACE_S (a callback still running: a model warming up, a
    window being computed).
    """

    def __init__(self, grace_s: float = SHUTDOWN_GRACE_S) -> None:
        self.grace_s = grace_s
        self.requested = threading.Event()
        self.done = threading.Event()
        self._signal: int | None = None
        self._installed = False

    def install(self) -> ShutdownGuard:
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._on_signal)
        self._installed = True
        return self

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self.requested.is_set():
            return  # a terminal's Ctrl-C reaches a node twice: directly and through launch
        self._signal = signum
        self.requested.set()
        faulthandler.dump_traceback_later(HARD_EXIT_S, exit=True)
        threading.Thread(target=self._watchdog, name="shutdown_watchdog", daemon=True).start()

    def _watchdog(self) -> None:
        if not self.done.wait(self.grace_s):
            try:
                sys.stderr.write(
                    f"[hsnn] clean shutdown not finished {self.grace_s:g} s after signal "
                    f"{self._signal}: exiting now\n"
                )
                sys.stderr.flush()
            except (OSError, ValueError):  # no reader left (a launcher that died): exit anyway
                pass
            os._exit(0)

    def finished(self) -> None:
        """The clean shutdown finished: the watchdog stands down, and further stop signals are
        ignored. What is left is the interpreter's teardown, which puts Python-level handlers back
        to SIG_DFL; a repeated request landing there (a terminal's Ctrl-C reaches a node directly
        and again through launch, `timeout` signals the whole group) would turn a clean exit into
        death by that signal (exit code -2 in launch's log). SIG_IGN survives the teardown."""
        self.done.set()
        faulthandler.cancel_dump_traceback_later()
        if self._installed and threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                signal.signal(sig, signal.SIG_IGN)


SHUTDOWN = ShutdownGuard()


EXECUTORS = ("events", "single")
GIL_SWITCH_S = 0.001


def make_executor() -> Any:
    """The executor a node spins in: the SingleThreadedExecutor, or with ``HSNN_EXECUTOR=events``
    rclpy's EventsExecutor (C++; rclpy.experimental, Kilted and newer; the single one where rclpy
    has none). The SingleThreadedExecutor walks every entity of its nodes in Python on each
    wake-up (lifecycle and parameter services, timers, QoS event handlers), which made each hop
    of the pipeline 1.5-3.5x a bare rclpy hop; the EventsExecutor brings the events hop to the
    bare one (docs/latency.md, bench/hops.py). It is not the default: it is experimental in rclpy,
    and once, in a fresh-clone CI run, the lifecycle manager segfaulted in destroy_node after a
    Ctrl-C that came while its service calls were in flight (not reproduced, not explained)."""
    from rclpy.executors import SingleThreadedExecutor

    choice = os.environ.get("HSNN_EXECUTOR", "single")
    if choice not in EXECUTORS:
        raise ValueError(f"HSNN_EXECUTOR={choice!r}; expected one of {EXECUTORS}")
    if choice == "events":
        try:
            from rclpy.experimental import EventsExecutor
        except ImportError:  # rclpy before Kilted (Humble, Jazzy)
            return SingleThreadedExecutor()
        return EventsExecutor()
    return SingleThreadedExecutor()


def _spin(executor: Any, running: Callable[[], bool]) -> None:
    """Spin ``executor`` while ``running()``; never raises for the ways a spin ends (a signal,
    the context shut down under a callback)."""
    from rclpy.executors import ExternalShutdownException

    # Short waits, so that a stop request is seen promptly.
    while rclpy.ok() and running():
        try:
            executor.spin_once(timeout_sec=0.1)
        except (KeyboardInterrupt, ExternalShutdownException):
            break
        except Exception:  # noqa: BLE001 - the last line of defence: a node never dies of one
            if not rclpy.ok():  # e.g. a take on a handle that the shutdown invalidated
                break
            sys.stderr.write("[hsnn] unexpected error in a callback, still serving:\n")
            traceback.print_exc(file=sys.stderr)


def spin_nodes(
    nodes: list[Any], until: Callable[[], bool] | None = None, *, thread_per_node: bool = False
) -> None:
    """Spin ``nodes`` until a signal, rclpy shutdown or ``until()``; never raises for the ways a
    spin ends. One executor for all of them, or with ``thread_per_node`` an executor and a thread
    each (the composed runner: a message from one stage to the next then never waits behind
    another node's callback, such as the driver rendering a synthetic gesture or the SNN node
    binning a burst of packets)."""

    def running() -> bool:
        return not SHUTDOWN.requested.is_set() and (until is None or not until())

    if not thread_per_node or len(nodes) < 2:
        executor = make_executor()
        for node in nodes:
            executor.add_node(node)
        try:
            _spin(executor, running)
        finally:
            executor.shutdown(timeout_sec=0.5)
        return
    halt = threading.Event()
    executors, threads = [], []
    for node in nodes:
        executor = make_executor()
        executor.add_node(node)
        executors.append(executor)
        threads.append(
            threading.Thread(
                target=_spin,
                args=(executor, lambda: not halt.is_set()),
                name=f"spin_{node.get_name()}",
                daemon=True,  # a thread stuck in a callback cannot hold the process up
            )
        )
    try:
        for thread in threads:
            thread.start()
        while rclpy.ok() and running() and any(t.is_alive() for t in threads):
            time.sleep(0.05)
    finally:
        halt.set()
        # One deadline for all: a callback still running holds up its own thread only.
        deadline = time.monotonic() + 0.5
        for thread in threads:
            thread.join(max(deadline - time.monotonic(), 0.0))
        for executor in executors:
            executor.shutdown(timeout_sec=max(deadline - time.monotonic(), 0.0))


def destroy_nodes(nodes: list[Any]) -> None:
    """Destroy ``nodes`` (their lifecycle shutdown first), then shut rclpy down."""
    for node in nodes:
        try:
            node.destroy_node()
        except Exception as exc:  # one node failing to clean up must not keep the others
            sys.stderr.write(f"[hsnn] destroying {node.get_name()}: {exc}\n")
    rclpy.try_shutdown()


# Fast DDS transports for a process that publishes event streams (fastdds_event_streams.xml).
FASTDDS_EVENT_STREAMS = Path(__file__).with_name("fastdds_event_streams.xml")
FASTDDS_CONFIGURATION = (
    "FASTDDS_DEFAULT_PROFILES_FILE",
    "FASTRTPS_DEFAULT_PROFILES_FILE",
    "FASTDDS_BUILTIN_TRANSPORTS",
)


def event_stream_transport(env: MutableMapping[str, str] = os.environ) -> str | None:
    """Give Fast DDS the event-stream profile (a larger shared-memory segment) in ``env``, the
    environment of a process about to create its participant, and return the file; None where
    the environment already configures Fast DDS (the user's choice wins), another RMW is chosen,
    or ``HSNN_FASTDDS_PROFILE`` is set empty. ``HSNN_FASTDDS_PROFILE=FILE`` uses FILE instead."""
    if not env.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp").startswith("rmw_fastrtps"):
        return None
    if any(env.get(name) for name in FASTDDS_CONFIGURATION):
        return None
    profile = env.get("HSNN_FASTDDS_PROFILE", str(FASTDDS_EVENT_STREAMS))
    if not profile:
        return None
    env["FASTDDS_DEFAULT_PROFILES_FILE"] = profile
    return profile


def run_nodes(
    build: Callable[[], list[Any]],
    args: list[str] | None = None,
    until: Callable[[], bool] | None = None,
    *,
    thread_per_node: bool = False,
    event_streams: bool = False,
) -> int:
    """Run the nodes ``build()`` makes (:func:`spin_nodes`) until a signal, shutdown or
    ``until()``; exit within SHUTDOWN_GRACE_S of a signal with status 0; never outlive the parent
    process. The ``main`` of every node executable and of the composed runner. A process that
    publishes event streams (``event_streams``) gets :func:`event_stream_transport`."""
    from rclpy.signals import SignalHandlerOptions

    SHUTDOWN.install()
    die_with_parent()  # after: the parent-death signal is a stop request like any other
    # A thread that a message wakes (a stage's executor, the SNN node's publishing worker) waits
    # for the GIL up to this long while another thread of the process computes: 1 ms, not
    # Python's 5 ms, so a hop does not wait on another thread's work.
    sys.setswitchinterval(GIL_SWITCH_S)
    if event_streams:
        event_stream_transport()  # before rclpy creates the process's participant
    nodes: list[Any] = []
    try:
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
        nodes = build()
        spin_nodes(nodes, until, thread_per_node=thread_per_node)
    finally:
        destroy_nodes(nodes)
        SHUTDOWN.finished()
    return 0


def run_node(
    node_class: type[Any], args: list[str] | None = None, *, event_streams: bool = False
) -> int:
    """``main`` of a node executable (see :func:`run_nodes`)."""
    return run_nodes(lambda: [node_class()], args, event_streams=event_streams)
