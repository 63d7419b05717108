"""Bags the tests of core/io/bag share: synthetic labelled bags and event packets."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hsnn_perception.core.events.codecs import make_events
from hsnn_perception.core.io.bag.msgtypes import TOPIC_LABELS, EventPacketData
from hsnn_perception.core.io.bag.read import EventBag, read_event_bag
from hsnn_perception.core.io.bag.write import packetize, synthetic_to_bag

STORAGES = ["mcap", "sqlite3"]
ROOT = Path(__file__).resolve().parents[4]


def synthetic_bag(tmp_path: Path, storage: str, n: int = 2, seed: int = 3) -> Path:
    path = tmp_path / f"syn_{storage}"
    counts = synthetic_to_bag(path, n, seed=seed, storage=storage, height=64, width=64)
    assert counts[TOPIC_LABELS] == n
    return path


def events_of(path: Path, **kw) -> tuple[np.ndarray, EventBag]:
    bag = read_event_bag(path, **kw)
    return np.concatenate([p.decode() for p in bag.packets()]), bag


def event_packets(n: int = 6, seed: int = 1) -> list[EventPacketData]:
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(0, n * 10_000, 400))
    ev = make_events(t, rng.integers(0, 64, 400), rng.integers(0, 48, 400), rng.integers(0, 2, 400))
    return packetize(ev, 10_000, 64, 48)
