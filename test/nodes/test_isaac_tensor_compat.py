"""Byte compatibility of our TensorList with isaac_ros_tensor_list_interfaces/msg/TensorList.

Our messages are serialised by rclpy (the generated type support, as on the wire) and read back by
rosbags with Isaac ROS's own definitions registered under their own type names, and the other way
round. The definitions below are the field lines of the published .msg files of
NVIDIA-ISAAC-ROS/isaac_ros_common, isaac_ros_tensor_list_interfaces/msg/ (release-4.4; comments
shortened).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from rclpy.serialization import deserialize_message, serialize_message

from hsnn_perception.core.io.bag.msgtypes import MSG_TENSOR_LIST, package_typestore
from hsnn_perception.core.io.tensor_codec import DATA_TYPE_CODES
from hsnn_perception.msg import TensorList
from hsnn_perception.nodes.conversions import make_tensor_list, read_tensor_list

ISAAC = "isaac_ros_tensor_list_interfaces/msg"
ISAAC_TENSOR_SHAPE = """
# Rank of the tensor
uint8 rank
# Number of elements in each dimension
uint32[] dims
"""
ISAAC_TENSOR = """
string name
TensorShape shape
# 1 int8, 2 uint8, 3 int16, 4 uint16, 5 int32, 6 uint32, 7 int64, 8 uint64, 9 float32, 10 float64
int32 data_type
# Strides of tensor (byte size for each dimension)
uint64[] strides
uint8[] data
"""
ISAAC_TENSOR_LIST = """
std_msgs/Header header
Tensor[] tensors
"""


@pytest.fixture(scope="module")
def isaac_store():
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)  # std_msgs/Header
    types = {}
    for name, text in (
        ("TensorShape", ISAAC_TENSOR_SHAPE),
        ("Tensor", ISAAC_TENSOR),
        ("TensorList", ISAAC_TENSOR_LIST),
    ):
        types.update(get_types_from_msg(text, f"{ISAAC}/{name}"))
    store.register(types)
    return store


def _strip(fielddefs, package: str):
    """Field types with the package name taken out of nested type names (ours and Isaac's differ
    only there)."""
    return repr(fielddefs).replace(package, "PKG")


@pytest.mark.parametrize("name", ["TensorShape", "Tensor", "TensorList"])
def test_the_package_msg_files_have_isaac_ros_field_types(isaac_store, name):
    ours = package_typestore().fielddefs[f"hsnn_perception/msg/{name}"]
    theirs = isaac_store.fielddefs[f"{ISAAC}/{name}"]
    assert _strip(ours, "hsnn_perception") == _strip(theirs, "isaac_ros_tensor_list_interfaces")


ARRAYS = hnp.arrays(
    dtype=st.sampled_from(list(DATA_TYPE_CODES)),
    shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=5),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    arrays=st.lists(ARRAYS, min_size=1, max_size=3),
    window_id=st.integers(0, (1 << 63) - 1),
    start_us=st.integers(0, (1 << 31) * 10**6 - 1),
)
def test_ours_read_as_isaac_ros_and_back(isaac_store, arrays, window_id, start_us):
    named = {("input_tensor" if i == 0 else f"t{i}"): a for i, a in enumerate(arrays)}
    raw = serialize_message(make_tensor_list(window_id, start_us, "camera", named))

    isaac = isaac_store.deserialize_cdr(raw, f"{ISAAC}/TensorList")
    assert isaac.header.frame_id == "camera"
    assert isaac.header.stamp.sec * 10**6 + isaac.header.stamp.nanosec // 1000 == start_us
    assert [t.name for t in isaac.tensors] == [*named, "window_id"]
    arrays = [*named.values(), np.array([window_id], np.int64)]
    for tensor, array in zip(isaac.tensors, arrays, strict=True):
        want = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
        assert tensor.shape.rank == array.ndim
        assert tensor.shape.dims.tolist() == list(array.shape)
        assert tensor.data_type == DATA_TYPE_CODES[array.dtype.newbyteorder("=")]
        if array.size:
            assert tensor.strides.tolist() == list(want.strides)
        assert tensor.data.tobytes() == want.tobytes()
    # Same wire layout: Isaac's serialisation of what it read is byte for byte ours under our
    # own definitions (both by rosbags: rclpy leaves alignment padding bytes uninitialised).
    ours = package_typestore()
    as_ours = ours.serialize_cdr(ours.deserialize_cdr(raw, MSG_TENSOR_LIST), MSG_TENSOR_LIST)
    assert bytes(isaac_store.serialize_cdr(isaac, f"{ISAAC}/TensorList")) == bytes(as_ours)
    assert len(raw) == len(as_ours)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arrays=st.lists(ARRAYS, min_size=1, max_size=3), window_id=st.integers(0, 10**9))
def test_isaac_ros_message_read_as_ours(isaac_store, arrays, window_id):
    types = isaac_store.types
    time_cls, header_cls = types["builtin_interfaces/msg/Time"], types["std_msgs/msg/Header"]
    shape_cls, tensor_cls = types[f"{ISAAC}/TensorShape"], types[f"{ISAAC}/Tensor"]

    def tensor(name: str, array: np.ndarray):
        dense = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
        return tensor_cls(
            name=name,
            shape=shape_cls(rank=array.ndim, dims=np.array(array.shape, dtype=np.uint32)),
            data_type=DATA_TYPE_CODES[array.dtype.newbyteorder("=")],
            strides=np.array(dense.strides, dtype=np.uint64),
            data=np.frombuffer(dense.tobytes(), dtype=np.uint8),
        )

    named = {f"t{i}": a for i, a in enumerate(arrays)}
    tensors = [tensor(n, a) for n, a in named.items()]
    tensors.append(tensor("window_id", np.array([window_id], np.int64)))
    msg = types[f"{ISAAC}/TensorList"](
        header=header_cls(stamp=time_cls(sec=12, nanosec=345_000), frame_id="isaac"),
        tensors=tensors,
    )
    raw = bytes(isaac_store.serialize_cdr(msg, f"{ISAAC}/TensorList"))

    ours = deserialize_message(raw, TensorList)
    got_id, start_us, got = read_tensor_list(ours)
    assert (got_id, start_us, ours.header.frame_id) == (window_id, 12_000_345, "isaac")
    assert list(got) == list(named)
    for name, array in named.items():
        assert got[name].dtype == array.dtype and got[name].shape == array.shape
        np.testing.assert_array_equal(got[name], array)
    again = isaac_store.deserialize_cdr(bytes(serialize_message(ours)), f"{ISAAC}/TensorList")
    assert bytes(isaac_store.serialize_cdr(again, f"{ISAAC}/TensorList")) == raw
