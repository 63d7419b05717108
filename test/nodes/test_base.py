"""nodes.base.HeldPublisher alone (a stand-in publisher isolates the unit; the DDS behaviour is
test_event_driver.py's held-reports test) and the event-stream transport's choice of environment
(the process it configures: test_event_driver.py's shared-memory segment test)."""

from __future__ import annotations

import time

from hsnn_perception.nodes.base import FASTDDS_EVENT_STREAMS, HeldPublisher, event_stream_transport


class Recorder:
    """What a publisher was given, and how many subscribers it has matched."""

    topic_name = "/t"

    def __init__(self) -> None:
        self.sent: list[int] = []
        self.matched = 0

    def publish(self, msg: int) -> None:
        self.sent.append(msg)

    def get_subscription_count(self) -> int:
        return self.matched


def armed(pub: Recorder | None = None, hold_s: float = 60.0):
    """(publisher, HeldPublisher on it, activated, list of what it counted as dropped)."""
    pub = Recorder() if pub is None else pub
    dropped: list[int] = []
    held = HeldPublisher(pub, hold_s, dropped.append)
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
