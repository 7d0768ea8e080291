"""Wire-level tests over loopback: AGT-WIRE-1/2, AGT-ID-1..3, AGT-ERR-1/2, health and reflection."""
from __future__ import annotations

import threading

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from hypothesis import HealthCheck, given, settings, strategies as st

from agent_helpers import code_of, new_id
from protos import AgentService_pb2, Common_pb2, RunJob_pb2, StageInFile_pb2
from protos.validation import is_uuid

SERVICE = AgentService_pb2.DESCRIPTOR.services_by_name["Agent"]
RUN = f"/{SERVICE.full_name}/{SERVICE.methods_by_name['RunJob'].name}"
STAGE = f"/{SERVICE.full_name}/{SERVICE.methods_by_name['StageInFiles'].name}"


def raw_call(channel, method: str, payload: bytes) -> tuple[str, bytes | None]:
    """Call with identity serializers: (status code name, response bytes or None)."""
    try:
        return "OK", channel.unary_unary(method)(payload, timeout=10)
    except grpc.RpcError as exc:
        return exc.code().name, None


def test_wire_1_service_and_methods_from_reflection(agent):
    """AGT-WIRE-1: the agent serves `Agent` (no package) with the two unary methods."""
    assert RUN == "/Agent/RunJob" and STAGE == "/Agent/StageInFiles"
    stub = reflection_pb2_grpc.ServerReflectionStub(agent.channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    response = next(iter(stub.ServerReflectionInfo(iter([request]), timeout=10)))
    names = {s.name for s in response.list_services_response.service}
    assert {"Agent", "grpc.health.v1.Health"} <= names


def test_wire_1_served_descriptor_is_the_seed(agent):
    """AGT-WIRE-1 on what the server itself publishes: no package, unary methods, field numbers."""
    from google.protobuf import descriptor_pb2

    stub = reflection_pb2_grpc.ServerReflectionStub(agent.channel)
    request = reflection_pb2.ServerReflectionRequest(file_containing_symbol="Agent")
    response = next(iter(stub.ServerReflectionInfo(iter([request]), timeout=10)))
    files = {}
    for raw in response.file_descriptor_response.file_descriptor_proto:
        fd = descriptor_pb2.FileDescriptorProto.FromString(raw)
        files[fd.name] = fd
    service_file = next(fd for fd in files.values() if fd.service)
    assert service_file.package == "" and service_file.syntax in ("", "proto2")
    (service,) = service_file.service
    assert service.name == "Agent"
    methods = {m.name: m for m in service.method}
    assert set(methods) == {"StageInFiles", "RunJob"}
    assert all(not m.client_streaming and not m.server_streaming for m in methods.values())
    assert methods["RunJob"].input_type == ".RunJobRequest"
    assert methods["StageInFiles"].output_type == ".StageInFilesResponse"


def test_health_check_serving(agent):
    stub = health_pb2_grpc.HealthStub(agent.channel)
    for service in ("", "Agent"):
        reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_wire_2_run_response_carries_code_on_the_raw_bytes(agent):
    """AGT-WIRE-2: the response bytes contain field 1 (varint) even for WAIT = 0."""
    job = new_id()
    entry = agent.script("import time; time.sleep(0.3)\n")
    agent.client.stage_in(job, [entry])
    req = RunJob_pb2.RunJobRequest(job=Common_pb2.JobId(uuid=job), files=[Common_pb2.FileId(uuid=entry)])
    code, body = raw_call(agent.channel, RUN, req.SerializeToString())
    assert code == "OK"
    assert len(body) == 2 and body[0] == 0x08 and body[1] in (0, 1, 2), body
    status = RunJob_pb2.RunJobRequest(job=Common_pb2.JobId(uuid=job)).SerializeToString()
    for _ in range(3):
        code, body = raw_call(agent.channel, RUN, status)
        assert code == "OK" and body[:1] == b"\x08" and body[1] in (0, 1, 2)


def test_wire_2_staged_files_carry_uuid(agent):
    job, f = new_id(), agent.put(b"x")
    req = StageInFile_pb2.StageInFilesRequest(job=Common_pb2.JobId(uuid=job), files=[Common_pb2.FileId(uuid=f)])
    code, body = raw_call(agent.channel, STAGE, req.SerializeToString())
    assert code == "OK"
    reply = StageInFile_pb2.StageInFilesResponse.FromString(body)
    assert [s.file.uuid for s in reply.success_files] == [f]
    assert all(s.HasField("file") and s.file.HasField("uuid") for s in reply.success_files)


@pytest.mark.parametrize("payload", [b"\xff", b"\x0a\x05abc", b"\x0a\xff\xff\xff\xff\x0f", b"\x08" * 3,
                                     b"\x0a\x02\x0a\x80"])
@pytest.mark.parametrize("method", [RUN, STAGE])
def test_err_1_unparseable_bytes(agent, method, payload):
    """AGT-ERR-1: bytes that do not parse get INVALID_ARGUMENT or INTERNAL; no state change."""
    before = agent.core.counts()
    code, _ = raw_call(agent.channel, method, payload)
    assert code in ("INVALID_ARGUMENT", "INTERNAL")
    assert agent.core.counts() == before


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=st.binary(max_size=200))
def test_err_1_any_bytes_never_ok_unless_valid_and_agent_survives(agent, payload):
    """AGT-ERR-1/2 with Hypothesis: random bytes never stop the agent or create a job."""
    jobs_before = len(agent.core.journal.jobs())
    for method in (RUN, STAGE):
        code, _ = raw_call(agent.channel, method, payload)
        assert code in ("OK", "INVALID_ARGUMENT", "INTERNAL", "FAILED_PRECONDITION"), code
    assert len(agent.core.journal.jobs()) == jobs_before
    assert code_of(agent.client.stage_in, new_id(), []) == "OK"


