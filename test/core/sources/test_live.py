"""Tests of the live sources (hsnn_perception.core.sources.live): no camera here, so a camera's
absence; a dv network stream against a real dv.io.NetworkWriter on 127.0.0.1."""

from __future__ import annotations

import socket
import time

import dv_processing as dv
import numpy as np
import pytest

from hsnn_perception.core.events.filters import to_dv_store
from hsnn_perception.core.sources.dv import CameraUnavailableError, SourceError
from hsnn_perception.core.sources.live import CameraSource, NetworkStreamSource

from .test_dv import H, W, stream


def test_camera_unavailable_is_clear() -> None:
    if dv.io.camera.discover():
        pytest.skip("a camera is connected to this machine")
    with pytest.raises(CameraUnavailableError, match="no event camera connected"):
        CameraSource()
    with pytest.raises(CameraUnavailableError):
        CameraSource(serial="DXA00093")
    assert issubclass(CameraUnavailableError, SourceError)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_network_stream_source_against_dv_network_writer() -> None:
    port = free_port()
    spec = dv.io.Stream.EventStream(0, "events", "DVXplorer_test", (W, H))
    writer = dv.io.NetworkWriter("127.0.0.1", port, spec)
    src = NetworkStreamSource("127.0.0.1", port)
    assert (src.width, src.height, src.camera_name) == (W, H, "DVXplorer_test")
    deadline = time.monotonic() + 5
    while writer.getClientCount() < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    ev = stream(n=600)
    for i in range(0, 600, 200):
        writer.writeEvents(to_dv_store(ev[i : i + 200]))
    got, last_t = [], None
    while sum(g.size for g in got) < 600 and time.monotonic() < deadline:
        item = src.next_packet()
        if item is None:
            time.sleep(0.005)
            continue
        got.append(item[0])
        last_t = item[1]
    np.testing.assert_array_equal(np.concatenate(got), ev)
    assert last_t == int(ev["t"][-1])
    src.close()
    del src
    # NetworkWriter's destructor blocks while a client is connected: wait for the disconnect.
    deadline = time.monotonic() + 5
    while writer.getClientCount() > 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert writer.getClientCount() == 0
    del writer


def test_network_stream_refused_is_clear() -> None:
    with pytest.raises(SourceError, match=r"cannot connect to dv network stream 127\.0\.0\.1"):
        NetworkStreamSource("127.0.0.1", free_port())
