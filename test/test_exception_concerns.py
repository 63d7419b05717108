"""Every exception class of the project sits under HsnnError, through one concern base, and keeps
the built-in base it had (so ``except ValueError`` callers still catch it)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from hsnn_perception.core import errors

ROOT = Path(__file__).resolve().parents[1]
CONCERNS = [
    cls
    for cls in vars(errors).values()
    if isinstance(cls, type) and issubclass(cls, errors.HsnnError) and cls is not errors.HsnnError
]


def exception_classes() -> list[tuple[str, str]]:
    """(module, class) of every class under hsnn_perception/ and hsnn_bridge/ whose name ends in
    Error, errors.py itself aside."""
    found = []
    for package in ("hsnn_perception", "hsnn_bridge"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if path.name == "errors.py" and path.parent.name == "core":
                continue
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            for node in ast.parse(path.read_text(encoding="utf-8")).body:
                if isinstance(node, ast.ClassDef) and node.name.endswith("Error"):
                    found.append((module, node.name))
    return found


def test_the_scan_finds_the_project_exceptions():
    found = exception_classes()
    assert len(found) > 40
    assert ("hsnn_perception.core.hybrid.bundle", "BundleError") in found


@pytest.mark.parametrize(("module", "name"), exception_classes())
def test_each_exception_has_one_concern_base(module, name):
    cls = getattr(importlib.import_module(module), name)
    concerns = [c for c in CONCERNS if issubclass(cls, c)]
    assert len(concerns) == 1, f"{module}.{name} is under {concerns}: want one concern base"
    builtin = [c for c in cls.__mro__ if c.__module__ == "builtins" and c is not Exception]
    assert builtin[0] in (ValueError, RuntimeError, ImportError), (name, cls.__mro__)


def test_a_concern_error_still_reads_as_its_message():
    from hsnn_perception.core.hybrid.bundle import BundleError

    exc = BundleError("no manifest in /x")
    assert str(exc) == "no manifest in /x"
    assert isinstance(exc, ValueError) and isinstance(exc, errors.ModelError)