def test_err_2_request_over_the_size_limit(make_agent):
    """AGT-ERR-2: over --max-request-bytes gets RESOURCE_EXHAUSTED; the agent keeps serving."""
    h = make_agent(max_request_bytes=64 * 1024)
    job = new_id()
    files = [Common_pb2.FileId(uuid=new_id()) for _ in range(3000)]  # ~120 KB
    req = StageInFile_pb2.StageInFilesRequest(job=Common_pb2.JobId(uuid=job), files=files)
    code, _ = raw_call(h.channel, STAGE, req.SerializeToString())
    assert code == "RESOURCE_EXHAUSTED"
    assert h.client.stage_in(job, []) == []
    assert h.core.staged_files(job) == []


def _partial(msg) -> bytes:
    return msg.SerializePartialToString()


@pytest.mark.parametrize("method,payload", [
    (RUN, _partial(RunJob_pb2.RunJobRequest())),
    (RUN, _partial(RunJob_pb2.RunJobRequest(job=Common_pb2.JobId()))),
    (STAGE, _partial(StageInFile_pb2.StageInFilesRequest())),
    (STAGE, _partial(StageInFile_pb2.StageInFilesRequest(job=Common_pb2.JobId()))),
], ids=["run-no-job", "run-no-job-uuid", "stage-no-job", "stage-no-job-uuid"])
def test_id_2_missing_job_fields(agent, method, payload):
    """AGT-ID-2: a missing required field gets INVALID_ARGUMENT and no state change."""
    code, _ = raw_call(agent.channel, method, payload)
    assert code == "INVALID_ARGUMENT"
    assert agent.core.journal.jobs() == [] and list(agent.core.journal.staged()) == []


def test_id_2_file_without_uuid(agent):
    job, f = new_id(), agent.put(b"print(1)\n")
    stage = StageInFile_pb2.StageInFilesRequest(job=Common_pb2.JobId(uuid=job),
                                                files=[Common_pb2.FileId(uuid=f), Common_pb2.FileId()])
    assert raw_call(agent.channel, STAGE, _partial(stage))[0] == "INVALID_ARGUMENT"
    assert agent.core.staged_files(job) == []  # nothing staged, not even the valid file
    agent.client.stage_in(job, [f])
    run = RunJob_pb2.RunJobRequest(job=Common_pb2.JobId(uuid=job),
                                   files=[Common_pb2.FileId(uuid=f), Common_pb2.FileId()])
    assert raw_call(agent.channel, RUN, _partial(run))[0] == "INVALID_ARGUMENT"
    assert agent.core.job(job) is None


