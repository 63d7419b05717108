"""What a peer on the DDS domain cannot do to the pipeline (docs/security.md): change a
parameter (model, types, devices, cache directories) or have a module of its choosing imported;
and, under SROS2 in Enforce mode, join at all without an identity, or publish events and call
parameter services without permissions. The keystore is written by hsnn-keystore."""

from __future__ import annotations

import json
import os
import random
import shutil
import stat
import subprocess
import sys
import textwrap
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import rclpy
from rclpy.parameter import Parameter

from hsnn_perception.core.hybrid.bundle import ModelBundle
from hsnn_perception.graph import CLASSIFICATION, DIAGNOSTICS, EVENTS, pipeline
from hsnn_perception.launcher import ProcessGroup
from hsnn_perception.msg import TensorList
from hsnn_perception.nodes.base import reliable_qos
from hsnn_perception.nodes.conversions import make_tensor_list
from hsnn_perception.tools import security
from hsnn_perception.tools.monitor import LifecycleClient

from .test_bad_input import Probe, good_packets, start

ROOT = Path(__file__).resolve().parents[2]
ENCLAVE_FILES = (
    "cert.pem",
    "governance.p7s",
    "identity_ca.cert.pem",
    "key.pem",
    "permissions.p7s",
    "permissions.xml",
    "permissions_ca.cert.pem",
)
# rmw_fastrtps' words when Fast DDS was built without DDS Security (as in the PyPI wheels).
NO_FASTDDS_SECURITY = "doesn't have the security libraries"


@pytest.fixture
def ros():
    rclpy.init()
    yield
    rclpy.try_shutdown()


def call(probe: Probe, future, timeout_s: float = 30.0):  # noqa: ANN001, ANN201
    assert probe.spin_until(future.done, timeout_s), "no answer"
    return future.result()


# Read-only parameters ----
@pytest.mark.slow
def test_peer_cannot_change_model_types_or_cache_dir(ros, tmp_path, default_bundle_dir):
    """The red team's attack: set_parameters(model=...) and four lifecycle calls. Every change is
    refused with a reason, and after the transitions the node classifies as before."""
    from rclpy.parameter_client import AsyncParameterClient

    bundle = ModelBundle.load(default_bundle_dir)
    ns = f"sec_params_{random.randint(0, 10**6)}"
    with start({"classifier", "snn_feature"}, ns, tmp_path) as group:
        probe = Probe(ns)
        pub = probe.node.create_publisher(TensorList, "tensors", reliable_qos(50))
        x = np.random.default_rng(3).random(bundle.ann_input_shape).astype(np.float32)

        def classify(window_id: int):  # noqa: ANN202
            def published_and_seen() -> bool:
                pub.publish(make_tensor_list(window_id, 0, "", {bundle.ann_input_name: x}))
                return any(c.window_id == window_id for c in probe.received["classification"])

            assert probe.spin_until(published_and_seen, 60), group.log("classifier")
            return next(c for c in probe.received["classification"] if c.window_id == window_id)

        before = classify(1)
        classifier = AsyncParameterClient(probe.node, f"/{ns}/classifier")
        snn = AsyncParameterClient(probe.node, f"/{ns}/snn_feature")
        assert probe.spin_until(lambda: classifier.services_are_ready(), 30)
        assert probe.spin_until(lambda: snn.services_are_ready(), 30)
        names = ["model", "backend", "providers", "cache_dir", "energy_model_device"]
        launched = call(probe, classifier.get_parameters(names)).values

        evil = tmp_path / "evil"
        attempts = {
            classifier: [
                Parameter("model", value=str(evil / "model")),
                Parameter("backend", value="tensorrt"),
                Parameter("providers", value="cpu"),
                Parameter("cache_dir", value=str(evil / "engines")),
                Parameter("energy_model_device", value="nowhere"),
                Parameter("use_sim_time", value=True),  # declared by rclpy, no descriptor of ours
                Parameter("autostart", value=False),
            ],
            snn: [
                Parameter("event_type", value="evil_pkg/msg/EventPacket"),
                Parameter("model", value=str(evil / "model")),
                Parameter("backend", value="lava"),
            ],
        }
        for client, parameters in attempts.items():
            results = call(probe, client.set_parameters(parameters)).results
            assert len(results) == len(parameters)
            for parameter, result in zip(parameters, results, strict=True):
                assert not result.successful, f"{parameter.name} was changed by a peer"
                assert "read-only" in result.reason, result.reason
        batch = call(probe, classifier.set_parameters_atomically(attempts[classifier][:2])).result
        assert not batch.successful and "read-only" in batch.reason

        # The transitions any peer may still call (only SROS2 permissions can stop that) now
        # reload what was set at launch.
        node = LifecycleClient(probe.node, f"/{ns}/classifier")

        def spin(seconds: float) -> None:
            probe.executor.spin_once(timeout_sec=seconds)

        for transition in ("deactivate", "cleanup", "configure", "activate"):
            assert node.transition(transition, spin, 60), group.log("classifier")
        after_values = call(probe, classifier.get_parameters(names)).values
        assert [v.string_value for v in after_values] == [v.string_value for v in launched]
        after = classify(2)
        assert after.class_id == before.class_id and after.label == before.label
        np.testing.assert_allclose(after.scores, before.scores, rtol=1e-5)
        assert not evil.exists()
        # Every refused request is counted, so an attempt shows on /diagnostics.
        assert probe.spin_until(
            lambda: (
                int(probe.diag("classifier").get("errors.set_parameters", 0)) >= 1
                and int(probe.diag("snn_feature").get("errors.set_parameters", 0)) >= 1
            ),
            15,
        ), probe.diagnostics
        assert "refused set_parameters" in group.log("classifier")
        assert all(code is None for code in group.poll().values())


