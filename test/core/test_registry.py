"""The registries: every entry resolves to its implementation, every name list is read from them,
and listing names or loading one backend imports nothing another backend needs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hsnn_perception.core import registry
from hsnn_perception.core.ann.backends import BackendError, ClassifierBackend
from hsnn_perception.core.energy import meters
from hsnn_perception.core.energy.meters import meter_for
from hsnn_perception.core.events.codecs import ENCODINGS, EventCodec, EventDecodeError, codec_for
from hsnn_perception.core.registry import Entry, Registry, UnknownNameError
from hsnn_perception.core.snn.runtime import SnnConfigError, load_snn

ROOT = Path(__file__).resolve().parents[2]


def _python(code: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    return out.stdout.strip()


def test_names_aliases_and_unknown_names():
    reg = Registry(
        "widget",
        [Entry("a", "json:dumps", "first"), Entry("b", "json:loads", "second", in_pipeline=False)],
        aliases={"alpha": "a"},
    )
    assert reg.names() == ("a", "b")
    assert reg.names(pipeline=True) == ("a",)
    assert reg.names(aliases=True) == ("a", "b", "alpha")
    assert "alpha" in reg and "c" not in reg
    assert reg.entry("alpha").name == "a"
    import json

    assert reg.entry("b").load() is json.loads
    with pytest.raises(UnknownNameError, match="unknown widget 'c'; expected one of a, b"):
        reg.entry("c")
    with pytest.raises(ValueError, match="aliases of no entry"):
        Registry("widget", [], aliases={"x": "y"})


def test_every_entry_resolves_to_its_kind_of_implementation():
    for name in registry.SNN_BACKENDS.names():
        assert callable(registry.SNN_BACKENDS.entry(name).load()), name
    for name in registry.CLASSIFIER_BACKENDS.names():
        backend_class = registry.CLASSIFIER_BACKENDS.entry(name).load()
        assert issubclass(backend_class, ClassifierBackend) and backend_class.kind == name
    for name in registry.EVENT_CODECS.names():
        codec = registry.EVENT_CODECS.entry(name).load()
        assert isinstance(codec, EventCodec) and codec.encoding == name
        assert codec_for(name) is codec
    for name in registry.POWER_METERS.names():
        assert callable(registry.POWER_METERS.entry(name).load()), name


def test_name_lists_come_from_the_registries():
    from hsnn_perception import graph
    from hsnn_perception.core.snn.lava import HW_MISSING
    from hsnn_perception.training.cli import SNN_BACKENDS as TRAIN_BACKENDS

    assert graph.SNN_BACKENDS == ("native", "lava", "lava-hw")
    assert graph.CLASSIFIER_BACKENDS == ("onnxruntime", "tensorrt")
    assert set(TRAIN_BACKENDS) == set(registry.SNN_BACKENDS.names(aliases=True))
    assert {"lava-sim", "loihi2-hw"} <= set(TRAIN_BACKENDS)
    assert ENCODINGS == ("mono", "evt3", "libcaer", "libcaer_cmp")
    # The hardware message names the backend as the node parameter and launch argument do.
    assert "'lava-hw'" in HW_MISSING and "lava-hw" in graph.SNN_BACKENDS
    assert registry.SNN_BACKENDS.entry("loihi2-hw").name == "lava-hw"
    assert registry.SNN_BACKENDS.entry("lava-sim").name == "lava"


def test_unknown_names_raise_each_extension_points_own_error(tmp_path):
    from hsnn_perception.core.ann.backends import create_backend

    with pytest.raises(SnnConfigError, match="unknown SNN backend 'gpu'; expected one of native"):
        load_snn(tmp_path / "x.net", backend="gpu")
    with pytest.raises(BackendError, match="unknown classifier backend kind 'openvino'"):
        create_backend("openvino", tmp_path / "x.onnx")
    with pytest.raises(EventDecodeError, match="unknown encoding 'evt2'; supported: mono"):
        codec_for("evt2")


def test_meter_for_picks_the_registered_meter_of_the_device_kind(monkeypatch):
    monkeypatch.setattr(meters, "gpu_meter", lambda: "nvml")
    monkeypatch.setattr(meters, "host_meter", lambda: "host")
    assert meter_for("cuda:0 (NVIDIA H200, sm_90)") == "nvml"
    assert meter_for("cpu") == "host"
    assert meter_for("jetson NVIDIA Jetson Orin Nano") == "host"  # no entry: the host's


def test_listing_names_imports_no_backend():
    """graph.py is imported by launch files: the registries it reads cost no heavy import."""
    heavy = ("numpy", "torch", "onnxruntime", "onnx", "tensorrt", "lava", "h5py", "rclpy")
    code = (
        "import sys, hsnn_perception.graph, hsnn_perception.core.registry; "
        f"print(','.join(m for m in {heavy!r} if m in sys.modules))"
    )
    assert _python(code) == ""


def test_loading_one_backend_imports_only_its_own_packages(default_bundle_dir):
    """The onnxruntime classifier imports neither torch nor tensorrt; the native SNN no Lava."""
    code = (
        "import sys\n"
        "def loaded(names): return sorted(set(names) & {m.split('.')[0] for m in sys.modules})\n"
        "from hsnn_perception.core.hybrid.bundle import ModelBundle\n"
        "from hsnn_perception.core.ann.backends import create_backend\n"
        "from hsnn_perception.core.snn.runtime import load_snn\n"
        f"b = ModelBundle.load({str(default_bundle_dir)!r})\n"
        "create_backend('onnxruntime', b.ann_file, providers='cpu').close()\n"
        "ann = loaded(['onnxruntime', 'torch', 'tensorrt', 'lava'])\n"
        "load_snn(b.snn_file, 'native-numpy').close()\n"
        "snn = loaded(['lava', 'tensorrt'])\n"
        "print(ann, snn)\n"
    )
    assert _python(code) == "['onnxruntime'] []"


def test_every_stage_names_a_node_class_its_executable_runs():
    # graph.py builds each NodeSpec from these; an entry pointing at a class that is not there,
    # or two stages sharing a node name, would only show when the pipeline starts.
    from hsnn_perception.nodes.base import HsnnNode

    names = [registry.node_name(s) for s in registry.STAGES.names()]
    assert len(set(names)) == len(names)
    assert set(registry.ENERGY_STAGES) < set(registry.STAGES.names())
    for stage in registry.STAGES.names():
        entry = registry.STAGES.entry(stage)
        assert issubclass(entry.load(), HsnnNode), stage
        module = entry.target.partition(":")[0]
        executable = ROOT / "scripts" / str(entry.options["executable"])
        assert executable.is_file(), executable
        assert module in executable.read_text(), (executable, module)
