"""The typed client over a real loopback channel, plain and TLS, against a tiny scripted servicer."""
from __future__ import annotations

import datetime
from concurrent import futures

import grpc
import pytest

from protos import AgentService_pb2_grpc, RunJob_pb2, StageInFile_pb2, Common_pb2
from protos.client import AgentCallError, AgentClient, JobTimeout, secure_channel
from protos.states import JobState

JOB = "0f8fad5b-d9cb-469f-a165-70867728950e"
FILE = "7c9e6679-7425-40de-944b-e07fc1f90ae7"


class Scripted(AgentService_pb2_grpc.AgentServicer):
    """Answers RunJob with the next state of a script; records requests as raw bytes."""

    def __init__(self, states):
        self.states = list(states)
        self.requests = []

    def StageInFiles(self, request, context):
        self.requests.append(request.SerializeToString())
        if request.job.uuid == "bad":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "job.uuid must be a UUID, got 'bad'")
        return StageInFile_pb2.StageInFilesResponse(
            success_files=[StageInFile_pb2.StagedFile(file=f) for f in request.files])

    def RunJob(self, request, context):
        self.requests.append(request.SerializeToString())
        state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        return RunJob_pb2.RunJobResponse(code=state)


def _serve(servicer, creds=None):
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    AgentService_pb2_grpc.add_AgentServicer_to_server(servicer, server)
    port = server.add_secure_port("127.0.0.1:0", creds) if creds else server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, f"127.0.0.1:{port}"


@pytest.fixture
def scripted():
    made = []

    def make(states, creds=None):
        servicer = Scripted(states)
        server, address = _serve(servicer, creds)
        made.append(server)
        return servicer, address

    yield make
    for server in made:
        server.stop(None)


def test_stage_run_and_wait_over_loopback(scripted):
    servicer, address = scripted([0, 0, 1, 1, 2])
    with grpc.insecure_channel(address) as channel:
        client = AgentClient(channel)
        assert client.stage_in(JOB, [FILE, FILE]) == [FILE, FILE]
        assert client.run(JOB, [FILE], python_version="3") is JobState.WAIT
        seen = []
        timeline = client.wait_until_done(JOB, poll_interval=0.001, deadline=5, on_state=seen.append)
    assert [s for _, s in timeline.points] == [JobState.WAIT, JobState.RUN, JobState.DONE]
    assert seen == [JobState.WAIT, JobState.RUN, JobState.DONE] and timeline.final is JobState.DONE
    submitted = RunJob_pb2.RunJobRequest.FromString(servicer.requests[1])
    assert submitted.requirements[0].python_version == "3" and submitted.files[0].uuid == FILE
    poll = RunJob_pb2.RunJobRequest.FromString(servicer.requests[2])
    assert not poll.files and not poll.requirements, "a status query sends no files and no requirements"


def test_requirement_list_with_unset_field(scripted):
    servicer, address = scripted([0])
    with grpc.insecure_channel(address) as channel:
        AgentClient(channel).run(JOB, [FILE], python_version=[None, ">=3.10"])
    sent = RunJob_pb2.RunJobRequest.FromString(servicer.requests[0])
    assert not sent.requirements[0].HasField("python_version")
    assert sent.requirements[1].python_version == ">=3.10"


def test_error_carries_status_name(scripted):
    _, address = scripted([0])
    with grpc.insecure_channel(address) as channel:
        with pytest.raises(AgentCallError) as info:
            AgentClient(channel).stage_in("bad", [])
    assert info.value.code_name == "INVALID_ARGUMENT" and "'bad'" in info.value.details
    assert "StageInFiles failed with INVALID_ARGUMENT" in str(info.value)


def test_wait_until_done_deadline_with_fake_clock(scripted):
    _, address = scripted([1])
    now = [0.0]
    with grpc.insecure_channel(address) as channel:
        with pytest.raises(JobTimeout) as info:
            AgentClient(channel).wait_until_done(
                JOB, poll_interval=1.0, deadline=3.0, clock=lambda: now[0],
                sleep=lambda s: now.__setitem__(0, now[0] + s))
    assert "last state: RUN" in str(info.value) and info.value.timeline == [(0.0, JobState.RUN)]


def test_unreachable_agent_is_unavailable():
    with grpc.insecure_channel("127.0.0.1:1") as channel:
        with pytest.raises(AgentCallError) as info:
            AgentClient(channel, timeout=2).status(JOB)
    assert info.value.code_name in {"UNAVAILABLE", "DEADLINE_EXCEEDED"}


def _cert(common_name, issuer=None, ca=False):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    issuer_name, issuer_key = (issuer[0].subject, issuer[1]) if issuer else (name, key)
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer_name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(hours=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                         x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]),
            critical=False)
    cert = builder.sign(issuer_key, hashes.SHA256())
    pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert, key, pem, key_pem


def test_client_over_tls(scripted):
    ca_cert, ca_key, ca_pem, _ = _cert("test-ca", ca=True)
    _, _, srv_pem, srv_key = _cert("localhost", issuer=(ca_cert, ca_key))
    creds = grpc.ssl_server_credentials([(srv_key, srv_pem)])
    _, address = scripted([2], creds)
    with secure_channel(address, ca=ca_pem) as channel:
        assert AgentClient(channel).status(JOB) is JobState.DONE
    other_ca = _cert("other-ca", ca=True)[2]
    with secure_channel(address, ca=other_ca) as channel:
        with pytest.raises(AgentCallError) as info:
            AgentClient(channel, timeout=5).status(JOB)
    assert info.value.code_name == "UNAVAILABLE"
