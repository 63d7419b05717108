"""An SROS2 keystore for the hsnn pipeline, written without the sros2 package (the ROS 2 wheels
from PyPI do not have it): certificate authorities, a signed governance document and, per node,
an enclave with its identity and its signed permissions. docs/security.md says how to use it.

Layout, as rcl (ROS_SECURITY_KEYSTORE, ``--enclave``) and rmw_security_common look it up::

    <keystore>/public/identity_ca.cert.pem, permissions_ca.cert.pem
    <keystore>/private/identity_ca.key.pem, permissions_ca.key.pem        (mode 0600)
    <keystore>/enclaves/governance.xml, governance.p7s
    <keystore>/enclaves/<enclave>/identity_ca.cert.pem   the CA that vouches for every identity
                                  permissions_ca.cert.pem the CA that signed the XML documents
                                  governance.p7s          domain-wide rules (S/MIME signed)
                                  cert.pem, key.pem       this enclave's identity (CN=<enclave>)
                                  permissions.xml         what it may publish and subscribe
                                  permissions.p7s         the same, signed (the file DDS reads)

The files are copies, not symlinks (as sros2 makes them), so that one enclave's directory can be
copied to the machine that runs that node alone. Keys are ECDSA P-256 (DDS Security 9.3.1).

Permissions name DDS topics, which ROS 2 derives from its names: topic ``/ns/x`` is ``rt/ns/x``;
service ``/ns/s`` is ``rq/ns/sRequest`` (requests) and ``rr/ns/sReply`` (replies); every
participant also publishes and reads ``ros_discovery_info`` (the graph cache of rmw_dds_common).

The certificate authorities, the documents and the command line that writes them are one
procedure, kept in one module (a little over 500 lines) so it reads in the order it runs.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hsnn_perception.graph import (
    CLASSIFICATION,
    CLOCK,
    DIAGNOSTICS,
    ENERGY,
    ENERGY_TOTAL,
    EVENTS,
    LABELS,
    LIFECYCLE_MANAGER,
    SPIKES,
    STAGE_NODES,
    TENSORS,
)

ENCLAVE_ROOT = "/hsnn"
# The enclave of a process running every node (hsnn_perception.runner): one process is one DDS
# participant, so it holds the union of the nodes' permissions.
COMPOSED_ENCLAVE = f"{ENCLAVE_ROOT}/composed_pipeline"
MONITOR_ENCLAVE = f"{ENCLAVE_ROOT}/monitor"
ROS_DISCOVERY_TOPIC = "ros_discovery_info"
VALID_DAYS = 3650

# What rclpy creates for every node, and in addition for every lifecycle node (seen on the wheels'
# graph: get_service_names_and_types_by_node of the running pipeline).
PARAMETER_SERVICES = (
    "describe_parameters",
    "get_parameter_types",
    "get_parameters",
    "get_type_description",
    "list_parameters",
    "set_parameters",
    "set_parameters_atomically",
)
READ_PARAMETER_SERVICES = (
    "describe_parameters",
    "get_parameter_types",
    "get_parameters",
    "list_parameters",
)
LIFECYCLE_SERVICES = (
    "change_state",
    "get_available_states",
    "get_available_transitions",
    "get_state",
    "get_transition_graph",
)
# Topics of each stage node beyond what every node has (hsnn_perception.graph names them).
STAGE_TOPICS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # node: (publishes, subscribes); the driver reads classifications for its flow control
    "event_driver": ((EVENTS, LABELS, ENERGY, CLOCK), (CLASSIFICATION,)),
    "snn_feature": ((SPIKES, ENERGY), (EVENTS,)),
    "accumulator_bridge": ((TENSORS, ENERGY), (SPIKES,)),
    "classifier": ((CLASSIFICATION, ENERGY), (TENSORS,)),
    "energy_aggregator": ((ENERGY_TOTAL,), (ENERGY,)),
}


@dataclass(frozen=True)
class EnclavePolicy:
    """What the participant of one enclave may do, in ROS names (fully qualified).

    ``serve``: services it offers (it reads their requests and writes their replies); ``call``:
    services it may call. Everything else is denied, and so is talking to the domain at all for a
    participant without an identity from this keystore's CA.
    """

    enclave: str
    publish: tuple[str, ...] = ()
    subscribe: tuple[str, ...] = ()
    serve: tuple[str, ...] = ()
    call: tuple[str, ...] = ()
    description: str = field(default="", compare=False)

    def dds_topics(self) -> tuple[list[str], list[str]]:
        """(published, subscribed) DDS topic names, sorted, ros_discovery_info included."""
        pub = {ROS_DISCOVERY_TOPIC, *(dds_topic(t) for t in self.publish)}
        sub = {ROS_DISCOVERY_TOPIC, *(dds_topic(t) for t in self.subscribe)}
        for service in self.serve:
            request, reply = dds_service_topics(service)
            sub.add(request)
            pub.add(reply)
        for service in self.call:
            request, reply = dds_service_topics(service)
            pub.add(request)
            sub.add(reply)
        return sorted(pub), sorted(sub)


def qualify(name: str, namespace: str = "") -> str:
    """A ROS name made absolute the way rcl resolves a relative one in ``namespace``."""
    if name.startswith("/"):
        return name
    namespace = "/" + namespace.strip("/") if namespace.strip("/") else ""
    return f"{namespace}/{name}"


def dds_topic(topic: str) -> str:
    """The DDS topic of ROS topic ``topic`` (absolute): ``/ns/x`` -> ``rt/ns/x``."""
    _check_absolute(topic)
    return "rt" + topic


def dds_service_topics(service: str) -> tuple[str, str]:
    """(request, reply) DDS topics of ROS service ``service`` (absolute)."""
    _check_absolute(service)
    return f"rq{service}Request", f"rr{service}Reply"


def _check_absolute(name: str) -> None:
    if not name.startswith("/") or "//" in name or name.endswith("/"):
        raise ValueError(f"{name!r} is not an absolute ROS name")


def node_policy(
    enclave: str,
    node: str,
    namespace: str = "",
    *,
    lifecycle: bool = True,
    publish: Iterable[str] = (),
    subscribe: Iterable[str] = (),
    call: Iterable[str] = (),
    description: str = "",
) -> EnclavePolicy:
    """The policy of an enclave running ROS node ``node``: its own topics and services plus what
    rclpy gives every node (rosout, parameter events, /diagnostics here, /clock for sim time, the
    parameter services it serves and, for a lifecycle node, the lifecycle services and its
    transition events). Serving set_parameters is needed to create the node at all; refusing a
    change is done by the node (read-only parameters) and by no enclave being allowed to call
    it."""
    own = qualify(node, namespace)
    pub = {"/rosout", "/parameter_events", DIAGNOSTICS, *(qualify(t, namespace) for t in publish)}
    sub = {CLOCK, *(qualify(t, namespace) for t in subscribe)}
    serve = {f"{own}/{s}" for s in PARAMETER_SERVICES}
    if lifecycle:
        serve |= {f"{own}/{s}" for s in LIFECYCLE_SERVICES}
        pub.add(f"{own}/transition_event")
    return EnclavePolicy(
        enclave=enclave,
        publish=tuple(sorted(pub)),
        subscribe=tuple(sorted(sub)),
        serve=tuple(sorted(serve)),
        call=tuple(sorted(qualify(s, namespace) for s in call)),
        description=description,
    )


def pipeline_policies(
    namespace: str = "", *, composed: bool = False, monitor: bool = True
) -> list[EnclavePolicy]:
    """One enclave per node of the pipeline (``/hsnn/<node name>``), as graph.pipeline names the
    nodes, in ``namespace``; with ``monitor`` one for the operator tools (read outputs,
    diagnostics, parameters and states; change nothing), with ``composed`` one for a process that
    runs every node."""
    policies = []
    for node, (publish, subscribe) in STAGE_TOPICS.items():
        policies.append(
            node_policy(
                f"{ENCLAVE_ROOT}/{node}",
                node,
                namespace,
                publish=publish,
                subscribe=subscribe,
                description=f"the {node} node",
            )
        )
    managed = sorted(STAGE_NODES.values())
    policies.append(
        node_policy(
            f"{ENCLAVE_ROOT}/{LIFECYCLE_MANAGER}",
            LIFECYCLE_MANAGER,
            namespace,
            lifecycle=False,
            # The only enclave that may change a node's lifecycle state.
            call=[f"{n}/{s}" for n in managed for s in ("change_state", "get_state")],
            description="the lifecycle manager: drives the stage nodes' lifecycle",
        )
    )
    if monitor:
        outputs = (LABELS, CLASSIFICATION, ENERGY, ENERGY_TOTAL, SPIKES, TENSORS, DIAGNOSTICS)
        reads = [f"{n}/{s}" for n in managed for s in ("get_state", *READ_PARAMETER_SERVICES)]
        policies.append(
            EnclavePolicy(
                enclave=MONITOR_ENCLAVE,
                publish=("/rosout", "/parameter_events"),
                subscribe=tuple(sorted(qualify(t, namespace) for t in outputs)),
                call=tuple(sorted(qualify(s, namespace) for s in reads)),
                description="operator tools: read outputs, parameters and states",
            )
        )
    if composed:
        policies.append(union_policy(COMPOSED_ENCLAVE, policies[: len(STAGE_TOPICS) + 1]))
    return policies


def union_policy(enclave: str, policies: Sequence[EnclavePolicy]) -> EnclavePolicy:
    """One enclave allowed what all ``policies`` are (several nodes in one process)."""

    def merged(attribute: str) -> tuple[str, ...]:
        return tuple(sorted({name for p in policies for name in getattr(p, attribute)}))

    return EnclavePolicy(
        enclave,
        publish=merged("publish"),
        subscribe=merged("subscribe"),
        serve=merged("serve"),
        call=merged("call"),
        description="every node in one process",
    )


# XML documents ----
def _sub(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
    element = ET.SubElement(parent, tag)
    if text is not None:
        element.text = text
    return element


def _dds_root(schema: str) -> ET.Element:
    return ET.Element(
        "dds",
        {
            "xmlns:xsi": "http://www.w3.org/2001/XMLSchema-instance",
            "xsi:noNamespaceSchemaLocation": (
                f"http://www.omg.org/spec/DDS-SECURITY/20170901/{schema}"
            ),
        },
    )


def _to_bytes(root: ET.Element) -> bytes:
    ET.indent(root)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="utf-8") + b"\n"


def governance_xml(domain_id: int) -> bytes:
    """Domain rules: only authenticated participants join; discovery, liveliness and the data of
    every topic are encrypted, and who may read or write a topic is checked against each
    participant's signed permissions."""
    root = _dds_root("omg_shared_ca_governance.xsd")
    rule = _sub(_sub(root, "domain_access_rules"), "domain_rule")
    _sub(_sub(rule, "domains"), "id", str(domain_id))
    _sub(rule, "allow_unauthenticated_participants", "false")
    _sub(rule, "enable_join_access_control", "true")
    _sub(rule, "discovery_protection_kind", "ENCRYPT")
    _sub(rule, "liveliness_protection_kind", "ENCRYPT")
    _sub(rule, "rtps_protection_kind", "SIGN")
    topic_rule = _sub(_sub(rule, "topic_access_rules"), "topic_rule")
    _sub(topic_rule, "topic_expression", "*")
    _sub(topic_rule, "enable_discovery_protection", "true")
    _sub(topic_rule, "enable_liveliness_protection", "true")
    _sub(topic_rule, "enable_read_access_control", "true")
    _sub(topic_rule, "enable_write_access_control", "true")
    _sub(topic_rule, "metadata_protection_kind", "ENCRYPT")
    _sub(topic_rule, "data_protection_kind", "ENCRYPT")
    return _to_bytes(root)


