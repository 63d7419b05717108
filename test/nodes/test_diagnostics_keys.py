"""Every /diagnostics key the nodes write, and every one DDS replay reads, is listed in
core/registry.py DIAGNOSTICS_KEYS with what it counts. Read from the source (the AST), so a key
that only a rare path writes is checked too."""

from __future__ import annotations

import ast
from pathlib import Path

from hsnn_perception.core.registry import DIAGNOSTICS_KEYS, diagnostics_key_known

ROOT = Path(__file__).resolve().parents[2]
NODE_SOURCES = [
    *(ROOT / "hsnn_perception" / "nodes").glob("*.py"),
    ROOT / "hsnn_bridge" / "accumulator_node.py",
]
TOOL_SOURCES = [ROOT / "hsnn_perception" / "tools" / "replay.py"]


def _key(node: ast.expr) -> str | None:
    """A key as written: a string, or an f-string with each placeholder as "x" (a leading one,
    as in f"{stage}.reports", as the stage "snn")."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        parts = [
            v.value if isinstance(v, ast.Constant) else ("snn" if i == 0 else "x")
            for i, v in enumerate(node.values)
        ]
        return "".join(str(p) for p in parts)
    return None


def _written(tree: ast.AST) -> set[str]:
    keys: set[str] = set()
    for fn in ast.walk(tree):
        if isinstance(fn, ast.Call) and isinstance(fn.func, ast.Attribute) and fn.args:
            name, first = fn.func.attr, _key(fn.args[0])
            if name == "count" and first is not None:
                keys.add(first)
            elif name == "reject" and first is not None:
                keys.add(f"errors.{first}")
            elif name == "diagnostics" and len(fn.args) == 2 and first is not None:
                number = _key(fn.args[1])  # SequenceGaps.diagnostics(lost, number)
                keys |= {f"lost.{first}", f"{number}_restarts", f"{number}_jumps"}
        if isinstance(fn, ast.FunctionDef) and fn.name == "diagnostic_values":
            for node in ast.walk(fn):
                if isinstance(node, ast.Dict):
                    keys |= {k for k in map(_key, [k for k in node.keys if k]) if k}
                elif isinstance(node, ast.DictComp):
                    keys |= {k for k in [_key(node.key)] if k}
                elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Store):
                    keys |= {k for k in [_key(node.slice)] if k}
                elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "update":
                    keys |= {kw.arg for kw in node.keywords if kw.arg}
    return keys


def _read_by_tools(tree: ast.AST) -> set[str]:
    keys: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "_int":
            keys |= {k for k in [_key(node.args[1])] if k and len(node.args) > 1}
        if isinstance(node, ast.Assign) and any(
            getattr(t, "id", "") == "LOSS_COUNTERS" for t in node.targets
        ):
            for inner in ast.walk(node.value):
                if isinstance(inner, ast.Dict | ast.DictComp):
                    ks = inner.keys if isinstance(inner, ast.Dict) else [inner.key]
                    keys |= {k for k in map(_key, [k for k in ks if k]) if k and "." in k}
    return keys


def test_every_key_a_node_writes_is_listed():
    written = set().union(*(_written(ast.parse(p.read_text())) for p in NODE_SOURCES))
    assert {"received.packets", "errors.packet", "lost.packets", "snn.reports"} <= written
    assert not diagnostics_key_known("made.up.key")  # the check itself can fail
    unknown = sorted(k for k in written if not diagnostics_key_known(k))
    assert not unknown, f"/diagnostics keys missing from registry.DIAGNOSTICS_KEYS: {unknown}"


def test_every_key_replay_reads_is_one_a_node_writes_and_is_listed():
    written = set().union(*(_written(ast.parse(p.read_text())) for p in NODE_SOURCES))
    read = set().union(*(_read_by_tools(ast.parse(p.read_text())) for p in TOOL_SOURCES))
    assert {"published.packets", "lost.windows", "flow.stalls"} <= read
    assert not sorted(k for k in read if not diagnostics_key_known(k))
    # a key read but written nowhere (a rename on one side only) would read as 0 forever
    families = {k.rsplit(".", 1)[0] if k.endswith(".x") else k for k in written}
    orphans = sorted(k for k in read if k not in written and k.rsplit(".", 1)[0] not in families)
    assert not orphans, orphans


def test_every_listed_key_says_what_it_counts():
    assert all(len(v) > 10 for v in DIAGNOSTICS_KEYS.values())
