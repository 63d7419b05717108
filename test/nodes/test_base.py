"""nodes.base.HeldPublisher and DeferredPublisher alone (a stand-in publisher isolates the unit;
the DDS behaviour is test_event_driver.py's held-reports and deferred-reports tests) and the
event-stream transport's choice of environment (the process it configures:
test_event_driver.py's shared-memory segment test)."""

from __future__ import annotations

import threading
import time

import pytest

from hsnn_perception.nodes.base import (
    FASTDDS_EVENT_STREAMS,
    MAX_REPORT_DELAY_S,
    DeferredPublisher,
    HeldPublisher,
    HsnnNode,
    event_stream_transport,
)


class Recorder:
    """What a publisher was given, and how many subscribers it has matched."""

    topic_name = "/t"

    def __init__(self) -> None:
        self.sent: list[int] = []
        self.sent_at: list[float] = []
        self.matched = 0

    def publish(self, msg: int) -> None:
        self.sent.append(msg)
        self.sent_at.append(time.monotonic())

    def get_subscription_count(self) -> int:
        return self.matched


def armed(pub: Recorder | None = None, hold_s: float = 60.0, settle_s: float = 0.0):
    """(publisher, HeldPublisher on it, activated, list of what it counted as dropped)."""
    pub = Recorder() if pub is None else pub
    dropped: list[int] = []
    held = HeldPublisher(pub, hold_s, dropped.append, settle_s=settle_s)
    held.arm()
    return pub, held, dropped


def test_held_until_a_subscriber_matches_then_sent_in_order():
    pub, held, dropped = armed()
    for k in range(3):
        held.publish(k)
    assert pub.sent == [] and held.holding
    assert held.topic_name == "/t"  # the rest of the publisher shows through
    pub.matched = 1
    held.poll()
    assert pub.sent == [0, 1, 2] and not held.holding
    held.publish(3)
    assert pub.sent == [0, 1, 2, 3] and dropped == []


def test_what_is_held_waits_for_the_readers_that_match_soon_after_the_first():
    pub, held, _ = armed(settle_s=0.2)
    held.publish(0)
    pub.matched = 1  # the aggregator on the other host
    assert not held.poll() and held.publish(1) is None and pub.sent == []
    time.sleep(0.12)
    pub.matched = 2  # an operator's monitor there, discovered a little later
    assert not held.poll()
    time.sleep(0.12)  # 0.24 s after the first match, 0.12 s after the second
    assert not held.poll() and pub.sent == []
    time.sleep(0.1)
    assert held.poll()
    assert pub.sent == [0, 1] and not held.holding
    held.publish(2)
    assert pub.sent == [0, 1, 2]


def test_at_the_end_of_the_hold_the_matched_readers_get_what_is_held():
    pub, held, dropped = armed(hold_s=0.1, settle_s=60.0)
    held.publish(0)
    pub.matched = 1
    assert not held.poll()
    time.sleep(0.12)
    assert held.poll()
    assert pub.sent == [0] and dropped == []


def test_a_match_at_publish_time_sends_what_was_held_first():
    pub, held, _ = armed()
    held.publish("a")
    pub.matched = 1
    held.publish("b")
    assert pub.sent == ["a", "b"]


def test_nothing_held_when_matched_at_activation_or_hold_is_zero():
    matched = Recorder()
    matched.matched = 1
    assert not armed(matched)[1].holding
    idle, never, _ = armed(hold_s=0.0)
    never.publish(1)
    assert idle.sent == [1]


def test_after_the_hold_what_is_held_is_counted_dropped_and_publishing_goes_on():
    pub, held, dropped = armed(hold_s=0.05)
    held.publish(1)
    held.publish(2)
    time.sleep(0.06)
    assert held.poll()
    assert dropped == [2] and not held.holding
    held.publish(3)
    assert pub.sent == [3]


def test_at_capacity_the_oldest_is_dropped():
    pub, held, dropped = armed()
    for k in range(HeldPublisher.CAPACITY + 2):
        held.publish(k)
    assert sum(dropped) == 2
    pub.matched = 1
    held.poll()
    assert pub.sent == list(range(2, HeldPublisher.CAPACITY + 2))


def test_no_more_is_held_than_the_writers_history_keeps():
    class Keeps20(Recorder):
        class qos_profile:  # noqa: N801 - the attribute rclpy's Publisher has
            depth = 20

    pub, held, dropped = armed(Keeps20())
    for k in range(25):
        held.publish(k)
    assert held.capacity == 20 and sum(dropped) == 5
    pub.matched = 1
    held.poll()
    assert pub.sent == list(range(5, 25))


def test_deactivation_forgets_what_is_held():
    pub, held, _ = armed()
    held.publish(1)
    held.disarm()
    pub.matched = 1
    held.poll()
    assert pub.sent == [] and not held.holding


def wait_until(condition, timeout_s: float = 5.0) -> bool:
    end = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > end:
            return False
        time.sleep(0.001)
    return True


def deferred(delay_s: float, pub: Recorder | None = None):
    """(publisher, DeferredPublisher on it, list of the errors it reported)."""
    pub = Recorder() if pub is None else pub
    errors: list[BaseException] = []
    return pub, DeferredPublisher(pub, delay_s, errors.append), errors


def test_deferred_messages_go_out_after_the_delay_in_order():
    pub, later, errors = deferred(0.05)
    try:
        handed = []
        for k in range(5):
            handed.append(time.monotonic())
            later.publish(k)
        assert pub.sent == []  # not at once
        assert wait_until(lambda: len(pub.sent) == 5)
        assert pub.sent == [0, 1, 2, 3, 4]
        assert all(sent - at >= 0.05 for sent, at in zip(pub.sent_at, handed, strict=True))
        assert later.pending == 0 and errors == []
        assert later.topic_name == "/t"  # the rest is the publisher's
    finally:
        later.close()


