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
    assert not ros_imports(
        "import numpy\nfrom hsnn_perception.core.events import codecs as events\n"
    )


def test_core_training_and_offline_evaluation_import_no_ros():
    assert len(ROS_FREE) > 30  # the globs found the packages
    offenders = {
        str(path.relative_to(ROOT)): found
        for path in ROS_FREE
        if (found := ros_imports(path.read_text(encoding="utf-8")))
    }
    assert not offenders, f"ROS imported where it must not be: {offenders}"


# core/ is the bottom layer: the stages' algorithms. What builds on it (training, evaluation,
# tools, the launch graph) may import core, never the other way round; shared pieces move down
# into core (e.g. core/snn/quantise.py, used by training/convert.py and core/snn/nir/).
ABOVE_CORE = ("training", "evaluation", "tools", "graph", "launcher", "runner")


def upward_imports(source: str) -> list[str]:
    """``line: module`` for every import of a layer above core in ``source``."""

    def above(name: str) -> bool:
        return any(
            name == f"hsnn_perception.{layer}" or name.startswith(f"hsnn_perception.{layer}.")
            for layer in ABOVE_CORE
        )

    found = []
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module] if above(node.module) else []
            names = names or [f"{node.module}.{alias.name}" for alias in node.names]
        found += [(node.lineno, name) for name in names if above(name)]
    return [f"{line}: {name}" for line, name in sorted(found)]


def test_the_layer_checker_finds_upward_imports():
    source = (
        "from hsnn_perception.core.snn import quantise\n"
        "def f():\n    from hsnn_perception.training.convert import x\n"
        "from hsnn_perception import tools\nimport hsnn_perception.graph\n"
    )
    assert upward_imports(source) == [
        "3: hsnn_perception.training.convert",
        "4: hsnn_perception.tools",
        "5: hsnn_perception.graph",
    ]


def test_core_imports_no_layer_above_it():
    core = sorted((ROOT / "hsnn_perception" / "core").rglob("*.py"))
    assert len(core) > 30
    offenders = {
        str(path.relative_to(ROOT)): found
        for path in core
        if (found := upward_imports(path.read_text(encoding="utf-8")))
    }
    assert not offenders, f"core imports a layer above it: {offenders}"


# Lifecycle-owned members are declared in __init__ (as ros2/demos lifecycle_py/talker.py does):
# reading a node's __init__ tells every member it will ever have, and no callback meets a member
# that a transition has not made yet.
NODE_FILES = [
    *sorted((ROOT / "hsnn_perception" / "nodes").glob("*.py")),
    ROOT / "hsnn_bridge" / "accumulator_node.py",
]


def _self_attributes(function: ast.AST) -> set[str]:
    """Names of the ``self.<name>`` that ``function`` assigns (plain, annotated, augmented,
    tuple and starred targets), nested blocks included."""
    names = set()
    for node in ast.walk(function):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
            targets = [node.target]
        while targets:
            target = targets.pop()
            if isinstance(target, (ast.Tuple, ast.List)):
                targets += target.elts
            elif isinstance(target, ast.Starred):
                targets.append(target.value)
            elif (
                isinstance(target, ast.Attribute)
                and isinstance(target.value, ast.Name)
                and target.value.id == "self"
            ):
                names.add(target.attr)
    return names


def attributes_made_outside_init(sources: list[str]) -> list[str]:
    """``Class.method: attribute`` for every attribute a method other than __init__ assigns that
    neither __init__ nor the class body (nor a base class among ``sources``) declares."""
    classes = {
        node.name: node
        for source in sources
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.ClassDef)
    }

    def declared(name: str) -> set[str]:
        cls = classes[name]
        names = set()
        for item in cls.body:
            if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                names |= _self_attributes(item)
            elif isinstance(item, (ast.Assign, ast.AnnAssign)):
                targets = item.targets if isinstance(item, ast.Assign) else [item.target]
                names |= {t.id for t in targets if isinstance(t, ast.Name)}
        for base in cls.bases:
            if isinstance(base, ast.Name) and base.id in classes:
                names |= declared(base.id)
        return names

    found = []
    for name, cls in classes.items():
        known = declared(name)
        for item in cls.body:
            if isinstance(item, ast.FunctionDef) and item.name != "__init__":
                found += [
                    f"{name}.{item.name}: {attr}" for attr in sorted(_self_attributes(item) - known)
                ]
    return found


def test_the_member_checker_finds_members_made_outside_init():
    source = (
        "class Base:\n    def __init__(self):\n        self.a = None\n"
        "class Node(Base):\n    kind = 'x'\n"
        "    def __init__(self):\n        super().__init__()\n        self.b: int = 0\n"
        "    def on_configure(self, state):\n"
        "        self.a = self.b = 1\n        self.kind = 'y'\n"
        "        self.c, (self.d, *self.e) = 1, (2, 3)\n"
        "        if state:\n            self.f += 1\n"
    )
    assert attributes_made_outside_init([source]) == [
        "Node.on_configure: c",
        "Node.on_configure: d",
        "Node.on_configure: e",
        "Node.on_configure: f",
    ]


def test_nodes_declare_every_member_in_init():
    assert len(NODE_FILES) >= 7  # base, the five stage nodes, the lifecycle manager
    offenders = attributes_made_outside_init([p.read_text(encoding="utf-8") for p in NODE_FILES])
    assert not offenders, f"members first made outside __init__: {offenders}"