def _xml_time(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S")


def permissions_xml(
    policy: EnclavePolicy,
    domain_id: int,
    not_before: datetime.datetime,
    not_after: datetime.datetime,
) -> bytes:
    """The DDS permissions document of ``policy``: one grant to the identity ``CN=<enclave>``,
    allowing its topics in ``domain_id`` and denying everything else."""
    root = _dds_root("omg_shared_ca_permissions.xsd")
    grant = _sub(_sub(root, "permissions"), "grant", None)
    grant.set("name", policy.enclave)
    _sub(grant, "subject_name", f"CN={policy.enclave}")
    validity = _sub(grant, "validity")
    _sub(validity, "not_before", _xml_time(not_before))
    _sub(validity, "not_after", _xml_time(not_after))
    rule = _sub(grant, "allow_rule")
    _sub(_sub(rule, "domains"), "id", str(domain_id))
    published, subscribed = policy.dds_topics()
    for kind, topics in (("publish", published), ("subscribe", subscribed)):
        parent = _sub(_sub(rule, kind), "topics")
        for topic in topics:
            _sub(parent, "topic", topic)
    _sub(grant, "default", "DENY")
    return _to_bytes(root)


# Keys, certificates, signatures (the `cryptography` package) ----
def _crypto() -> Any:
    try:
        import cryptography  # noqa: F401
    except ImportError:
        raise SystemExit(
            "hsnn-keystore needs the 'cryptography' package: pip install cryptography"
        ) from None
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import pkcs7

    return x509, hashes, serialization, ec, pkcs7


def _make_cert(
    common_name: str,
    issuer: tuple[Any, Any] | None,
    not_before: datetime.datetime,
    not_after: datetime.datetime,
) -> tuple[Any, Any]:
    """(certificate, private key): a self-signed CA if ``issuer`` is None, else an identity
    certificate signed by ``issuer`` = (CA certificate, CA key)."""
    x509, hashes, _, ec, _ = _crypto()
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, common_name)])
    is_ca = issuer is None
    issuer_cert, issuer_key = (None, key) if is_ca else issuer
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject if is_ca else issuer_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=0 if is_ca else None), True)
    )
    return builder.sign(issuer_key, hashes.SHA256()), key


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Created with its final mode: a key is never readable by others, not even for a moment.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


