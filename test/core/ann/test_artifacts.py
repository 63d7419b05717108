"""Tests of hsnn_perception.core.ann.artifacts: cached files with a sidecar naming what they were
made from, on real files."""

from __future__ import annotations

import json

from hsnn_perception.core.ann.artifacts import (
    check_artifact,
    key_mismatches,
    sidecar_path,
    write_artifact,
)


def test_artifact_round_trip_and_rejections(tmp_path):
    path = tmp_path / "cache" / "thing.bin"
    key = {"a": 1, "b": "x", "c": None}
    ok, reason = check_artifact(path, key)
    assert not ok and "no cached" in reason
    write_artifact(path, b"payload", key, note="hello")
    assert path.read_bytes() == b"payload"
    meta = json.loads(sidecar_path(path).read_text())
    assert meta["key"] == key and meta["note"] == "hello" and meta["bytes"] == 7
    assert check_artifact(path, key)[0]
    for name, value in (("a", 2), ("b", "y"), ("c", "z")):
        ok, reason = check_artifact(path, {**key, name: value})
        assert not ok and f"{name}:" in reason
    assert not check_artifact(path, {**key, "d": 0})[0]  # a new key component also invalidates
    assert check_artifact(path, {**key, "c": "z"}, ignore=("c",))[0]
    path.write_bytes(b"pAyload")  # same size, other bytes
    ok, reason = check_artifact(path, key)
    assert not ok and "sha256" in reason
    write_artifact(path, b"payload", key)
    sidecar_path(path).write_text("{not json")
    ok, reason = check_artifact(path, key)
    assert not ok and "unreadable" in reason
    sidecar_path(path).unlink()
    ok, reason = check_artifact(path, key)
    assert not ok and "no sidecar" in reason
    assert not list(path.parent.glob(".*.tmp"))  # no temp files left behind


def test_key_mismatches_names_each_component():
    stored = {"x": 1, "y": [1, 2], "z": "a"}
    assert key_mismatches(stored, dict(stored)) == []
    assert key_mismatches(stored, {**stored, "y": [1, 3]}) == ["y"]
    assert key_mismatches(stored, {"x": 1, "y": [1, 2]}) == ["z"]
    assert key_mismatches(stored, {**stored, "z": "b"}, ignore=["z"]) == []
