"""package.xml declares what the code imports, with the right rosdep keys, as `rosdep check
--from-paths` would want; what has no rosdep key is installed by pip from requirements.txt. And
`colcon test` runs the suite: CMake registers it when ament_cmake_pytest is there."""

from __future__ import annotations

import ast
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIRST_PARTY = {
    "hsnn_perception",
    "hsnn_bridge",
    "bench",
    "launch_helpers",
    "test_launch_shutdown",
    "netns_hosts",
    "eval_bundles",
    "snn_fixtures",
    "test_bag_cli",  # test/tools: the stock-driver bag writer, shared with test_replay
    "core",  # test/core as a package (test/core/snn/snn_fixtures.py)
}

# import name -> rosdep key, or "pip:<requirement name>" where rosdep has no key.
KEYS = {
    "rclpy": "rclpy",
    "rcl_interfaces": "rcl_interfaces",
    "lifecycle_msgs": "lifecycle_msgs",
    "diagnostic_msgs": "diagnostic_msgs",
    "rosgraph_msgs": "rosgraph_msgs",
    "sensor_msgs": "sensor_msgs",
    "builtin_interfaces": "builtin_interfaces",
    "std_msgs": "std_msgs",
    "ament_index_python": "ament_index_python",
    "launch": "launch",
    "launch_ros": "launch_ros",
    "launch_testing": "launch_testing",
    "launch_testing_ros": "launch_testing_ros",
    "event_camera_msgs": "event_camera_msgs",
    "numpy": "python3-numpy",
    "h5py": "python3-h5py",
    "yaml": "python3-yaml",
    "onnxruntime": "python3-onnxruntime-pip",
    "rosbags": "python3-rosbags-pip",
    "torch": "python3-torch",
    "numba": "python3-numba",
    "scipy": "python3-scipy",
    "sklearn": "python3-sklearn",
    "matplotlib": "python3-matplotlib",
    "PIL": "python3-pil",
    "tqdm": "python3-tqdm",
    "cryptography": "python3-cryptography",
    "pytest": "python3-pytest",
    "hypothesis": "python3-hypothesis",
    "onnx": "pip:onnx",
    "dv_processing": "pip:dv-processing",
    "lava": "pip:lava-nc",
    "backports": "pip:backports.zstd",
    "lz4": "pip:lz4",
    "ruamel": "python3-ruamel.yaml",
    "nir": "pip:nir",  # hsnn-nir (requirements-nir.txt)
    "snntorch": "pip:snntorch",  # third-party checks of hsnn-nir's graphs (tests, bench)
    "norse": "pip:norse",
    # Optional, imported where present and said so where not:
    "tensorrt": "optional",  # JetPack / NVIDIA's wheels; the classifier falls back to ORT
    "cuda": "optional",  # cuda-python, with tensorrt
    "pynvml": "optional",  # nvidia-ml-py: GPU power where an NVIDIA GPU is
    "torchvision": "optional",  # never imported: lava-dl's detection module is stubbed out
    "compression": "optional",  # Python >= 3.14's zstd (backports.zstd before)
}


def declared() -> dict[str, set[str]]:
    root = ET.parse(ROOT / "package.xml").getroot()
    kinds: dict[str, set[str]] = {}
    for element in root:
        kinds.setdefault(element.tag, set()).add((element.text or "").strip())
    return kinds


def imports(paths: list[Path]) -> dict[str, set[str]]:
    """Top-level module name -> files importing it (absolute imports only)."""
    found: dict[str, set[str]] = {}
    for path in paths:
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], set()).add(str(path.relative_to(ROOT)))
    return found


def python_files(*folders: str) -> list[Path]:
    files = [p for f in folders for p in (ROOT / f).rglob("*.py")]
    scripts = [
        p
        for p in (ROOT / "scripts").iterdir()
        if p.is_file() and p.read_bytes().startswith(b"#!/usr/bin/env python")
    ]
    return files + (scripts if "scripts" in folders else [])


