"""Operations: job isolation (limits, environment, process group, timeout), logs, metrics, TLS."""
from __future__ import annotations

import datetime
import io
import json
import os
import time
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agent_helpers import code_of, new_id
from protos.client import AgentClient, secure_channel


def gone(pid: int, within: float = 5.0) -> bool:
    """True once pid has ended (a zombie waiting for init to reap it counts as ended)."""
    end = time.monotonic() + within
    while time.monotonic() < end:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                    return True
        except (FileNotFoundError, ProcessLookupError):
            return True
        time.sleep(0.01)
    return False


def output(h, job) -> str:
    return open(h.row(job).stdout).read()


def test_job_limits_environment_and_process_group(make_agent):
    h = make_agent(limit_open_files=123, limit_address_space=3 * 1024 ** 3, job_env={"GIVEN": "yes"})
    job = h.submit("""
        import json, os, resource
        print(json.dumps({"nofile": resource.getrlimit(resource.RLIMIT_NOFILE),
                          "as": resource.getrlimit(resource.RLIMIT_AS),
                          "env": dict(os.environ), "pgid": os.getpgid(0), "sid": os.getsid(0),
                          "stdin": os.read(0, 10).decode()}))
    """)
    h.wait_done(job)
    seen = json.loads(output(h, job))
    assert seen["nofile"] == [123, 123]
    assert seen["as"] == [3 * 1024 ** 3] * 2
    assert "AGENT_TEST_SECRET" not in seen["env"] and seen["env"]["GIVEN"] == "yes"
    assert seen["env"]["HOME"] == str(h.state / "jobs" / job / "work")
    assert seen["pgid"] == h.row(job).pid == seen["sid"] != os.getpgid(0)
    assert seen["stdin"] == ""


def test_job_timeout_kills_the_whole_group(make_agent, tmp_path):
    h = make_agent(job_timeout=0.5, kill_grace=0.2)
    child_pid_file = tmp_path / "child.pid"
    job = h.submit(f"""
        import subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        open({str(child_pid_file)!r}, "w").write(str(child.pid))
        time.sleep(60)
    """)
    started = time.monotonic()
    h.wait_done(job, deadline=20)
    assert time.monotonic() - started < 10
    row = h.row(job)
    assert row.reason == "killed" and "timeout" in row.note
    assert gone(int(child_pid_file.read_text())), "the job's child survived the group kill"


def test_stragglers_of_a_finished_job_are_killed(agent, tmp_path):
    pid_file = tmp_path / "bg.pid"
    job = agent.submit(f"""
        import subprocess, sys
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        open({str(pid_file)!r}, "w").write(str(child.pid))
    """)
    agent.wait_done(job)
    assert gone(int(pid_file.read_text()), within=1.0), "a background process of a DONE job is alive"


def test_interpreter_gone_before_start_is_done_failed(make_agent, fake_python, tmp_path):
    path = fake_python("3.8.1")
    h = make_agent(pythons=(path,), slots=1)
    gate = tmp_path / "gate"  # the blocker holds the one slot until the interpreter is gone
    blocker = h.submit(f"import os, time\nend = time.monotonic() + 60\n"
                       f"while not os.path.exists({str(gate)!r}) and time.monotonic() < end:\n"
                       f"    time.sleep(0.01)\n")
    job = h.submit("print(1)\n", "3.8")
    os.unlink(path)
    gate.touch()
    h.wait_done(job)
    h.wait_done(blocker)
    assert h.row(job).reason == "failed"


