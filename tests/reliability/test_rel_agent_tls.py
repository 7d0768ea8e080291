"""Issue 18.7: TLS files and --source checked at start, each bad one named; refused mTLS
clients leave their reason in the agent's log."""
from __future__ import annotations

import datetime
import os
import subprocess
import sys

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fault_helpers import agent_in_cgroup, wait_for
from reference_agent import tls
from reference_agent.config import ConfigError

pytestmark = pytest.mark.timeout(60)


def serve(tmp_path, *args: str) -> subprocess.CompletedProcess:
    source = args[args.index("--source") + 1] if "--source" in args else str(tmp_path / "src")
    rest = [a for i, a in enumerate(args) if a != "--source" and (i == 0 or args[i - 1] != "--source")]
    return subprocess.run([sys.executable, "-m", "reference_agent", "serve", "--listen", "127.0.0.1:0",
                           "--source", source, "--state-dir", str(tmp_path / "state"), "--no-path-pythons",
                           *rest], capture_output=True, text=True, timeout=30)


def expired_certificate(directory) -> tuple[str, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    end = datetime.datetime(2020, 3, 4, 5, 6, 7, tzinfo=datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(end - datetime.timedelta(days=30)).not_valid_after(end)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "expired.pem", directory / "expired_key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


def test_key_of_another_certificate_is_named(tmp_path, certificates):
    done = serve(tmp_path, "--tls-cert", str(certificates["server"]), "--tls-key", str(certificates["client_key"]))
    assert done.returncode == 2
    assert str(certificates["client_key"]) in done.stderr and "do not match" in done.stderr
    assert "cannot bind" not in done.stderr and "Traceback" not in done.stderr


def test_garbage_client_ca_is_named(tmp_path, certificates):
    garbage = tmp_path / "ca.pem"
    garbage.write_text("not a certificate\n")
    done = serve(tmp_path, "--tls-cert", str(certificates["server"]), "--tls-key", str(certificates["server_key"]),
                 "--tls-client-ca", str(garbage))
    assert done.returncode == 2
    assert f"--tls-client-ca {str(garbage)!r} holds no PEM certificate" in done.stderr
    assert "cannot bind" not in done.stderr and "Traceback" not in done.stderr


def test_expired_server_certificate_is_refused_with_its_date(tmp_path):
    cert, key = expired_certificate(tmp_path)
    done = serve(tmp_path, "--tls-cert", cert, "--tls-key", key)
    assert done.returncode == 2
    assert cert in done.stderr and "expired on 2020-03-04 05:06:07 UTC" in done.stderr


def test_certificate_expiring_soon_is_warned(tmp_path, certificates):
    warnings = []
    end = tls.not_after(str(certificates["server"]))
    creds = tls.server_credentials(str(certificates["server"]), str(certificates["server_key"]), None,
                                   warn=lambda kind, **fields: warnings.append(fields),
                                   now=end - datetime.timedelta(days=3))
    assert creds is not None
    assert warnings and warnings[0]["file"] == str(certificates["server"])
    with pytest.raises(ConfigError, match="expired on"):
        tls.server_credentials(str(certificates["server"]), str(certificates["server_key"]), None,
                               now=end + datetime.timedelta(seconds=1))


@pytest.mark.parametrize("kind", ["FIFO", "regular file"])
def test_source_that_is_not_a_directory_is_named(tmp_path, kind):
    path = tmp_path / "source"
    os.mkfifo(path) if kind == "FIFO" else path.write_text("x")
    done = serve(tmp_path, "--source", str(path))
    assert done.returncode == 2
    assert f"--source {str(path)!r} is a {kind}, not a directory" in done.stderr
    assert "File exists" not in done.stderr and "Traceback" not in done.stderr


def test_refused_mtls_clients_leave_their_reason_in_the_log(tmp_path, certificates):
    agent = agent_in_cgroup(tmp_path, None, "--tls-cert", str(certificates["server"]), "--tls-key",
                            str(certificates["server_key"]), "--tls-client-ca", str(certificates["ca"]))
    agent.probe = False
    address = agent.start()
    try:
        ca = certificates["ca"].read_bytes()
        attempts = [grpc.ssl_channel_credentials(ca),  # no client certificate
                    grpc.ssl_channel_credentials(ca, certificates["stranger_key"].read_bytes(),
                                                 certificates["stranger"].read_bytes())]  # another CA's
        for credentials in attempts:
            with grpc.secure_channel(address, credentials) as channel:
                with pytest.raises(grpc.RpcError):
                    health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        log = tmp_path / "agent0.log"
        wait_for(lambda: "PEER_DID_NOT_RETURN_A_CERTIFICATE" in log.read_text()
                 and "CERTIFICATE_VERIFY_FAILED" in log.read_text(), within=10, what="both reasons in the log")
    finally:
        agent.stop()
