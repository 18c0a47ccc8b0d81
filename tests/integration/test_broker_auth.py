"""Who gets in: no plaintext, no anonymous access, no wrong password, no foreign or unmapped certificate.

Refusals are checked twice where it matters: with librdkafka (what the apps use) and with raw Kafka
requests over plain sockets, which show that the broker itself never answers an unauthenticated request.
Every refusal has a control next to it that gets in the same way with proper credentials, so a probe that
cannot connect at all does not pass as "refused".
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
import ssl
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from acl_probes import DENIED, connect, produce
from confluent_kafka import KafkaError
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from headwater.config import load_platform
from headwater.local.certs import CertificateAuthority
from headwater.spec import Authentication

if TYPE_CHECKING:
    from conftest import Provisioned

PLATFORM = load_platform("local")
SCRAM_PRINCIPALS = [p.name for p in PLATFORM.principals if p.authentication == Authentication.SCRAM]
API_VERSIONS, METADATA = 18, 3
REFUSAL_ERRORS = {
    KafkaError._AUTHENTICATION,
    KafkaError._TRANSPORT,
    KafkaError._SSL,
    KafkaError._ALL_BROKERS_DOWN,
}


# ---- raw Kafka requests --------------------------------------------------------------------------------------


def _request(api_key: int, correlation_id: int) -> bytes:
    """ApiVersions v0 or Metadata v4 (all topics) with a v1 request header."""
    client_id = b"headwater-auth-test"
    version, body = (4, struct.pack(">ib", -1, 0)) if api_key == METADATA else (0, b"")
    message = struct.pack(">hhih", api_key, version, correlation_id, len(client_id)) + client_id + body
    return struct.pack(">i", len(message)) + message


def _recv(sock: socket.socket, n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _answer(sock: socket.socket, request: bytes, correlation_id: int) -> bool:
    """Send a request; True when a whole Kafka response with our correlation id comes back."""
    try:
        sock.sendall(request)
        head = _recv(sock, 4)
        if head is None:
            return False
        (size,) = struct.unpack(">i", head)
        if not 4 <= size < 10_000_000:
            return False
        body = _recv(sock, size)
    except (OSError, ssl.SSLError):
        return False
    return body is not None and struct.unpack(">i", body[:4])[0] == correlation_id


def _raw_exchange(port: int, tls: ssl.SSLContext | None, requests: list[int]) -> list[bool]:
    """Open one connection and send the given requests in order; which of them were answered."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as plain:
        sock: socket.socket = plain
        if tls is not None:
            try:
                sock = tls.wrap_socket(plain, server_hostname="127.0.0.1")
            except (OSError, ssl.SSLError):
                return [False] * len(requests)
        answered = []
        for i, api_key in enumerate(requests, start=1):
            answered.append(_answer(sock, _request(api_key, 1000 + i), 1000 + i))
        return answered


def _tls(ca_file: Path, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca_file))
    if cert is not None:
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


def _ports(provisioned: Provisioned) -> dict[str, int]:
    p = provisioned.kafka.ports
    return {"sasl": p.sasl, "mtls": p.mtls, "controller": p.controller}


def _all_ports(provisioned: Provisioned) -> dict[str, int]:
    """The Kafka listeners and the metrics agent's HTTP port."""
    return {**_ports(provisioned), "metrics": provisioned.kafka.ports.metrics}


# ---- plaintext ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("listener", ["sasl", "mtls", "controller"])
def test_plaintext_gets_no_answer_on_any_listener(listener: str, provisioned: Provisioned) -> None:
    port = _ports(provisioned)[listener]
    assert _raw_exchange(port, None, [API_VERSIONS]) == [False]
    topics, errors = connect({"bootstrap.servers": f"127.0.0.1:{port}", "security.protocol": "PLAINTEXT"})
    assert topics is None
    assert {e.code() for e in errors} <= REFUSAL_ERRORS


def test_raw_requests_are_answered_with_valid_credentials(provisioned: Provisioned, tmp_path: Path) -> None:
    # The control for the raw refusals: the same bytes over TLS with a client certificate get answers.
    cert = provisioned.kafka.ca.issue(tmp_path, "agent-gateway", "agent-gateway")
    ctx = _tls(provisioned.kafka.ca_file, cert.cert, cert.key)
    assert _raw_exchange(provisioned.kafka.ports.mtls, ctx, [API_VERSIONS, METADATA]) == [True, True]


def test_broker_listens_only_on_its_loopback_ports(provisioned: Provisioned) -> None:
    pid = provisioned.kafka.pid
    assert pid is not None
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    listening = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and inode in inodes:  # 0A: LISTEN
                addr, port = local.split(":")
                # The kernel prints the address as 32-bit words in host (little-endian) order.
                raw = b"".join(bytes.fromhex(addr[i : i + 8])[::-1] for i in range(0, len(addr), 8))
                ip = ipaddress.ip_address(raw)
                if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
                    ip = ip.ipv4_mapped  # the JVM listens on IPv6 sockets bound to ::ffff:127.0.0.1
                listening.add((str(ip), int(port, 16)))
    assert listening == {("127.0.0.1", port) for port in _all_ports(provisioned).values()}