BAD_UUIDS = ["", "../x", "../../etc/passwd", "/etc/passwd", "x" * 36, "0" * 32,
             "00000000-0000-0000-0000-0000000000000", "00000000-0000-0000-0000-00000000000",
             "00000000-0000-0000-0000-000000000000\n", " 00000000-0000-0000-0000-000000000000",
             "0000000g-0000-0000-0000-000000000000", "{00000000-0000-0000-0000-000000000000}",
             "00000000_0000_0000_0000_000000000000", "٠٠٠٠٠٠٠٠-0000-0000-0000-000000000000",
             "00000000-0000-0000-0000-00000000000/", "00000000-0000-0000-0000-000000000000/.."]


@pytest.mark.parametrize("bad", BAD_UUIDS, ids=range(len(BAD_UUIDS)))
def test_id_1_malformed_uuids_everywhere(agent, bad):
    """AGT-ID-1 / AGT-ERR-3: malformed job or file UUIDs get INVALID_ARGUMENT, nothing on disk."""
    good_file = agent.put(b"print(1)\n")
    agent.core.interpreters.available()   # the background probes have written their cache
    before = sorted(p.name for p in agent.state.rglob("*"))
    assert code_of(agent.client.stage_in, bad, [good_file]) == "INVALID_ARGUMENT"
    assert code_of(agent.client.stage_in, new_id(), [good_file, bad]) == "INVALID_ARGUMENT"
    assert code_of(agent.client.run, bad, [good_file]) == "INVALID_ARGUMENT"
    assert code_of(agent.client.run, new_id(), [bad]) == "INVALID_ARGUMENT"
    assert sorted(p.name for p in agent.state.rglob("*")) == before
    assert agent.core.journal.jobs() == []


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=40))
def test_id_1_hypothesis_non_uuid_text(agent, text):
    if is_uuid(text):
        return
    assert code_of(agent.client.stage_in, text, []) == "INVALID_ARGUMENT"
    assert code_of(agent.client.run, new_id(), [text]) == "INVALID_ARGUMENT"


def test_id_1_nil_and_any_hex_uuid_are_valid(agent):
    assert agent.client.stage_in("00000000-0000-0000-0000-000000000000", []) == []
    assert agent.client.stage_in("ffffffff-ffff-ffff-ffff-ffffffffffff", []) == []


def test_id_3_case_insensitive_and_lower_case_outputs(agent):
    """AGT-ID-3: upper and lower case name the same job and file; outputs are lower case."""
    job, f = new_id().upper(), new_id().upper()
    agent.put(b"print('case')\n", f)
    assert agent.client.stage_in(job, [f, f.lower()]) == [f.lower()]
    assert agent.client.stage_in(job.lower(), [f]) == [f.lower()]
    agent.client.run(job.lower(), [f])
    assert agent.wait_done(job).final.name == "DONE"
    assert code_of(agent.client.stage_in, job, [f]) == "FAILED_PRECONDITION"  # same job, other case
    assert agent.client.run(job, [f.lower()]).name == "DONE"  # same files in other case: a query


def test_err_2_concurrent_garbage_does_not_disturb_a_job(agent):
    """AGT-ERR-2: malformed requests in parallel never change another job."""
    job = agent.submit("print('steady')\n")
    errors = []

    def hammer():
        ch = agent.new_channel()
        for payload in (b"\xff" * 10, b"", b"\x0a\x00", b"\x12\x03abc"):
            code, _ = raw_call(ch, RUN, payload)
            if code == "OK" and payload:
                errors.append(payload)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert agent.wait_done(job).final.name == "DONE"
    assert agent.row(job).exit_status == 0