def _pem_cert(cert: Any) -> bytes:
    _, _, serialization, _, _ = _crypto()
    return cert.public_bytes(serialization.Encoding.PEM)


def _pem_key(key: Any) -> bytes:
    _, _, serialization, _, _ = _crypto()
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),  # the node reads it unattended; the file mode protects it
    )


def sign_smime(data: bytes, cert: Any, key: Any) -> bytes:
    """``data`` as an S/MIME message with a detached PKCS#7 signature (text/plain), the form DDS
    Security reads governance and permissions documents in."""
    _, hashes, serialization, _, pkcs7 = _crypto()
    return (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(data)
        .add_signer(cert, key, hashes.SHA256())
        .sign(
            serialization.Encoding.SMIME,
            [pkcs7.PKCS7Options.Text, pkcs7.PKCS7Options.DetachedSignature],
        )
    )


def _load_ca(keystore: Path, which: str) -> tuple[Any, Any]:
    x509, _, serialization, _, _ = _crypto()
    cert = x509.load_pem_x509_certificate((keystore / "public" / f"{which}.cert.pem").read_bytes())
    key = serialization.load_pem_private_key(
        (keystore / "private" / f"{which}.key.pem").read_bytes(), None
    )
    return cert, key


def enclave_dir(keystore: Path, enclave: str) -> Path:
    """Where rcl looks for ``enclave``'s files: <keystore>/enclaves/<enclave without leading />."""
    parts = [p for p in enclave.split("/") if p]
    if not enclave.startswith("/") or not parts or any(p in (".", "..") for p in parts):
        raise ValueError(f"enclave {enclave!r} is not an absolute path like /hsnn/classifier")
    return Path(keystore, "enclaves", *parts)


