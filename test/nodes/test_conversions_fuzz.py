"""Fuzz of the message conversions (no DDS): any TensorList gives its window, or a
MessageFieldError naming a counted reason; any EnergyReport gives a figure or an EnergyError; any
figure becomes a message (op counts saturate at 2^64 - 1) or a MessageFieldError."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rclpy.serialization import deserialize_message, serialize_message

from hsnn_perception.core.energy.figure import SOURCES, EnergyError, EnergyFigure, total
from hsnn_perception.msg import EnergyReport, Tensor, TensorList, TensorShape
from hsnn_perception.nodes.conversions import (
    UINT64_MAX,
    WINDOW_ID_MAX,
    MessageFieldError,
    energy_report,
    figure_from_report,
    make_tensor_list,
    peek_window_id,
    read_tensor_list,
    read_tensor_message,
    tensor_list_bytes,
    us_to_time,
)

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
REASONS = {"tensor", "window_id", "stamp"}
int32 = st.integers(-(1 << 31), (1 << 31) - 1)
uint32 = st.integers(0, (1 << 32) - 1)
uint64 = st.integers(0, UINT64_MAX)
floats = st.floats(allow_nan=True, allow_infinity=True)


@st.composite
def tensors(draw) -> Tensor:
    dims = draw(st.lists(uint32, max_size=4))  # TensorShape.dims is uint32[] (Isaac ROS)
    name = draw(st.sampled_from(["window_id", "spikes", "frames", ""]) | st.text(max_size=4))
    data = draw(st.binary(max_size=64))
    if draw(st.booleans()):  # often a consistent one, so the checks after the sizes are reached
        dtype = np.dtype(draw(st.sampled_from(["i1", "u1", "i8", "u8", "f4", "f8"])))
        values = draw(st.lists(st.integers(-(1 << 63), UINT64_MAX), min_size=1, max_size=3))
        array = np.array([v % (1 << (8 * dtype.itemsize)) for v in values], dtype=np.uint64)
        array = array.astype(dtype)
        dims, data = [len(values)], array.tobytes()
        code = {"i1": 1, "u1": 2, "i8": 7, "u8": 8, "f4": 9, "f8": 10}[dtype.str[1:]]
    else:
        code = draw(st.integers(-(1 << 31), (1 << 31) - 1))
    rank = len(dims) if draw(st.booleans()) else draw(st.integers(0, 255))  # uint8
    return Tensor(
        name=name,
        shape=TensorShape(rank=rank, dims=dims),
        data_type=code,
        strides=draw(st.lists(uint64, max_size=3)),
        data=data,
    )


@FUZZ
@given(items=st.lists(tensors(), max_size=5), sec=int32, nanosec=uint32)
def test_read_random_tensor_lists(items, sec, nanosec):
    msg = TensorList()
    msg.header.stamp.sec, msg.header.stamp.nanosec = sec, nanosec
    msg.tensors = items
    peeked = peek_window_id(msg)  # never raises
    try:
        window_id, start_us, arrays = read_tensor_list(msg)
    except MessageFieldError as exc:
        assert exc.reason in REASONS and str(exc)
        return
    assert 0 <= window_id <= WINDOW_ID_MAX and peeked == window_id
    us_to_time(start_us)  # a window start read from a message can be sent on
    assert "window_id" not in arrays


@FUZZ
@given(items=st.lists(tensors(), max_size=5), sec=int32, nanosec=uint32, frame=st.text(max_size=5))
def test_serialized_tensor_lists_read_as_the_messages(items, sec, nanosec, frame):
    """The nodes read snn/spikes and tensors from the bytes (a raw subscription): the same
    window, arrays, frame and rejection reason as from the message rclpy would have built."""
    msg = TensorList()
    msg.header.stamp.sec, msg.header.stamp.nanosec = sec, nanosec
    msg.header.frame_id = frame
    msg.tensors = items
    data = serialize_message(msg)
    assert peek_window_id(data) == peek_window_id(msg)
    try:
        expected = read_tensor_message(msg)
    except MessageFieldError as exc:
        with pytest.raises(MessageFieldError) as raised:
            read_tensor_message(data)
        assert raised.value.reason == exc.reason
        return
    got = read_tensor_message(data)
    assert got[:3] == expected[:3] and got.arrays.keys() == expected.arrays.keys()
    for name, array in expected.arrays.items():
        assert got.arrays[name].dtype == array.dtype
        np.testing.assert_array_equal(got.arrays[name], array)


@FUZZ
@given(data=st.binary(max_size=96), cut=st.integers(0, 200))
def test_any_bytes_are_read_or_refused_with_a_reason(data, cut):
    """A raw subscription takes whatever a peer sent under the type: garbage, truncated or
    big-endian bytes give a counted reason, never another exception."""
    good = tensor_list_bytes(5, 1_000, "dvs", {"x": np.arange(3, dtype=np.float32)})
    for candidate in (data, good[:cut], b"\x00\x01\x00\x00" + data, b"\x01\x00" + data[2:]):
        peek_window_id(candidate)  # never raises
        try:
            read_tensor_message(candidate)
        except MessageFieldError as exc:
            assert exc.reason in REASONS


def test_published_bytes_are_the_message():
    tensors = {"spikes": np.eye(3, dtype=np.uint8)[:, :1], "f": np.ones((2, 2), ">f4")}
    data = tensor_list_bytes(7, 2_500_000, "dvs", tensors)
    assert deserialize_message(data, TensorList) == make_tensor_list(7, 2_500_000, "dvs", tensors)
    window_id, start_us, frame_id, arrays = read_tensor_message(data)
    assert (window_id, start_us, frame_id) == (7, 2_500_000, "dvs")
    for name, array in tensors.items():
        np.testing.assert_array_equal(arrays[name], array)


@FUZZ
@given(window_id=st.integers(-(1 << 70), 1 << 70))
def test_window_id_range(window_id):
    msg = make_tensor_list(0, 0, "", {"x": np.zeros(2, np.float32)})
    msg.tensors[-1].data = np.array([window_id % (1 << 64)], np.uint64).tobytes()
    msg.tensors[-1].data_type = 8  # uint64: ids at and past 2^63 are refused, not wrapped
    try:
        got, _, _ = read_tensor_list(msg)
    except MessageFieldError as exc:
        assert exc.reason == "window_id" and window_id % (1 << 64) > WINDOW_ID_MAX
        return
    assert got == window_id % (1 << 64)


def test_missing_and_float_window_ids_are_refused():
    msg = make_tensor_list(3, 0, "", {"x": np.zeros(2, np.float32)})
    msg.tensors.pop()
    for window in (None, np.array([3.0]), np.array([1, 2]), np.array([-1])):
        if window is not None:
            msg.tensors = (
                msg.tensors[:1] + make_tensor_list(0, 0, "", {"window_id": window}).tensors[:1]
            )
        try:
            read_tensor_list(msg)
        except MessageFieldError as exc:
            assert exc.reason == "window_id"
        else:
            raise AssertionError(f"window {window} accepted")


@st.composite
def reports(draw) -> EnergyReport:
    msg = EnergyReport()
    msg.window_id = draw(uint64)
    msg.window_stamp.sec, msg.window_stamp.nanosec = draw(int32), draw(uint32)
    msg.stage = draw(
        st.sampled_from(["snn", "bridge", "classifier", "driver"]) | st.text(max_size=6)
    )
    msg.source = draw(st.sampled_from(SOURCES) | st.text(max_size=6))
    msg.device, msg.method = draw(st.text(max_size=6)), draw(st.text(max_size=6))
    for key in ("energy_j", "power_w", "latency_s", "device_latency_s"):
        setattr(msg, key, draw(floats))
    for key in ("synaptic_ops", "neuron_updates", "spikes", "macs"):
        setattr(msg, key, draw(uint64))
    return msg


@FUZZ
@given(msgs=st.lists(reports(), min_size=1, max_size=4))
def test_random_reports_to_figures_and_totals(msgs):
    figures = []
    for msg in msgs:
        try:
            figures.append(figure_from_report(msg))
        except EnergyError:
            assert msg.source not in SOURCES or (
                msg.source == "unavailable" and not math.isnan(msg.energy_j)
            )
    if not figures:
        return
    summed = total(figures)
    # Summed op counts may pass 2^64: the message carries them saturated.
    out = energy_report(summed, msgs[0].window_id, 0, msgs[0].window_stamp)
    for key in ("synaptic_ops", "neuron_updates", "spikes", "macs"):
        assert getattr(out, key) == min(getattr(summed, key), UINT64_MAX)


@FUZZ
@given(
    counts=st.lists(st.integers(-(1 << 70), 1 << 70), min_size=4, max_size=4),
    window_id=st.integers(-(1 << 65), 1 << 65),
    start_us=st.integers(-(1 << 60), 1 << 60),
    energy=floats,
    latency=floats,
)
def test_figures_to_reports(counts, window_id, start_us, energy, latency):
    figure = EnergyFigure("snn", "cpu", "modelled", "m", energy, energy, latency, *counts)
    stamp = us_to_time(0)
    try:
        msg = energy_report(figure, window_id, start_us, stamp)
    except MessageFieldError as exc:
        assert exc.reason in ("window_id", "time_range")
        assert not 0 <= window_id <= UINT64_MAX or abs(start_us) > (1 << 31) * 10**6 - 10**6
        return
    assert msg.synaptic_ops == max(0, min(counts[0], UINT64_MAX))
