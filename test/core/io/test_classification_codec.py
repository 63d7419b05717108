"""core.io.classification_codec against rclpy's own serializer and deserializer of the generated
message: the bytes the classifier publishes are those rclpy writes for the same fields (up to the
padding, which rclpy does not clear)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from rclpy.serialization import deserialize_message, serialize_message

from hsnn_perception.core.io.classification_codec import encode_classification
from hsnn_perception.msg import Classification

times = st.tuples(st.integers(-(1 << 31), (1 << 31) - 1), st.integers(0, (1 << 32) - 1))
floats32 = st.floats(width=32, allow_nan=False)
# A CDR string ends at its first zero: neither side carries one inside (the labels never do).
texts = st.text(
    alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=20
)


@settings(max_examples=300, deadline=None)
@given(
    stamp=times,
    frame_id=texts,
    window_id=st.integers(0, (1 << 64) - 1),
    window_stamp=times,
    window_duration=times,
    class_id=st.integers(-(1 << 31), (1 << 31) - 1),
    label=texts,
    score=floats32,
    scores=st.lists(floats32, max_size=13),
)
def test_bytes_equal_rclpy_serializing_the_message(
    stamp, frame_id, window_id, window_stamp, window_duration, class_id, label, score, scores
):
    data = encode_classification(
        stamp=stamp,
        frame_id=frame_id,
        window_id=window_id,
        window_stamp=window_stamp,
        window_duration=window_duration,
        class_id=class_id,
        label=label,
        score=score,
        scores=np.array(scores, dtype=np.float32),
    )
    msg = Classification()
    msg.header.stamp.sec, msg.header.stamp.nanosec = stamp
    msg.header.frame_id = frame_id
    msg.window_id = window_id
    msg.window_stamp.sec, msg.window_stamp.nanosec = window_stamp
    msg.window_duration.sec, msg.window_duration.nanosec = window_duration
    msg.class_id = class_id
    msg.label = label
    msg.score = score
    msg.scores = scores
    theirs = serialize_message(msg)
    assert deserialize_message(data, Classification) == msg
    # Same layout; rclpy leaves its alignment padding as it finds it in memory, ours is zeros.
    assert len(data) == len(theirs)
    assert all(ours == 0 for ours, rcl in zip(data, theirs, strict=True) if ours != rcl)


def test_scores_given_as_a_list_or_float64_are_written_as_float32():
    fields = dict(
        stamp=(1, 2),
        frame_id="dvs",
        window_id=3,
        window_stamp=(1, 2),
        window_duration=(0, 160_000_000),
        class_id=1,
        label="hand_clap",
        score=0.5,
    )
    as_list = encode_classification(**fields, scores=[0.25, 0.5])
    as_f64 = encode_classification(**fields, scores=np.array([0.25, 0.5]))
    assert as_list == as_f64
    assert list(deserialize_message(as_list, Classification).scores) == [0.25, 0.5]
