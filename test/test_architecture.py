"""The import rule of docs/architecture.md: the algorithms (core/, training/, the offline
evaluation) import no ROS, at module level or inside a function, so they run and are tested
without a ROS installation; only the nodes adapt them to ROS."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROS_FREE = [
    *sorted((ROOT / "hsnn_perception" / "core").rglob("*.py")),
    *sorted((ROOT / "hsnn_perception" / "training").rglob("*.py")),
    ROOT / "hsnn_perception" / "evaluation" / "offline.py",
]
# ROS client libraries and packages; every `*_msgs`/`*_srvs` message package is ROS too.
# (ament_index_python is not among them: a plain file lookup that core uses lazily, when present.)
ROS_MODULES = {
    "rclpy",
    "rcl_interfaces",
    "rosidl_runtime_py",
    "rosidl_parser",
    "rosbag2_py",
    "launch",
    "launch_ros",
    "builtin_interfaces",
    "hsnn_perception.msg",
    "hsnn_perception.nodes",
    "hsnn_bridge",
}


def is_ros(module: str) -> bool:
    top = module.split(".")[0]
    return (
        top in ROS_MODULES
        or top.endswith(("_msgs", "_srvs"))
        or any(module == m or module.startswith(m + ".") for m in ROS_MODULES)
    )


def ros_imports(source: str) -> list[str]:
    """``line: module`` for every ROS import in ``source``: import statements anywhere, and
    importlib.import_module / __import__ calls with a literal name."""
    found = []
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module] if is_ros(node.module) else []
            names = names or [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            first = node.args[0]
            if called in ("import_module", "__import__") and isinstance(first, ast.Constant):
                names = [str(first.value)]
        found += [f"{node.lineno}: {name}" for name in names if is_ros(name)]
    return found


def test_the_checker_finds_every_form_of_ros_import():
    source = (
        "import os\nimport rclpy.node\nfrom std_msgs.msg import String\n"
        "def f():\n    from hsnn_perception.msg import EventPacket\n"
        "    import importlib\n    importlib.import_module('rosbag2_py')\n"
        "from hsnn_perception import nodes\nfrom . import sibling\n"
    )
    assert ros_imports(source) == [
        "2: rclpy.node",
        "3: std_msgs.msg",
        "8: hsnn_perception.nodes",
        "5: hsnn_perception.msg",
        "7: rosbag2_py",
    ]
    assert not ros_imports("import numpy\nfrom hsnn_perception.core import events\n")


def test_core_training_and_offline_evaluation_import_no_ros():
    assert len(ROS_FREE) > 30  # the globs found the packages
    offenders = {
        str(path.relative_to(ROOT)): found
        for path in ROS_FREE
        if (found := ros_imports(path.read_text(encoding="utf-8")))
    }
    assert not offenders, f"ROS imported where it must not be: {offenders}"