def create_keystore(
    keystore: Path | str,
    policies: Sequence[EnclavePolicy],
    domain_id: int,
    *,
    days: int = VALID_DAYS,
) -> Path:
    """Write (or extend) an SROS2 keystore at ``keystore`` for ``domain_id``: the two CAs if
    they are not there yet, the signed governance document, and an enclave per policy (an
    existing enclave gets a new identity and new permissions). Returns the keystore path."""
    if not 0 <= int(domain_id) <= 232:
        raise ValueError(f"domain id {domain_id} is not a ROS domain id (0..232)")
    keystore = Path(keystore)
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    # An hour back: clocks of the machines in a domain are never exactly alike.
    not_before, not_after = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=days)
    for which in ("identity_ca", "permissions_ca"):
        if not (keystore / "private" / f"{which}.key.pem").is_file():
            cert, key = _make_cert(f"hsnn {which}", None, not_before, not_after)
            _write(keystore / "private" / f"{which}.key.pem", _pem_key(key), 0o600)
            _write(keystore / "public" / f"{which}.cert.pem", _pem_cert(cert))
    os.chmod(keystore / "private", 0o700)
    identity_ca = _load_ca(keystore, "identity_ca")
    permissions_ca = _load_ca(keystore, "permissions_ca")
    governance = governance_xml(int(domain_id))
    signed_governance = sign_smime(governance, *permissions_ca)
    _write(keystore / "enclaves" / "governance.xml", governance)
    _write(keystore / "enclaves" / "governance.p7s", signed_governance)
    for policy in policies:
        directory = enclave_dir(keystore, policy.enclave)
        cert, key = _make_cert(policy.enclave, identity_ca, not_before, not_after)
        permissions = permissions_xml(policy, int(domain_id), not_before, not_after)
        _write(directory / "key.pem", _pem_key(key), 0o600)
        _write(directory / "cert.pem", _pem_cert(cert))
        _write(directory / "identity_ca.cert.pem", _pem_cert(identity_ca[0]))
        _write(directory / "permissions_ca.cert.pem", _pem_cert(permissions_ca[0]))
        _write(directory / "governance.p7s", signed_governance)
        _write(directory / "permissions.xml", permissions)
        _write(directory / "permissions.p7s", sign_smime(permissions, *permissions_ca))
    return keystore


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="hsnn-keystore",
        description="Write an SROS2 keystore for the hsnn pipeline: one enclave per node "
        "(/hsnn/<node>), each allowed only its own topics and services (docs/security.md).",
    )
    ap.add_argument("keystore", type=Path, help="keystore directory (created or extended)")
    ap.add_argument(
        "--namespace", default="", help="namespace the pipeline runs in (default: none)"
    )
    ap.add_argument(
        "--domain-id",
        type=int,
        default=None,
        help="DDS domain the documents are valid for (default: $ROS_DOMAIN_ID, else 0)",
    )
    ap.add_argument("--days", type=int, default=VALID_DAYS, help="validity of the certificates")
    ap.add_argument(
        "--composed", action="store_true", help=f"also {COMPOSED_ENCLAVE} (all nodes, one process)"
    )
    ap.add_argument("--no-monitor", action="store_true", help=f"leave out {MONITOR_ENCLAVE}")
    ap.add_argument(
        "--print-permissions", action="store_true", help="print each enclave's DDS topics too"
    )
    args = ap.parse_args(argv)
    domain_id = args.domain_id
    if domain_id is None:
        try:
            domain_id = int(os.environ.get("ROS_DOMAIN_ID") or 0)
        except ValueError:
            ap.error(f"ROS_DOMAIN_ID={os.environ['ROS_DOMAIN_ID']!r} is not a number")
    if args.days < 1:
        ap.error("--days must be at least 1")
    policies = pipeline_policies(
        args.namespace, composed=args.composed, monitor=not args.no_monitor
    )
    try:
        keystore = create_keystore(args.keystore, policies, domain_id, days=args.days)
    except (ValueError, OSError) as exc:
        print(f"hsnn-keystore: {exc}", file=sys.stderr)
        return 2
    for policy in policies:
        print(f"{policy.enclave}: {enclave_dir(keystore, policy.enclave)}")
        if args.print_permissions:
            published, subscribed = policy.dds_topics()
            print("  publish:   " + " ".join(published))
            print("  subscribe: " + " ".join(subscribed))
    print(
        f"\nexport ROS_SECURITY_KEYSTORE={keystore.resolve()}\n"
        "export ROS_SECURITY_ENABLE=true ROS_SECURITY_STRATEGY=Enforce\n"
        "and start each node with --ros-args --enclave /hsnn/<node name>"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
