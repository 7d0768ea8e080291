"""The servicer's logic with grpc_testing (no sockets), over a real AgentCore in tmp_path."""
from __future__ import annotations

import grpc
import grpc_testing
import pytest

from agent_helpers import new_id
from protos import AgentService_pb2, Common_pb2, RunJob_pb2, StageInFile_pb2
from protos.states import JobState
from reference_agent.config import AgentConfig
from reference_agent.domain import AgentCore
from reference_agent.servicer import AgentServicer
from reference_agent.telemetry import Telemetry

SERVICE = AgentService_pb2.DESCRIPTOR.services_by_name["Agent"]


@pytest.fixture
def core(tmp_path):
    (tmp_path / "src").mkdir()
    c = AgentCore(AgentConfig(source=str(tmp_path / "src"), state_dir=str(tmp_path / "state"), slots=1,
                              discover_path=False), Telemetry(stream=None))
    c.start()
    yield c
    c.close(stop_jobs=True)


@pytest.fixture
def server(core):
    return grpc_testing.server_from_dictionary({SERVICE: AgentServicer(core)}, grpc_testing.strict_real_time())


def invoke(server, method: str, request):
    rpc = server.invoke_unary_unary(SERVICE.methods_by_name[method], (), request, None)
    response, _metadata, code, details = rpc.termination()
    return response, code, details


def stage_request(job, files):
    return StageInFile_pb2.StageInFilesRequest(job=Common_pb2.JobId(uuid=job),
                                               files=[Common_pb2.FileId(uuid=f) for f in files])


def run_request(job, files=(), versions=()):
    return RunJob_pb2.RunJobRequest(job=Common_pb2.JobId(uuid=job), files=[Common_pb2.FileId(uuid=f) for f in files],
                                    requirements=[RunJob_pb2.JobRequirement(python_version=v) for v in versions])


def test_stage_builds_lower_case_staged_files(server, core, tmp_path):
    f = new_id()
    (tmp_path / "src" / f).write_text("print(1)\n")
    response, code, _ = invoke(server, "StageInFiles", stage_request(new_id(), [f.upper(), f]))
    assert code is grpc.StatusCode.OK
    assert [s.file.uuid for s in response.success_files] == [f]


@pytest.mark.parametrize("request_,code,needle", [
    (StageInFile_pb2.StageInFilesRequest(), grpc.StatusCode.INVALID_ARGUMENT, "job"),
    (stage_request("nope", []), grpc.StatusCode.INVALID_ARGUMENT, "job.uuid"),
    (stage_request(new_id(), ["../etc"]), grpc.StatusCode.INVALID_ARGUMENT, "files[0].uuid"),
])
def test_stage_errors_map_to_status(server, request_, code, needle):
    _, got, details = invoke(server, "StageInFiles", request_)
    assert got is code and needle in details


def test_run_error_mapping_and_success_code(server, core, tmp_path):
    job, f = new_id(), new_id()
    (tmp_path / "src" / f).write_text("pass\n")
    _, code, details = invoke(server, "RunJob", run_request(job, [f]))
    assert code is grpc.StatusCode.FAILED_PRECONDITION and f in details
    _, code, _ = invoke(server, "RunJob", run_request(job, []))
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    invoke(server, "StageInFiles", stage_request(job, [f]))
    _, code, details = invoke(server, "RunJob", run_request(job, [f], ["==2.7"]))
    assert code is grpc.StatusCode.FAILED_PRECONDITION and "==2.7" in details
    _, code, _ = invoke(server, "RunJob", run_request(job, [f], ["2.7.x"]))
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    response, code, _ = invoke(server, "RunJob", run_request(job, [f], ["3"]))
    assert code is grpc.StatusCode.OK and response.HasField("code")
    first = JobState(response.code)
    again, code, _ = invoke(server, "RunJob", run_request(job, [f], ["3"]))
    assert code is grpc.StatusCode.OK and JobState(again.code) >= first   # a status query now, never backwards
    _, code, _ = invoke(server, "RunJob", run_request(job, [f], ["3.0"]))
    assert code is grpc.StatusCode.ALREADY_EXISTS
    _, code, _ = invoke(server, "StageInFiles", stage_request(job, [f]))
    assert code is grpc.StatusCode.FAILED_PRECONDITION
