import ast
from pathlib import Path

import pytest

from hsnn_perception.graph import (
    LAUNCH_ARGUMENTS,
    SPLIT_HOLD_S,
    STAGE_NODES,
    parameters_from_file,
    pipeline,
    pipeline_from_arguments,
    qualified_name,
    specs_from_json,
    specs_to_json,
    unmanaged,
)

ROOT = Path(__file__).resolve().parents[1]


def test_pipeline_has_the_four_stages_the_aggregator_and_their_manager():
    names = [s.name for s in pipeline()]
    assert names == [
        "event_driver",
        "snn_feature",
        "accumulator_bridge",
        "classifier",
        "energy_aggregator",
        "lifecycle_manager",
    ]
    executables = {s.executable for s in pipeline()}
    scripts = {p.name for p in (ROOT / "scripts").iterdir()}
    assert executables <= scripts, "every node has an installed executable for ros2 run"
    cmake = (ROOT / "CMakeLists.txt").read_text()
    assert all(f"scripts/{e}\n" in cmake for e in executables), "and CMake installs it"


def test_manager_brings_the_nodes_up_consumers_first_driver_last():
    specs = {s.name: s for s in pipeline()}
    assert specs["lifecycle_manager"].parameters["node_names"] == [
        "energy_aggregator",
        "classifier",
        "accumulator_bridge",
        "snn_feature",
        "event_driver",
    ]
    assert not any(s.parameters.get("autostart") for s in specs.values()), "no node self-starts"
    # Without autostart nothing brings them up: an outside manager (nav2's) does.
    assert "lifecycle_manager" not in {s.name for s in pipeline(autostart=False)}
    # A tool that starts the source itself takes it out of the manager's hands.
    spec = {s.name: s for s in unmanaged(pipeline(), "event_driver")}["lifecycle_manager"]
    assert "event_driver" not in spec.parameters["node_names"]


def test_recorded_sources_wait_for_a_listener_live_ones_never():
    for source, wait in (("synthetic", 1), ("rosbag", 1), ("aedat4", 1), ("camera", 0)):
        driver = {s.name: s for s in pipeline(source=source)}["event_driver"]
        assert driver.parameters["wait_for_subscribers"] == wait, source


def test_stages_select_a_subset_for_one_host():
    loihi_host = pipeline(stages=("driver", "snn"))
    assert [s.name for s in loihi_host] == ["event_driver", "snn_feature", "lifecycle_manager"]
    assert loihi_host[-1].parameters["node_names"] == ["snn_feature", "event_driver"]
    jetson = pipeline_from_arguments({"stages": "bridge, classifier,energy"})
    assert [s.name for s in jetson][:3] == ["accumulator_bridge", "classifier", "energy_aggregator"]
    with pytest.raises(ValueError, match="unknown stages"):
        pipeline(stages=("driver", "loihi"))


def test_parameters_file_matches_nodes_as_rcl_does(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(
        "/**:\n  ros__parameters: {qos_depth: 5}\n"
        "/robot1/classifier:\n  ros__parameters: {precision: fp16, nested: {a: 1}}\n"
        "/*/snn_feature:\n  ros__parameters: {backend: lava}\n"
        "classifier:\n  ros__parameters: {precision: int8}\n"
    )
    assert parameters_from_file(str(path), "/robot1/classifier") == {
        "qos_depth": 5,
        "precision": "fp16",
        "nested.a": 1,
    }
    # A key without a leading slash is absolute: it names the node outside any namespace.
    assert parameters_from_file(str(path), "/classifier")["precision"] == "int8"
    assert parameters_from_file(str(path), "/robot1/snn_feature")["backend"] == "lava"
    assert "backend" not in parameters_from_file(str(path), "/a/b/snn_feature")
    (tmp_path / "bad.yaml").write_text("- just a list\n")
    with pytest.raises(ValueError, match="not a mapping"):
        parameters_from_file(str(tmp_path / "bad.yaml"), "/x")
    with pytest.raises(ValueError, match="cannot read"):
        parameters_from_file(str(tmp_path / "missing.yaml"), "/x")


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
    assert len(specs) == 6
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

    from hsnn_perception.core.hybrid.bundle import ModelBundle

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


def test_a_recorded_source_waits_for_the_far_end_of_a_split_pipeline():
    def waits(stages, source="rosbag"):
        driver = {s.name: s for s in pipeline(stages=stages, source=source)}["event_driver"]
        return [t for t in driver.parameters["wait_for_topics"] if t]

    assert waits(("driver", "snn")) == ["snn/spikes"]  # the Loihi host of two
    assert waits(("driver", "snn", "bridge")) == ["tensors"]
    assert waits(tuple(STAGE_NODES)) == []  # all here: the manager orders them
    assert waits(("driver",)) == []  # the events subscriber is waited for anyway
    assert waits(("driver", "snn"), source="camera") == []  # a live source never waits


def test_a_split_pipeline_holds_what_it_publishes_until_the_other_host_matches():
    def holds(stages):
        specs = [s for s in pipeline(stages=stages) if s.name in STAGE_NODES.values()]
        return {s.name: s.parameters.get("hold_unmatched_s", 0.0) for s in specs}

    assert set(holds(("driver", "snn")).values()) == {SPLIT_HOLD_S}
    assert set(holds(("bridge", "classifier", "energy")).values()) == {SPLIT_HOLD_S}
    assert set(holds(tuple(STAGE_NODES)).values()) == {0.0}  # one host: bring-up orders it