# ---- SASL listener ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("principal", SCRAM_PRINCIPALS)
def test_wrong_password_is_refused(principal: str, provisioned: Provisioned) -> None:
    topics, _ = connect(provisioned.config(principal))
    assert topics is not None, "control: the right password must get in"
    topics, errors = connect(provisioned.config(principal, **{"sasl.password": "not-" + principal}))
    assert topics is None
    assert KafkaError._AUTHENTICATION in {e.code() for e in errors}


@pytest.mark.parametrize(
    ("case", "overrides"),
    [
        ("unknown user", {"sasl.username": "nobody", "sasl.password": "nothing"}),
        ("super user with a guessed password", {"sasl.username": "platform-admin", "sasl.password": "admin"}),
        ("PLAIN mechanism", {"sasl.mechanisms": "PLAIN"}),
        ("SCRAM-SHA-256", {"sasl.mechanisms": "SCRAM-SHA-256"}),
    ],
)
def test_other_sasl_logins_are_refused(
    case: str, overrides: dict[str, Any], provisioned: Provisioned
) -> None:
    topics, errors = connect(provisioned.config(SCRAM_PRINCIPALS[0], **overrides))
    assert topics is None, case
    assert KafkaError._AUTHENTICATION in {e.code() for e in errors}, case


def test_sasl_listener_without_credentials_is_refused(provisioned: Provisioned) -> None:
    kafka = provisioned.kafka
    # TLS but no SASL login: the broker answers only the pre-authentication ApiVersions, then hangs up.
    assert _raw_exchange(kafka.ports.sasl, _tls(kafka.ca_file), [API_VERSIONS, METADATA]) == [True, False]
    topics, errors = connect(
        {
            "bootstrap.servers": kafka.bootstrap_sasl,
            "security.protocol": "SSL",
            "ssl.ca.location": str(kafka.ca_file),
        }
    )
    assert topics is None
    assert {e.code() for e in errors} <= REFUSAL_ERRORS


# ---- mTLS listener and controller ------------------------------------------------------------------------


@pytest.mark.parametrize("listener", ["mtls", "controller"])
def test_tls_without_a_client_certificate_is_refused(listener: str, provisioned: Provisioned) -> None:
    kafka = provisioned.kafka
    port = _ports(provisioned)[listener]
    assert _raw_exchange(port, _tls(kafka.ca_file), [API_VERSIONS]) == [False]
    topics, errors = connect(
        {
            "bootstrap.servers": f"127.0.0.1:{port}",
            "security.protocol": "SSL",
            "ssl.ca.location": str(kafka.ca_file),
        }
    )
    assert topics is None
    assert {e.code() for e in errors} <= REFUSAL_ERRORS and errors


def _cert_conf(provisioned: Provisioned, cert: Path, key: Path) -> dict[str, Any]:
    return {
        "bootstrap.servers": provisioned.kafka.bootstrap_mtls,
        "security.protocol": "SSL",
        "ssl.ca.location": str(provisioned.kafka.ca_file),
        "ssl.certificate.location": str(cert),
        "ssl.key.location": str(key),
    }


def test_certificate_from_another_ca_is_refused(provisioned: Provisioned, tmp_path: Path) -> None:
    intruder = CertificateAuthority(tmp_path / "ca", "intruder-ca")
    forged = intruder.issue(tmp_path, "agent-gateway", "agent-gateway")
    topics, errors = connect(_cert_conf(provisioned, forged.cert, forged.key))
    assert topics is None
    assert {e.code() for e in errors} <= REFUSAL_ERRORS and errors
    real = provisioned.kafka.ca.issue(tmp_path, "agent-gateway-real", "agent-gateway")
    topics, _ = connect(_cert_conf(provisioned, real.cert, real.key))
    assert topics is not None and "agents.events.raw.v1" in topics, (
        "control: the cluster CA's certificate gets in"
    )


def test_certificate_with_more_than_a_common_name_maps_to_no_principal(
    provisioned: Provisioned, tmp_path: Path
) -> None:
    """`CN=agent-gateway,O=intruders` is signed by the cluster CA, but it is not `CN=agent-gateway`: it must
    not become User:agent-gateway (it keeps its whole DN as the name, which no ACL mentions)."""
    kafka = provisioned.kafka
    ca_cert = x509.load_pem_x509_certificate(kafka.ca_file.read_bytes())
    ca_key = serialization.load_pem_private_key(kafka.ca.key_path.read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "intruders"),
                    x509.NameAttribute(NameOID.COMMON_NAME, "agent-gateway"),
                ]
            )
        )
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "intruder.crt", tmp_path / "intruder.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    conf = _cert_conf(provisioned, cert_path, key_path)
    topics, _ = connect(conf)
    assert topics is not None, "the certificate is valid: the connection itself is accepted"
    assert {t for t in topics if not t.startswith("__")} == set()
    assert produce(conf, "agents.events.raw.v1") == DENIED