def test_flush_sends_what_waits_now_and_the_thread_sends_it_only_once():
    pub, later, _ = deferred(60.0)
    try:
        later.publish(1)
        later.publish(2)
        later.flush()
        assert pub.sent == [1, 2]
        later.publish(3)
        later.flush()
        time.sleep(0.05)
        assert pub.sent == [1, 2, 3]
    finally:
        later.close()


def test_close_sends_what_waits_stops_the_thread_and_refuses_more():
    pub, later, _ = deferred(60.0)
    later.publish(7)
    later.close()
    assert pub.sent == [7]
    assert not later._thread.is_alive()
    with pytest.raises(RuntimeError, match="after close"):
        later.publish(8)


def test_a_failing_publish_is_reported_and_the_next_message_still_goes_out():
    class FailsOnce(Recorder):
        def publish(self, msg: int) -> None:
            if msg == 0:
                raise RuntimeError("context is shut down")
            super().publish(msg)

    pub, later, errors = deferred(0.001, FailsOnce())
    try:
        later.publish(0)
        later.publish(1)
        assert wait_until(lambda: pub.sent == [1])
        assert [str(e) for e in errors] == ["context is shut down"]
    finally:
        later.close()


def test_a_builder_is_called_when_due_and_its_failure_is_reported():
    pub, later, errors = deferred(0.05)
    try:
        built_at: list[float] = []

        def build() -> int:
            built_at.append(time.monotonic())
            return 42

        def broken() -> int:
            raise ValueError("window id -1 does not fit uint64")

        handed = time.monotonic()
        later.publish_later(build)
        later.publish_later(broken)
        later.publish(43)
        assert built_at == []  # not built by the caller
        assert wait_until(lambda: pub.sent == [42, 43])
        assert built_at[0] - handed >= 0.05
        assert [str(e) for e in errors] == ["window id -1 does not fit uint64"]
        later.publish_later(build)
        later.flush()  # a flush builds what waits, too
        assert pub.sent == [42, 43, 42]
    finally:
        later.close()


def test_publishes_from_several_threads_all_go_out_once():
    pub, later, _ = deferred(0.002)
    try:

        def send(base: int) -> None:
            for k in range(200):
                later.publish(base + k)

        threads = [threading.Thread(target=send, args=(b,)) for b in (0, 1000, 2000)]
        for t in threads:
            t.start()
        flusher_done = threading.Event()

        def flush_often() -> None:
            while not flusher_done.is_set():
                later.flush()
                time.sleep(0.001)

        flusher = threading.Thread(target=flush_often)
        flusher.start()
        for t in threads:
            t.join()
        assert wait_until(lambda: len(pub.sent) == 600)
        flusher_done.set()
        flusher.join()
        assert sorted(pub.sent) == [b + k for b in (0, 1000, 2000) for k in range(200)]
        for base in (0, 1000, 2000):  # each thread's messages in its order
            mine = [m for m in pub.sent if base <= m < base + 1000]
            assert mine == sorted(mine)
    finally:
        later.close()


@pytest.mark.parametrize(
    ("value", "delay_s"),
    [(0.005, 0.005), (0.0, 0.0), (-1.0, 0.0), (float("nan"), 0.0), (600.0, MAX_REPORT_DELAY_S)],
)
def test_report_delay_s_bad_values_send_at_once_and_long_ones_are_bounded(value, delay_s):
    import rclpy
    from rclpy.parameter import Parameter

    rclpy.init()
    try:
        node = HsnnNode(
            "delay_check",
            parameter_overrides=[
                Parameter("autostart", value=False),
                Parameter("report_delay_s", value=value),
            ],
        )
        try:
            reports = node.energy_publisher()
            assert isinstance(reports, DeferredPublisher)
            assert reports.delay_s == delay_s
        finally:
            node.destroy_node()
    finally:
        rclpy.try_shutdown()


def test_the_event_stream_profile_is_used_where_nothing_configures_fast_dds():
    env: dict[str, str] = {}
    assert event_stream_transport(env) == str(FASTDDS_EVENT_STREAMS)
    assert env["FASTDDS_DEFAULT_PROFILES_FILE"] == str(FASTDDS_EVENT_STREAMS)
    assert FASTDDS_EVENT_STREAMS.is_file()
    text = FASTDDS_EVENT_STREAMS.read_text()
    assert "<segment_size>8388608</segment_size>" in text


def test_the_users_fast_dds_configuration_wins():
    for name in (
        "FASTDDS_DEFAULT_PROFILES_FILE",
        "FASTRTPS_DEFAULT_PROFILES_FILE",
        "FASTDDS_BUILTIN_TRANSPORTS",
    ):
        env = {name: "theirs"}
        assert event_stream_transport(env) is None
        assert env == {name: "theirs"}


def test_the_profile_can_be_chosen_or_switched_off_and_other_rmws_are_left_alone():
    env = {"HSNN_FASTDDS_PROFILE": "/etc/mine.xml"}
    assert event_stream_transport(env) == "/etc/mine.xml"
    assert env["FASTDDS_DEFAULT_PROFILES_FILE"] == "/etc/mine.xml"
    off = {"HSNN_FASTDDS_PROFILE": ""}
    assert event_stream_transport(off) is None and "FASTDDS_DEFAULT_PROFILES_FILE" not in off
    cyclone = {"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"}
    assert event_stream_transport(cyclone) is None and len(cyclone) == 1
