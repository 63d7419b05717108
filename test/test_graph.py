import ast
from pathlib import Path

import pytest

from hsnn_perception.graph import (
    LAUNCH_ARGUMENTS,
    pipeline,
    pipeline_from_arguments,
    qualified_name,
    specs_from_json,
    specs_to_json,
)

ROOT = Path(__file__).resolve().parents[1]


def test_pipeline_has_the_four_stages_and_the_aggregator():
    names = [s.name for s in pipeline()]
    assert names == [
        "event_driver",
        "snn_feature",
        "accumulator_bridge",
        "classifier",
        "energy_aggregator",
    ]
    executables = {s.executable for s in pipeline()}
    scripts = {p.name for p in (ROOT / "scripts").iterdir()}
    assert executables <= scripts, "every node has an installed executable for ros2 run"


def test_parameters_and_remappings_flow_into_specs():
    specs = pipeline(
        snn_backend="lava",
        interval=2,
        overrides={"classifier": {"precision": "fp16"}},
        remappings={"event_driver": (("events", "/dvs/events"),)},
    )
    by_name = {s.name: s for s in specs}
    assert by_name["snn_feature"].parameters["backend"] == "lava"
    assert by_name["accumulator_bridge"].parameters["interval"] == 2
    assert by_name["classifier"].parameters["precision"] == "fp16"
    assert by_name["event_driver"].remappings == (("events", "/dvs/events"),)


def test_json_round_trip():
    specs = pipeline(remappings={"classifier": (("tensors", "t2"),)})
    assert specs_from_json(specs_to_json(specs)) == specs


@pytest.mark.parametrize(
    "kwargs",
    [
        {"source": "webcam"},
        {"snn_backend": "gpu"},
        {"classifier_backend": "tflite"},
        {"overrides": {"nobody": {}}},
    ],
)
def test_unknown_choices_are_rejected(kwargs):
    with pytest.raises(ValueError):
        pipeline(**kwargs)


def test_launch_arguments_are_parsed_from_strings():
    specs = pipeline_from_arguments({"interval": "8", "speed": "0.5", "use_sim_time": "true"})
    by_name = {s.name: s for s in specs}
    assert by_name["accumulator_bridge"].parameters["interval"] == 8
    assert by_name["event_driver"].parameters["speed"] == 0.5
    assert all(s.parameters["use_sim_time"] is True for s in specs)
    with pytest.raises(ValueError, match="not a int"):
        pipeline_from_arguments({"interval": "two"})
    with pytest.raises(ValueError, match="boolean"):
        pipeline_from_arguments({"autostart": "maybe"})
    with pytest.raises(ValueError, match="unknown launch arguments"):
        pipeline_from_arguments({"colour": "red"})


def test_launch_file_declares_every_argument_from_the_graph():
    source = (ROOT / "launch" / "pipeline.launch.py").read_text()
    tree = ast.parse(source)
    imported = {
        a.name
        for n in ast.walk(tree)
        if isinstance(n, ast.ImportFrom) and n.module == "hsnn_perception.graph"
        for a in n.names
    }
    assert {"LAUNCH_ARGUMENTS", "pipeline_from_arguments"} <= imported
    assert "namespace" in LAUNCH_ARGUMENTS and "composed" in LAUNCH_ARGUMENTS


def test_qualified_names():
    assert qualified_name("robot1", "events") == "/robot1/events"
    assert qualified_name("", "events") == "/events"
    assert qualified_name("robot1", "/diagnostics") == "/diagnostics"


def test_launch_file_with_launch_testing_when_available():
    # launch_ros first: a bare `import launch` would find this repository's launch/ folder.
    pytest.importorskip("launch_ros", reason="launch_ros is not installable without ROS 2")
    import importlib.util

    import launch

    spec = importlib.util.spec_from_file_location("pl", ROOT / "launch" / "pipeline.launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    assert isinstance(description, launch.LaunchDescription)


def test_driver_window_length_and_aggregator_stages_follow_the_model(tmp_path):
    import json
    import shutil

    from hsnn_perception.core.bundle import ModelBundle

    default = ModelBundle.load(ROOT / "models" / "default")
    by_name = {s.name: s for s in pipeline()}
    assert by_name["event_driver"].parameters["window_us"] == default.window_us == 160_000
    assert by_name["energy_aggregator"].parameters["stages"] == [
        "driver",
        "snn",
        "bridge",
        "classifier",
    ]
    longer = tmp_path / "longer"
    shutil.copytree(ROOT / "models" / "default", longer)
    doc = json.loads((longer / "manifest.json").read_text())
    doc["bin_us"] = 20_000
    (longer / "manifest.json").write_text(json.dumps(doc))
    assert {s.name: s for s in pipeline(model=str(longer))}["event_driver"].parameters[
        "window_us"
    ] == 320_000
    # An unreadable model: no window length, no driver reports, the aggregator does not wait.
    missing = {s.name: s for s in pipeline(model=str(tmp_path / "nowhere"))}
    assert missing["event_driver"].parameters["window_us"] == 0
    assert missing["energy_aggregator"].parameters["stages"] == ["snn", "bridge", "classifier"]


def test_recorded_sources_at_speed_zero_are_lossless():
    def params(**kwargs):
        by_name = {s.name: s for s in pipeline(**kwargs)}
        return by_name["event_driver"].parameters, by_name["snn_feature"].parameters

    for source in ("synthetic", "rosbag", "aedat4"):
        driver, snn = params(source=source, speed=0.0)
        assert driver["flow_control"] is True
        assert driver["events_qos"] == snn["events_qos"] == "reliable"
    for kwargs in ({"speed": 1.0}, {"source": "camera", "speed": 0.0}, {"source": "network"}):
        driver, snn = params(**kwargs)
        assert driver["flow_control"] is False
        assert driver["events_qos"] == snn["events_qos"] == "sensor"