def test_one_json_log_line_per_rpc_and_transition(make_agent):
    from reference_agent.telemetry import Telemetry

    stream = io.StringIO()
    telemetry = Telemetry(stream)
    h = make_agent(telemetry=telemetry, log_rpcs=True)
    job = h.submit("pass\n")
    h.wait_done(job)
    code_of(h.client.run, "bad", [])
    with pytest.raises(grpc.RpcError):
        health_pb2_grpc.HealthStub(h.channel).Check(health_pb2.HealthCheckRequest(service="nope"), timeout=10)
    assert telemetry.flush()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    rpcs = [entry for entry in lines if entry["kind"] == "rpc"]
    assert {(e["method"], e["code"]) for e in rpcs} >= {("StageInFiles", "OK"), ("RunJob", "OK"),
                                                         ("RunJob", "INVALID_ARGUMENT")}
    moves = [(e["old"], e["new"]) for e in lines if e["kind"] == "job" and e["job"] == job]
    assert moves == [(None, "WAIT"), ("WAIT", "RUN"), ("RUN", "DONE")]
    assert ("/grpc.health.v1.Health/Check", "NOT_FOUND") in {(e["method"], e["code"]) for e in rpcs}


def test_a_stuck_log_stream_never_blocks_the_agent(make_agent):
    """Logging to a pipe nobody reads must cost log lines, not RPCs (AGT-ERR-2 in spirit)."""
    import threading

    from reference_agent.telemetry import Telemetry

    release = threading.Event()

    class Stuck(io.StringIO):
        def write(self, text):
            release.wait(30)
            return super().write(text)

    telemetry = Telemetry(Stuck(), queue_size=5)
    h = make_agent(telemetry=telemetry, log_rpcs=True)
    try:
        for _ in range(30):
            assert h.client.stage_in(new_id(), []) == []
        assert telemetry.dropped > 0
    finally:
        release.set()


def test_prometheus_metrics(make_agent):
    h = make_agent(metrics_port=0)
    job = h.submit("pass\n")
    h.wait_done(job)
    code_of(h.client.stage_in, "bad", [])
    text = urllib.request.urlopen(f"http://127.0.0.1:{h.server.metrics_port}/metrics", timeout=10).read().decode()
    assert 'agent_jobs{state="DONE"} 1.0' in text
    assert 'agent_rpcs_total{code="OK",method="RunJob"}' in text
    assert 'agent_rpcs_total{code="INVALID_ARGUMENT",method="StageInFiles"} 1.0' in text
    assert "agent_staging_bytes_total 5.0" in text
    assert "agent_queue_length 0.0" in text


def _certificates(tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import ipaddress

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("test ca")).issuer_name(name("test ca"))
          .public_key(ca_key.public_key()).serial_number(1).not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))

    def leaf(cn, serial, san):
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(ca.subject)
                   .public_key(key.public_key()).serial_number(serial)
                   .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1)))
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        return (cert.public_bytes(serialization.Encoding.PEM),
                key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))

    files = {"ca": ca.public_bytes(serialization.Encoding.PEM)}
    files["server"], files["server_key"] = leaf("localhost", 2, [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    files["client"], files["client_key"] = leaf("client", 3, None)
    for k, v in files.items():
        (tmp_path / f"{k}.pem").write_bytes(v)
    return files


def test_mutual_tls(make_agent, tmp_path):
    pem = _certificates(tmp_path)
    h = make_agent(tls_cert=str(tmp_path / "server.pem"), tls_key=str(tmp_path / "server_key.pem"),
                   tls_client_ca=str(tmp_path / "ca.pem"))
    channel = secure_channel(h.address, ca=pem["ca"], cert=pem["client"], key=pem["client_key"])
    try:
        assert AgentClient(channel, timeout=10).stage_in(new_id(), []) == []
    finally:
        channel.close()
    anonymous = secure_channel(h.address, ca=pem["ca"])
    try:
        with pytest.raises(Exception) as info:
            AgentClient(anonymous, timeout=5).stage_in(new_id(), [])
        assert info.value.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNKNOWN)
    finally:
        anonymous.close()
    plain = grpc.insecure_channel(h.address)
    try:
        assert code_of(AgentClient(plain, timeout=5).stage_in, new_id(), []) == "UNAVAILABLE"
    finally:
        plain.close()
