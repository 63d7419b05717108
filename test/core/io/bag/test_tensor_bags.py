"""TensorList bags recorded before TensorShape took Isaac ROS's field types (int32 rank, int32[]
dims, until issue 14) are still read right: with the definition the bag embeds."""

from __future__ import annotations

import numpy as np
import pytest

from hsnn_perception.core.io.bag.msgtypes import (
    MSG_TENSOR_LIST,
    TOPIC_SNN_SPIKES,
    package_typestore,
)
from hsnn_perception.core.io.bag.read import MessageReader
from hsnn_perception.core.io.bag.write import BagRecorder

SHAPE = "hsnn_perception/msg/TensorShape"
OLD_SHAPE_MSG = "int32 rank\nint32[] dims\n"


def _old_store():
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.EMPTY)
    fielddefs = package_typestore().fielddefs
    store.register({n: d for n, d in fielddefs.items() if n != SHAPE})
    store.register(get_types_from_msg(OLD_SHAPE_MSG, SHAPE))
    return store


def _tensor_list(store, dims: list[int], data: bytes):
    types = store.types
    shape = types[SHAPE](rank=len(dims), dims=np.array(dims, dtype=np.int32))
    tensor = types["hsnn_perception/msg/Tensor"](
        name="spikes",
        shape=shape,
        data_type=2,
        strides=np.array([dims[1], 1], dtype=np.uint64),
        data=np.frombuffer(data, dtype=np.uint8),
    )
    header = types["std_msgs/msg/Header"](
        stamp=types["builtin_interfaces/msg/Time"](sec=1, nanosec=0), frame_id=""
    )
    return types[MSG_TENSOR_LIST](header=header, tensors=[tensor])


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_a_tensor_bag_with_the_old_tensor_shape_is_read_with_its_definition(tmp_path, storage):
    old = _old_store()
    data = bytes(range(6))
    path = tmp_path / "old_tensors"
    with BagRecorder(path, storage=storage, typestore=old) as rec:
        rec.write(TOPIC_SNN_SPIKES, MSG_TENSOR_LIST, 5, _tensor_list(old, [2, 3], data))

    reader = MessageReader(path)
    (msg,) = list(reader.messages([TOPIC_SNN_SPIKES]))
    (tensor,) = msg.msg.tensors
    assert (tensor.shape.rank, tensor.shape.dims.tolist()) == (2, [2, 3])
    assert tensor.data.tobytes() == data
    assert any("TensorShape" in n and "another version" in n for n in reader.report.notes)
    # The current definition reads those bytes differently (the check above can fail).
    raw = old.serialize_cdr(_tensor_list(old, [2, 3], data), MSG_TENSOR_LIST)
    try:
        current = package_typestore().deserialize_cdr(raw, MSG_TENSOR_LIST)
    except Exception:  # noqa: BLE001 - any failure to decode shows the definitions differ
        return
    assert current.tensors[0].shape.dims.tolist() != [2, 3]


def test_a_new_tensor_bag_reads_without_a_note(tmp_path):
    store = package_typestore()
    path = tmp_path / "new_tensors"
    types = store.types
    msg = _tensor_list(_old_store(), [2, 3], bytes(6))  # fields only: rebuilt with uint32 dims
    shape = types[SHAPE](rank=2, dims=np.array([2, 3], dtype=np.uint32))
    tensor = types["hsnn_perception/msg/Tensor"](**{**msg.tensors[0].__dict__, "shape": shape})
    new = types[MSG_TENSOR_LIST](header=msg.header, tensors=[tensor])
    with BagRecorder(path, typestore=store) as rec:
        rec.write(TOPIC_SNN_SPIKES, MSG_TENSOR_LIST, 5, new)
    reader = MessageReader(path)
    (got,) = list(reader.messages([TOPIC_SNN_SPIKES]))
    assert got.msg.tensors[0].shape.dims.tolist() == [2, 3]
    assert got.msg.tensors[0].shape.dims.dtype == np.uint32
    assert not any("another version" in n for n in reader.report.notes)
