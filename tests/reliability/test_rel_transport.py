"""Transport security: TLS, mutual TLS and bearer tokens, over real loopback channels."""
from __future__ import annotations

import subprocess
import sys

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from protos.client import AgentClient, secure_channel
from protos.states import JobState
from reference_agent.auth import TokenAuthInterceptor, load_tokens, token_of
from reference_agent.config import ConfigError
from reliability_helpers import code_of, new_id

TOKENS = "# operators\nalpha-123\n\n  beta_456  \n"


def _tls_channel(address, pki, ca="ca", cert=None):
    read = lambda label: pki[label].read_bytes() if label else None  # noqa: E731
    return secure_channel(address, ca=read(ca), cert=read(cert), key=read(cert and f"{cert}_key"))


def _works(channel) -> bool:
    """True when a StageInFiles call over the channel is served; the channel is closed."""
    try:
        return code_of(AgentClient(channel, timeout=10).stage_in, new_id(), []) == "OK"
    finally:
        channel.close()


def test_tls_server_refuses_plaintext_and_unknown_ca(start_agent, certificates):
    pki = certificates
    agent = start_agent(tls_cert=str(pki["server"]), tls_key=str(pki["server_key"]))
    assert _works(_tls_channel(agent.address, pki)), "a client trusting the CA must be served"
    assert not _works(_tls_channel(agent.address, pki, ca="rogue_ca")), "server cert from an unknown CA accepted"
    assert not _works(grpc.insecure_channel(agent.address)), "plaintext served on a TLS port"


def test_mutual_tls_refuses_clients_without_a_valid_certificate(start_agent, certificates):
    pki = certificates
    agent = start_agent(tls_cert=str(pki["server"]), tls_key=str(pki["server_key"]),
                        tls_client_ca=str(pki["ca"]))
    assert _works(_tls_channel(agent.address, pki, cert="client"))
    assert not _works(_tls_channel(agent.address, pki)), "client without certificate served under mTLS"
    assert not _works(_tls_channel(agent.address, pki, cert="stranger")), "certificate of a rogue CA accepted"
    assert not _works(grpc.insecure_channel(agent.address)), "plaintext served under mTLS"


@pytest.fixture
def token_file(tmp_path):
    path = tmp_path / "tokens"
    path.write_text(TOKENS)
    return path


def test_bearer_tokens_gate_every_agent_call(start_agent, token_file):
    agent = start_agent(auth_tokens=str(token_file))
    script = agent.put("print('hi')\n")
    job = new_id()
    for metadata in ((), (("authorization", "Bearer wrong"),), (("authorization", "alpha-123"),),
                     (("authorization", "Basic alpha-123"),), (("x-token", "alpha-123"),),
                     (("authorization", "Bearer alpha-1234"),), (("authorization", "Bearer "),)):
        client = AgentClient(agent.new_channel(), timeout=10, metadata=metadata)
        assert code_of(client.stage_in, job, [script]) == "UNAUTHENTICATED", metadata
        assert code_of(client.run, job, [script]) == "UNAUTHENTICATED", metadata
        assert code_of(client.run, "not a uuid", []) == "UNAUTHENTICATED", metadata
    assert agent.server.core.staged_files(job) == [] and agent.server.core.job(job) is None
    good = AgentClient(agent.new_channel(), timeout=10, metadata=(("authorization", "bearer  beta_456"),))
    assert good.stage_in(job, [script]) == [script]
    good.run(job, [script])
    assert agent.server.core.job(job) is not None   # the authenticated call created the job
    assert good.wait_until_done(job, poll_interval=0.02, deadline=20).final is JobState.DONE
    assert code_of(good.run, "not a uuid", []) == "INVALID_ARGUMENT"


