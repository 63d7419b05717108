"""Tests of hsnn_perception.core.io.bag.msgtypes: the package's types registered from msg/, with
the hashes rosidl gives them; definitions parsed from a bag."""

from __future__ import annotations

import json

import pytest

from core.io.bag.bag_fixtures import ROOT
from hsnn_perception.core.io.bag.msgtypes import (
    MSG_ENERGY_REPORT,
    BagError,
    message_from_dict,
    msg_dir,
    package_typestore,
    types_from_msgdef,
)


def test_type_hashes_match_rosidl_build_when_present():
    built = ROOT / "install" / "share" / "hsnn_perception" / "msg"
    if not built.is_dir():
        pytest.skip("no colcon build of msg/ in this checkout")
    store = package_typestore()
    for name in ("EventPacket", "GestureLabel", "TensorList", "Classification", "EnergyReport"):
        doc = json.loads((built / f"{name}.json").read_text())
        want = doc["type_hashes"][0]["hash_string"]
        assert store.hash_rihs01(f"hsnn_perception/msg/{name}") == want, name


def test_msg_dir_is_the_checkouts_msg_folder():
    """In a checkout the .msg files are read beside the package (not only from an install)."""
    assert msg_dir() == ROOT / "msg"


def test_definitions_of_a_bag_are_parsed_block_by_block():
    from rosbags.typesys import get_types_from_msg

    text = (
        "vendor_msgs/Inner inner\nuint8[] data\n"
        + "=" * 80
        + "\nMSG: vendor_msgs/Inner\nint32 value\n"
    )
    types = types_from_msgdef("vendor_msgs/msg/Outer", text, get_types_from_msg)
    assert set(types) == {"vendor_msgs/msg/Outer", "vendor_msgs/msg/Inner"}
    assert [name for name, _ in types["vendor_msgs/msg/Inner"][1]] == ["value"]
    with pytest.raises(BagError, match="without a 'MSG:' line"):
        types_from_msgdef("vendor_msgs/msg/Outer", text.replace("MSG: ", ""), get_types_from_msg)


def test_message_from_dict_fills_missing_fields_and_names_bad_ones():
    store = package_typestore()
    msg = message_from_dict(store, "hsnn_perception/EnergyReport", {"stage": "snn", "spikes": 3})
    assert (msg.stage, msg.spikes, msg.energy_j, msg.source) == ("snn", 3, 0.0, "")
    with pytest.raises(BagError, match=r"EnergyReport.spikes: bad value 'many'"):
        message_from_dict(store, MSG_ENERGY_REPORT, {"spikes": "many"})
    with pytest.raises(BagError, match="unknown message type"):
        message_from_dict(store, "nope_msgs/msg/Nope", {})
