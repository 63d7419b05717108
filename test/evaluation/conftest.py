"""Fixtures of the evaluation tests: a small real model bundle and a small labelled bag."""

from __future__ import annotations

from pathlib import Path

import pytest
from eval_bundles import SENSOR, make_bundle

from hsnn_perception.core.io.bag.write import synthetic_to_bag


@pytest.fixture(scope="session")
def eval_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("eval")


@pytest.fixture(scope="session")
def hybrid_bundle(eval_dir) -> Path:
    return make_bundle(eval_dir / "models" / "S1A1", "S1A1")


@pytest.fixture(scope="session")
def synthetic_bag(eval_dir) -> Path:
    path = eval_dir / "syn.mcap.bag"
    synthetic_to_bag(path, 4, seed=5, storage="mcap", height=SENSOR, width=SENSOR)
    return path