def third_party(found: dict[str, set[str]]) -> dict[str, set[str]]:
    return {
        name: where
        for name, where in found.items()
        if name not in sys.stdlib_module_names and name not in FIRST_PARTY and name != "__future__"
    }


def requirement_names() -> set[str]:
    names = set()
    for file in ("requirements.txt", "requirements-lava.txt", "requirements-nir.txt"):
        for line in (ROOT / file).read_text().splitlines():
            line = line.split("#")[0].split(";")[0].strip()
            for sep in ("==", "<", ">", "~=", "!="):
                line = line.split(sep)[0]
            if line:
                names.add(line.strip().lower())
    return names


def test_every_import_of_the_package_is_declared():
    kinds = declared()
    runtime = kinds.get("exec_depend", set()) | kinds.get("depend", set())
    pip = requirement_names()
    found = third_party(
        imports(python_files("hsnn_perception", "hsnn_bridge", "launch", "scripts"))
    )
    unknown = {name: sorted(where)[:3] for name, where in found.items() if name not in KEYS}
    assert not unknown, (
        f"imports with no rosdep key decided (add to package.xml and KEYS): {unknown}"
    )
    missing = []
    for name in found:
        key = KEYS[name]
        if key.startswith("pip:"):
            if key[4:].lower() not in pip:
                missing.append(f"{name}: {key[4:]} not in requirements.txt")
        elif key != "optional" and key not in runtime:
            missing.append(f"{name}: <exec_depend>{key}</exec_depend> missing")
    assert not missing, missing


def test_every_import_of_the_tests_is_declared():
    kinds = declared()
    available = set().union(*kinds.values())
    found = third_party(imports(python_files("test")))
    missing = [
        f"{name}: {KEYS.get(name, '?')}"
        for name in found
        if KEYS.get(name) is None
        or (not KEYS[name].startswith(("pip:", "optional")) and KEYS[name] not in available)
    ]
    assert not missing, missing


def test_declared_python_keys_are_used():
    """No stale python3-* dependency: each is imported somewhere in the package or its tests."""
    kinds = declared()
    used = {KEYS.get(n) for n in imports(python_files("hsnn_perception", "hsnn_bridge", "test"))}
    declared_python = {k for keys in kinds.values() for k in keys if k.startswith("python3-")}
    assert declared_python <= used, declared_python - used


def test_colcon_test_runs_the_suite():
    cmake = (ROOT / "CMakeLists.txt").read_text()
    assert "find_package(ament_cmake_pytest REQUIRED)" in cmake, "not looked up QUIET: say so"
    assert "ament_add_pytest_test(hsnn_tests test" in cmake
    assert "ament_cmake_pytest" in declared().get("test_depend", set())


def test_colcon_registers_the_suite_for_colcon_test(tmp_path):
    """A BUILD_TESTING build (colcon's default in a workspace) registers the suite with CTest,
    which is what `colcon test` runs."""
    import shutil
    import subprocess

    import pytest

    if shutil.which("colcon") is None or shutil.which("ctest") is None:
        pytest.skip("colcon/ctest not installed")
    build = subprocess.run(
        [
            "colcon", "--log-base", str(tmp_path / "log"), "build", "--base-paths", str(ROOT),
            "--packages-select", "hsnn_perception", "--build-base", str(tmp_path / "build"),
            "--install-base", str(tmp_path / "install"), "--merge-install",
            "--cmake-args", "-DBUILD_TESTING=ON", f"-DPython3_EXECUTABLE={sys.executable}",
        ],
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    listed = subprocess.run(
        ["ctest", "--test-dir", str(tmp_path / "build" / "hsnn_perception"), "-N", "-V"],
        capture_output=True,
        text=True,
    )
    assert "Test #1: hsnn_tests" in listed.stdout and "Total Tests: 1" in listed.stdout
    command = next(line for line in listed.stdout.splitlines() if "Test command" in line)
    assert "pytest" in command and str(ROOT / "test") in command, command
