"""Typed client errors: each situation gets its class, from a fake and from a real reference agent alike."""
from __future__ import annotations

import uuid

import grpc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fakes import FakeAgent, Scripted
from protos import Common_pb2, RunJob_pb2, StageInFile_pb2
from protos.client import (
    AgentCallError, AgentClient, AgentUnavailable, AlreadySubmitted, InvalidRequest, NoInterpreter, NotAuthorized,
    PreconditionFailed, ResourceExhausted, StageAfterSubmit, UnknownJob, Unstaged,
)
from protos.client_errors import classify
from protos.launcher import reference_agent

pytestmark = pytest.mark.filterwarnings("ignore::fakes.habits.ClientHabitWarning")   # misuse on purpose


class FakeTarget:
    def __init__(self):
        self.agent = FakeAgent(progression=Scripted(["WAIT"]), python_versions=["3.11.7"])
        self._serving = self.agent.serve()
        self.address = self._serving.__enter__()

    def put(self, data: bytes) -> str:
        return self.agent.source.add(data)

    def close(self):
        self._serving.__exit__(None, None, None)


class ReferenceTarget:
    def __init__(self, tmp):
        self.source = tmp / "source"
        self.source.mkdir()
        self.process = reference_agent(self.source, tmp / "state", slots=1, extra=["--no-path-pythons"])
        self.address = self.process.start()

    def put(self, data: bytes) -> str:
        name = str(uuid.uuid4())
        (self.source / name).write_bytes(data)
        return name

    def close(self):
        self.process.stop()


@pytest.fixture(scope="module", params=["fake", "reference"])
def target(request, tmp_path_factory):
    made = FakeTarget() if request.param == "fake" else ReferenceTarget(tmp_path_factory.mktemp("ref"))
    yield made
    made.close()


@pytest.fixture
def client(target):
    with AgentClient.connect(target.address, timeout=10) as made:
        yield made


def new_id() -> str:
    return str(uuid.uuid4())


def submitted(target, client):
    job, f = new_id(), target.put(b"import time\ntime.sleep(30)\n")
    client.submit(job, [f])
    return job, f


def test_unknown_job_is_told_apart_from_a_bad_request(target, client):
    job = new_id()
    with pytest.raises(UnknownJob) as info:
        client.status(job)
    assert (info.value.code_name, info.value.requirement, info.value.job) == ("INVALID_ARGUMENT", "AGT-RUN-2", job)
    assert not info.value.transient
    with pytest.raises(InvalidRequest) as bad:
        client.status("not-a-uuid")
    assert type(bad.value) is InvalidRequest and bad.value.requirement == "AGT-ID-1"
    with pytest.raises(InvalidRequest) as version:
        client.run(job, [target.put(b"pass\n")], python_version="three")
    assert type(version.value) is InvalidRequest and version.value.requirement == "AGT-RUN-4"


def test_unstaged_files_are_named(target, client):
    job, good = new_id(), target.put(b"pass\n")
    client.stage_in(job, [good])
    missing = [new_id() for _ in range(20)]
    with pytest.raises(Unstaged) as info:
        client.run(job, [good, *missing])
    err = info.value
    assert err.requirement == "AGT-RUN-3" and err.files and set(err.files) <= set(missing)
    assert len(err.details) < 2048   # bounded: the agent names only the first few
    with pytest.raises(Unstaged) as left_out:
        client.stage(job, [good, missing[0].upper()])
    assert left_out.value.files == [missing[0]] and left_out.value.requirement == "AGT-STAGE-1"


def test_no_interpreter(target, client):
    job, f = new_id(), target.put(b"pass\n")
    client.stage_in(job, [f])
    with pytest.raises(NoInterpreter) as info:
        client.run(job, [f], python_version="==2.7")
    assert info.value.requirement == "AGT-RUN-4" and isinstance(info.value, PreconditionFailed)


def test_stage_after_submit_and_mismatched_repeat(target, client):
    job, f = submitted(target, client)
    other = target.put(b"other\n")
    with pytest.raises(StageAfterSubmit) as staged:
        client.stage_in(job, [other])
    assert staged.value.requirement == "AGT-STAGE-4"
    with pytest.raises(AlreadySubmitted) as repeat:
        client.run(job, [other])
    assert repeat.value.requirement == "AGT-RUN-8" and repeat.value.code_name == "ALREADY_EXISTS"
    assert client.run(job, [f]).name in ("WAIT", "RUN")   # a verbatim repeat is a status query


@pytest.mark.parametrize("code, cls", [
    ("UNAVAILABLE", AgentUnavailable), ("DEADLINE_EXCEEDED", AgentUnavailable),
    ("RESOURCE_EXHAUSTED", ResourceExhausted), ("UNAUTHENTICATED", NotAuthorized),
    ("PERMISSION_DENIED", NotAuthorized), ("INTERNAL", AgentCallError), ("UNIMPLEMENTED", AgentCallError),
])
def test_other_codes(code, cls):
    agent = FakeAgent()
    agent.backend.faults.fail_next(code, "injected")
    with agent.serve() as address, AgentClient.connect(address, timeout=10) as client:
        with pytest.raises(AgentCallError) as info:
            client.stage_in(new_id(), [])
    assert type(info.value) is cls and info.value.code_name == code
    assert info.value.transient is (cls is AgentUnavailable)


def _run_request(job: str, files=(), versions=()):
    return RunJob_pb2.RunJobRequest(job=Common_pb2.JobId(uuid=job), files=[Common_pb2.FileId(uuid=f) for f in files],
                                    requirements=[RunJob_pb2.JobRequirement(python_version=v) for v in versions])


@settings(deadline=None)   # two test workers on two shared cores: no per-example time limit
@given(details=st.text(max_size=200), job=st.uuids().map(str))
def test_classification_does_not_read_the_wording(details, job):
    """Only the status code, the request and (for AGT-RUN-3) the UUIDs named decide the class."""
    assert type(classify("RunJob", grpc.StatusCode.INVALID_ARGUMENT, details, _run_request(job))) is UnknownJob
    bad = classify("RunJob", grpc.StatusCode.INVALID_ARGUMENT, details, _run_request(job, [job], ["~=3"]))
    assert type(bad) is InvalidRequest and bad.requirement == "AGT-RUN-4"
    f = str(uuid.uuid5(uuid.NAMESPACE_URL, details))
    named = classify("RunJob", grpc.StatusCode.FAILED_PRECONDITION, f"{details} {f.upper()}", _run_request(job, [f]))
    assert type(named) is Unstaged and named.files == [f]
    if f not in details.lower():
        assert type(classify("RunJob", grpc.StatusCode.FAILED_PRECONDITION, details, _run_request(job, [f]))) \
            is NoInterpreter
    stage = StageInFile_pb2.StageInFilesRequest(job=Common_pb2.JobId(uuid=job))
    assert type(classify("StageInFiles", grpc.StatusCode.FAILED_PRECONDITION, details, stage)) is StageAfterSubmit
    missing = classify("StageInFiles", grpc.StatusCode.INVALID_ARGUMENT, details, StageInFile_pb2.StageInFilesRequest())
    assert type(missing) is InvalidRequest and missing.requirement == "AGT-ID-2"


def test_old_callers_keep_working():
    """AgentCallError(method, code, details) and its attributes, as bench and tests use them."""
    err = AgentCallError("RunJob", grpc.StatusCode.INTERNAL, "boom")
    assert (err.method, err.code_name, err.details, str(err)) == ("RunJob", "INTERNAL", "boom",
                                                                 "RunJob failed with INTERNAL: boom")
    assert AgentCallError("RunJob", None, "").code_name == "UNKNOWN"
