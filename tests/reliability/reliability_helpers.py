"""Helpers of the reliability tests: an agent harness, process listing by job, a test PKI."""
from __future__ import annotations

import datetime
import ipaddress
import os
import time
from pathlib import Path

from agent_harness import InProcessAgent
from protos.states import JobState
from shared_helpers import code_of, new_id  # noqa: F401  (re-exported to the tests)


Agent = InProcessAgent   # the reliability tests call it by this name


def processes_of(workdir: Path) -> list[int]:
    """Live processes (not zombies) whose environment or working directory names workdir:
    every process a job starts inherits HOME=workdir and starts in it."""
    marker = f"HOME={workdir}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            if state in ("Z", "X"):
                continue
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except (OSError, IndexError):
            continue
        if marker in env or cwd == str(workdir) or cwd.startswith(f"{workdir}/"):
            found.append(pid)
    return found


def none_left(workdir: Path, within: float = 5.0) -> list[int]:
    """Wait until no process of the job is alive; return those still alive after `within`."""
    end = time.monotonic() + within
    while True:
        left = processes_of(workdir)
        if not left or time.monotonic() > end:
            return left
        time.sleep(0.05)


def final_state(agent: Agent, job: str) -> JobState:
    return agent.client.status(job)


def make_certificates(directory: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1/localhost, a client certificate from the CA, and
    a client certificate from a rogue CA; written as PEM files. Returns name -> path."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    validity = (now - datetime.timedelta(days=1), now + datetime.timedelta(days=2))

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def authority(cn):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(name(cn))
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(validity[0]).not_valid_after(validity[1])
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(key, hashes.SHA256()))
        return cert, key

    def leaf(ca, ca_key, cn, san=None):
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(ca.subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(validity[0]).not_valid_after(validity[1]))
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return builder.sign(ca_key, hashes.SHA256()), key

    def pem_cert(cert):
        return cert.public_bytes(serialization.Encoding.PEM)

    def pem_key(key):
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())

    ca, ca_key = authority("reliability test ca")
    rogue, rogue_key = authority("rogue ca")
    server, server_key = leaf(ca, ca_key, "localhost", [x509.DNSName("localhost"),
                                                         x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    client, client_key = leaf(ca, ca_key, "client")
    stranger, stranger_key = leaf(rogue, rogue_key, "stranger")
    files = {"ca": pem_cert(ca), "rogue_ca": pem_cert(rogue),
             "server": pem_cert(server), "server_key": pem_key(server_key),
             "client": pem_cert(client), "client_key": pem_key(client_key),
             "stranger": pem_cert(stranger), "stranger_key": pem_key(stranger_key)}
    paths = {}
    for label, data in files.items():
        paths[label] = directory / f"{label}.pem"
        paths[label].write_bytes(data)
    return paths
