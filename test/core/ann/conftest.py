"""Fixtures of the core/ann tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.ann.ann_fixtures import make_classifier


@pytest.fixture()
def model(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    path = tmp_path / "ann.onnx"
    return path, make_classifier(path)