def test_tokens_leave_health_open_and_close_reflection(start_agent, token_file):
    agent = start_agent(auth_tokens=str(token_file))
    channel = agent.new_channel()
    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service="Agent"), timeout=10)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    with pytest.raises(grpc.RpcError) as info:
        list(stub.ServerReflectionInfo(iter([request]), timeout=10))
    assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED
    answers = list(stub.ServerReflectionInfo(iter([request]), timeout=10,
                                             metadata=(("authorization", "Bearer alpha-123"),)))
    assert "Agent" in {s.name for s in answers[0].list_services_response.service}
    unknown = channel.unary_unary("/Agent/NoSuchMethod")
    with pytest.raises(grpc.RpcError) as info:
        unknown(b"", timeout=10)
    assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED  # existence not revealed


def test_tokens_with_mutual_tls(start_agent, certificates, token_file):
    pki = certificates
    agent = start_agent(tls_cert=str(pki["server"]), tls_key=str(pki["server_key"]),
                        tls_client_ca=str(pki["ca"]), auth_tokens=str(token_file))
    channel = _tls_channel(agent.address, pki, cert="client")
    try:
        assert code_of(AgentClient(channel, timeout=10).stage_in, new_id(), []) == "UNAUTHENTICATED"
        authed = AgentClient(channel, timeout=10, metadata=(("authorization", "Bearer alpha-123"),))
        assert authed.stage_in(new_id(), []) == []
    finally:
        channel.close()


@pytest.mark.parametrize("content, complaint", [
    ("", "no token"), ("# only a comment\n\n", "no token"), ("good\nwith space\n", "line 2"),
    ("tab\tinside\n", "line 1"), ("caf\u00e9\n", "line 1"), (b"\xff\xfe\n", "cannot read"),
])
def test_malformed_token_files_are_refused(tmp_path, content, complaint):
    path = tmp_path / "tokens"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ConfigError) as info:
        load_tokens(path)
    assert complaint in str(info.value) and str(path) in str(info.value)


def test_cli_refuses_a_bad_token_file_with_status_2(tmp_path):
    empty = tmp_path / "empty"
    empty.write_text("\n")
    for path in (empty, tmp_path / "absent"):
        done = subprocess.run([sys.executable, "-m", "reference_agent", "serve", "--listen", "127.0.0.1:0",
                               "--source", str(tmp_path / "src"), "--state-dir", str(tmp_path / "st"),
                               "--no-path-pythons", "--auth-tokens", str(path)],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, done.stderr
        assert str(path) in done.stderr and "--auth-tokens" in done.stderr


def test_token_parsing_and_constant_time_check():
    assert token_of([("Authorization", "Bearer abc")]) == b"abc"
    assert token_of([("authorization", "BEARER   abc  ")]) == b"abc"
    assert token_of([("authorization", "Bearer")]) is None
    assert token_of([("authorization", "Token abc"), ("authorization", "Bearer abc")]) is None
    assert token_of([]) is None and token_of(None) is None
    check = TokenAuthInterceptor([b"abc", "def"])
    assert check.allowed(b"abc") and check.allowed(b"def")
    assert not check.allowed(b"ab") and not check.allowed(b"abcd") and not check.allowed(None)
    with pytest.raises(ValueError):
        TokenAuthInterceptor([])


def test_cli_serve_with_auth_tokens(tmp_path, token_file):
    """`reference-agent serve --auth-tokens FILE` as operators run it: first line, then the gate."""
    proc = subprocess.Popen([sys.executable, "-m", "reference_agent", "serve", "--listen", "127.0.0.1:0",
                             "--source", str(tmp_path / "src"), "--state-dir", str(tmp_path / "st"),
                             "--no-path-pythons", "--quiet", "--auth-tokens", str(token_file)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("listening on 127.0.0.1:"), line
        channel = grpc.insecure_channel(line.split()[-1])
        try:
            assert code_of(AgentClient(channel, timeout=10).stage_in, new_id(), []) == "UNAUTHENTICATED"
            authed = AgentClient(channel, timeout=10, metadata=(("authorization", "Bearer alpha-123"),))
            assert authed.stage_in(new_id(), []) == []
        finally:
            channel.close()
    finally:
        proc.terminate()
        assert proc.wait(30) == 0
        proc.stdout.close()