# event_type allowlist ----
def _trap_package(root: Path) -> Path:
    """A package whose import writes a marker file: proof of a module having been imported."""
    marker = root / "imported.marker"
    package = root / "evil_pkg"
    package.mkdir()
    code = f"from pathlib import Path\nPath({str(marker)!r}).write_text('imported')\n"
    (package / "__init__.py").write_text(code)
    (package / "msg.py").write_text(code + "EventPacket = object\n")
    # The trap works: importing it does write the marker (else the tests below prove nothing).
    env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    subprocess.run([sys.executable, "-c", "import evil_pkg.msg"], env=env, check=True)
    assert marker.read_text() == "imported"
    marker.unlink()
    return marker


def test_unknown_event_type_is_refused_before_any_import(tmp_path, monkeypatch):
    from hsnn_perception.nodes.snn_node import EVENT_TYPES, load_message_type

    marker = _trap_package(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("evil_pkg/msg/EventPacket", "evil_pkg/EventPacket", "os/path/join"):
        with pytest.raises(ValueError, match="not allowed"):
            load_message_type(name)
    assert not marker.exists() and "evil_pkg" not in sys.modules
    assert set(EVENT_TYPES) == {
        "hsnn_perception/msg/EventPacket",
        "event_camera_msgs/msg/EventPacket",
    }
    from hsnn_perception.msg import EventPacket

    assert load_message_type("hsnn_perception/msg/EventPacket") is EventPacket


@pytest.mark.slow
def test_snn_node_launched_with_an_unknown_event_type_imports_nothing(ros, tmp_path, monkeypatch):
    marker = _trap_package(tmp_path)
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    ns = f"sec_type_{random.randint(0, 10**6)}"
    overrides = {"snn_feature": {"event_type": "evil_pkg/msg/EventPacket"}}
    with start({"snn_feature"}, ns, tmp_path, **overrides) as group:
        probe = Probe(ns)
        assert probe.spin_until(lambda: int(probe.diag("snn_feature").get("errors", 0)) >= 1, 60), (
            probe.diagnostics
        )
        assert probe.diag("snn_feature")["lifecycle_state"] == "unconfigured"
        assert "not allowed" in probe.diag("snn_feature")["message"]
        assert group.poll()["snn_feature"] is None, "the node stays up"
    assert not marker.exists(), "the SNN node imported a module named by a parameter"


# Keystore ----
def _openssl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", *args], capture_output=True, text=True)


def test_keystore_layout_and_permissions(tmp_path):
    ns = "demo"
    policies = security.pipeline_policies(ns, composed=True)
    keystore = security.create_keystore(tmp_path / "ks", policies, domain_id=42)
    enclaves = {p.enclave for p in policies}
    assert {
        "/hsnn/event_driver",
        "/hsnn/snn_feature",
        "/hsnn/accumulator_bridge",
        "/hsnn/classifier",
        "/hsnn/energy_aggregator",
        "/hsnn/lifecycle_manager",
    } <= enclaves
    for name in ("identity_ca", "permissions_ca"):
        assert (keystore / "public" / f"{name}.cert.pem").is_file()
        key = keystore / "private" / f"{name}.key.pem"
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    grants: dict[str, tuple[set[str], set[str]]] = {}
    for policy in policies:
        directory = keystore / "enclaves" / policy.enclave.lstrip("/")
        assert sorted(p.name for p in directory.iterdir()) == sorted(ENCLAVE_FILES)
        assert stat.S_IMODE((directory / "key.pem").stat().st_mode) == 0o600
        root = ET.parse(directory / "permissions.xml").getroot()
        grant = root.find("permissions/grant")
        assert grant.findtext("subject_name") == f"CN={policy.enclave}"
        assert grant.findtext("default") == "DENY"
        assert grant.findtext("allow_rule/domains/id") == "42"
        published = {t.text for t in grant.findall("allow_rule/publish/topics/topic")}
        subscribed = {t.text for t in grant.findall("allow_rule/subscribe/topics/topic")}
        assert "ros_discovery_info" in published & subscribed
        grants[policy.enclave] = published, subscribed
    assert (
        ET.parse(keystore / "enclaves" / "governance.xml")
        .getroot()
        .findtext("domain_access_rules/domain_rule/allow_unauthenticated_participants")
        == "false"
    )

    pub, sub = grants["/hsnn/classifier"]
    assert "rt/demo/tensors" in sub and "rt/demo/classification" in pub
    assert "rt/demo/events" not in pub | sub
    # It serves its parameter and lifecycle services (needed to exist), calls none.
    assert "rq/demo/classifier/set_parametersRequest" in sub
    assert "rr/demo/classifier/set_parametersReply" in pub
    assert not any(t.startswith("rq/") for t in pub)
    assert grants["/hsnn/snn_feature"][1] >= {"rt/demo/events"}
    assert "rt/demo/events" in grants["/hsnn/event_driver"][0]
    writers_of_events = {e for e, (p, _) in grants.items() if "rt/demo/events" in p}
    assert writers_of_events == {"/hsnn/event_driver", "/hsnn/composed_pipeline"}
    # No enclave may set a parameter; only the lifecycle manager (and the composed process that
    # holds it) may change a lifecycle state.
    for enclave, (p, _) in grants.items():
        assert not any("set_parameters" in t and t.startswith("rq/") for t in p), enclave
    change_state_callers = {
        e for e, (p, _) in grants.items() if "rq/demo/classifier/change_stateRequest" in p
    }
    assert change_state_callers == {"/hsnn/lifecycle_manager", "/hsnn/composed_pipeline"}
    monitor_pub, monitor_sub = grants[security.MONITOR_ENCLAVE]
    assert "rq/demo/classifier/get_parametersRequest" in monitor_pub
    assert "rt/demo/classification" in monitor_sub and "rt/diagnostics" in monitor_sub


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl command to cross-check")
def test_keystore_signatures_verify_with_openssl(tmp_path):
    """An independent implementation (the openssl command) accepts the certificates and the
    S/MIME signatures, and rejects a document changed after signing."""
    keystore = security.create_keystore(
        tmp_path / "ks", security.pipeline_policies(), domain_id=0, days=30
    )
    directory = keystore / "enclaves" / "hsnn" / "classifier"
    identity_ca = directory / "identity_ca.cert.pem"
    permissions_ca = directory / "permissions_ca.cert.pem"
    result = _openssl("verify", "-CAfile", str(identity_ca), str(directory / "cert.pem"))
    assert result.returncode == 0, result.stderr
    # The identity is not vouched for by the other CA: two CAs, two roles.
    result = _openssl("verify", "-CAfile", str(permissions_ca), str(directory / "cert.pem"))
    assert result.returncode != 0
    subject = _openssl("x509", "-in", str(directory / "cert.pem"), "-noout", "-subject").stdout
    assert "/hsnn/classifier" in subject
    for signed, plain in (
        (directory / "permissions.p7s", directory / "permissions.xml"),
        (directory / "governance.p7s", keystore / "enclaves" / "governance.xml"),
    ):
        result = _openssl(
            "smime", "-verify", "-in", str(signed), "-CAfile", str(permissions_ca), "-text"
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.replace("\r\n", "\n") == plain.read_text()
    tampered = tmp_path / "tampered.p7s"
    text = (directory / "permissions.p7s").read_text()
    assert "rt/tensors" in text
    tampered.write_text(text.replace("rt/tensors", "rt/events!"))
    result = _openssl("smime", "-verify", "-in", str(tampered), "-CAfile", str(permissions_ca))
    assert result.returncode != 0


def test_keystore_script(tmp_path):
    script = [sys.executable, str(ROOT / "scripts" / "hsnn-keystore")]
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    result = subprocess.run([*script, "--help"], capture_output=True, text=True, env=env)
    assert result.returncode == 0 and "usage" in result.stdout.lower()
    result = subprocess.run([*script, "--no-such-option"], capture_output=True, text=True, env=env)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    result = subprocess.run(
        [*script, str(tmp_path / "ks"), "--domain-id", "999"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 2 and "domain id" in result.stderr
    result = subprocess.run(
        [*script, str(tmp_path / "ks"), "--namespace", "cam1", "--domain-id", "3"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert "ROS_SECURITY_KEYSTORE" in result.stdout
    permissions = (tmp_path / "ks/enclaves/hsnn/snn_feature/permissions.xml").read_text()
    assert "<topic>rt/cam1/events</topic>" in permissions and "<id>3</id>" in permissions


# rcl's security layer ----
def _run_classifier(tmp_path: Path, env: dict[str, str], timeout_s: float = 30.0) -> tuple:
    """Start the classifier in its enclave with ``env``; (exit code or None, log)."""
    specs = pipeline(stages=["classifier"], autostart=False)
    group = ProcessGroup(specs, env=env, log_dir=tmp_path, enclaves=True).start()
    try:
        deadline = time.monotonic() + timeout_s
        while group.poll()["classifier"] is None and time.monotonic() < deadline:
            time.sleep(0.1)
        return group.poll()["classifier"], group.log("classifier")
    finally:
        group.stop()


@pytest.mark.slow
def test_enforce_without_a_keystore_refuses_to_start(tmp_path):
    enforce = {"ROS_SECURITY_ENABLE": "true", "ROS_SECURITY_STRATEGY": "Enforce"}
    empty = tmp_path / "keystore"
    empty.mkdir()
    code, log = _run_classifier(tmp_path, {**enforce, "ROS_SECURITY_KEYSTORE": str(empty)})
    assert code not in (None, 0), log
    # rcl's own message, naming the enclave directory it did not find
    assert "SECURITY ERROR" in log and "enclaves/hsnn/classifier' does not exist" in log, log
    # No ROS_SECURITY_KEYSTORE at all: rcl refuses too (its message then is less helpful:
    # "failed to initialize rcl: error not set"; docs/security.md says what it means).
    env = {**enforce, "ROS_SECURITY_KEYSTORE": ""}
    code, log = _run_classifier(tmp_path, env)
    assert code not in (None, 0), log
    assert "failed to initialize rcl" in log, log


# SROS2, Enforce ----
PARTICIPANT = textwrap.dedent(
    """
    import json, sys, rclpy
    from rclpy.node import Node
    rclpy.init(args=["--ros-args", "--enclave", sys.argv[1]])
    try:
        Node(sys.argv[2], namespace=sys.argv[3])
        print(json.dumps({"error": None}))
    except Exception as exc:
        print(json.dumps({"error": str(exc)}))
    """
)


def secured_participant_error(keystore: Path, enclave: str, node: str, ns: str) -> str | None:
    """Start one participant in ``enclave`` under Enforce; rmw's error if it cannot start."""
    env = {
        **os.environ,
        "ROS_SECURITY_KEYSTORE": str(keystore),
        "ROS_SECURITY_ENABLE": "true",
        "ROS_SECURITY_STRATEGY": "Enforce",
    }
    result = subprocess.run(
        [sys.executable, "-c", PARTICIPANT, enclave, node, ns],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if not lines:
        return f"participant exited with {result.returncode}: {result.stderr[-2000:]}"
    return json.loads(lines[-1])["error"]


UNSECURED_INTRUDER = textwrap.dedent(
    """
    import json, sys, time, rclpy
    from rclpy.node import Node
    from rcl_interfaces.srv import SetParameters
    from hsnn_perception.msg import EventPacket
    from hsnn_perception.nodes.base import sensor_qos
    rclpy.init()
    node = Node("unsecured_intruder", namespace=sys.argv[1])
    pub = node.create_publisher(EventPacket, "events", sensor_qos(10))
    client = node.create_client(SetParameters, "classifier/set_parameters")
    deadline = time.monotonic() + float(sys.argv[2])
    matched = ready = False
    while time.monotonic() < deadline:
        msg = EventPacket(width=128, height=128, encoding="mono", seq=1)
        msg.events = bytes(8 * 100)
        pub.publish(msg)
        matched |= pub.get_subscription_count() > 0
        ready |= client.service_is_ready()
        rclpy.spin_once(node, timeout_sec=0.05)
    print(json.dumps({"matched": matched, "service_ready": ready}))
    """
)


@pytest.mark.slow
def test_sros2_enforce_keeps_unauthorised_participants_out(
    tmp_path, default_bundle_dir, monkeypatch
):
    """The pipeline in its enclaves: an authorised participant's events are classified; one
    with a valid identity but no permissions cannot create an events publisher nor a parameter
    client; one without an identity sees nothing and reaches nothing."""
    from rcl_interfaces.srv import GetParameters
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
    from rclpy.node import Node
    from rclpy.parameter_client import AsyncParameterClient

    from hsnn_perception.msg import Classification, EventPacket
    from hsnn_perception.nodes.base import sensor_qos

    ns = f"sec_sros2_{random.randint(0, 10**6)}"
    operator = security.node_policy(
        "/hsnn_test/operator",
        "operator",
        ns,
        lifecycle=False,
        publish=[EVENTS],
        subscribe=[CLASSIFICATION, DIAGNOSTICS],
        call=["classifier/get_parameters"],
    )
    intruder = security.node_policy("/hsnn_test/intruder", "intruder", ns, lifecycle=False)
    keystore = security.create_keystore(
        tmp_path / "ks",
        [*security.pipeline_policies(ns), operator, intruder],
        domain_id=int(os.environ.get("ROS_DOMAIN_ID", "0")),
    )
    error = secured_participant_error(keystore, operator.enclave, "operator", ns)
    if error and NO_FASTDDS_SECURITY in error:
        pytest.skip(f"Fast DDS of this ROS 2 install has no DDS Security: {error.strip()}")
    assert error is None, error

    for key, value in (
        ("ROS_SECURITY_KEYSTORE", str(keystore)),
        ("ROS_SECURITY_ENABLE", "true"),
        ("ROS_SECURITY_STRATEGY", "Enforce"),
    ):
        monkeypatch.setenv(key, value)
    bundle = ModelBundle.load(default_bundle_dir)
    specs = pipeline(stages=["snn", "bridge", "classifier"])
    contexts = []
    with ProcessGroup(specs, namespace=ns, log_dir=tmp_path, enclaves=True).start() as group:
        try:

            def participant(enclave: str, name: str) -> tuple[Node, SingleThreadedExecutor]:
                context = Context()
                rclpy.init(args=["--ros-args", "--enclave", enclave], context=context)
                contexts.append(context)
                node = Node(name, namespace=ns, context=context)
                executor = SingleThreadedExecutor(context=context)
                executor.add_node(node)
                return node, executor

            node, executor = participant(operator.enclave, "operator")
            received: list[Classification] = []
            diagnostics: dict[str, dict[str, str]] = {}

            def on_diagnostics(msg) -> None:  # noqa: ANN001
                for status in msg.status:
                    diagnostics[status.hardware_id] = {kv.key: kv.value for kv in status.values}

            from diagnostic_msgs.msg import DiagnosticArray

            node.create_subscription(Classification, CLASSIFICATION, received.append, 50)
            node.create_subscription(DiagnosticArray, DIAGNOSTICS, on_diagnostics, 50)
            events = node.create_publisher(EventPacket, EVENTS, sensor_qos(100))

            def spin_until(predicate, timeout_s: float) -> bool:  # noqa: ANN001
                deadline = time.monotonic() + timeout_s
                while time.monotonic() < deadline:
                    executor.spin_once(timeout_sec=0.05)
                    if predicate():
                        return True
                return False

            def packets_received() -> int:
                values = diagnostics.get(f"/{ns}/snn_feature", {})
                return int(values.get("received.packets", -1))

            assert spin_until(lambda: events.get_subscription_count() > 0, 90), group.log(
                "snn_feature"
            )
            spin_until(lambda: False, 1.0)  # both ends matched
            for msg in good_packets(bundle, 3):
                events.publish(msg)
                spin_until(lambda: False, 0.05)
            assert spin_until(lambda: len(received) >= 1, 90), "\n".join(
                group.log(n) for n in ("snn_feature", "accumulator_bridge", "classifier")
            )
            assert spin_until(lambda: packets_received() > 0, 15)
            spin_until(lambda: False, 2.0)
            packets_before = packets_received()

            # A valid identity without permissions: rmw refuses the entities themselves.
            bad_node, _ = participant(intruder.enclave, "intruder")
            with pytest.raises(_rclpy.RCLError):
                bad_node.create_publisher(EventPacket, EVENTS, sensor_qos(10))
            with pytest.raises(_rclpy.RCLError):
                AsyncParameterClient(bad_node, f"/{ns}/classifier")

            # No identity at all: a participant without security (another process).
            env = {**os.environ, "ROS_SECURITY_ENABLE": "false"}
            result = subprocess.run(
                [sys.executable, "-c", UNSECURED_INTRUDER, ns, "8"],
                capture_output=True,
                text=True,
                env=env,
                timeout=120,
            )
            outcome = json.loads(result.stdout.strip().splitlines()[-1])
            assert outcome == {"matched": False, "service_ready": False}, result.stderr

            # Nothing of theirs reached the SNN node; the model is the one launched.
            spin_until(lambda: False, 3.0)
            assert packets_received() == packets_before
            get = node.create_client(GetParameters, f"/{ns}/classifier/get_parameters")
            assert spin_until(get.service_is_ready, 30)
            future = get.call_async(GetParameters.Request(names=["model"]))
            assert spin_until(future.done, 30)
            assert future.result().values[0].string_value == ""  # the shipped default
            assert all(code is None for code in group.poll().values())
        finally:
            for context in contexts:
                rclpy.try_shutdown(context=context)
