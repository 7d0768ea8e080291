"""One protocol test class run against the FakeAgent and the reference agent (where they apply)."""
from __future__ import annotations

import platform
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import grpc
import pytest

from fakes import FakeAgent
from protos import Common_pb2, RunJob_pb2, StageInFile_pb2
from protos.client import AgentCallError
from protos.states import JobState
from shared_helpers import code_of
from shared_helpers import new_id as job_id

# these tests misuse the protocol on purpose; the habits they show are tested in test_fakes_habits.py
pytestmark = pytest.mark.filterwarnings("ignore::fakes.habits.ClientHabitWarning")

_U = "5a0c6f1e-93b2-4c3d-8e4f-0a1b2c3d4e5f"  # fixed: parametrized test ids must not vary (xdist)
MALFORMED = ["", "../x", "a/b", "x" * 36, _U + "0", _U[:-1], _U + "\n", "{" + _U + "}", _U.replace("-", ""),
             _U.replace("a", "g", 1), " " + _U]
RUNNING = ".".join(platform.python_version_tuple()[:2])


@dataclass
class Target:
    """An agent under test: its address and how to put a file into its source."""

    name: str
    address: str
    put: Callable[[str, bytes], None]
    delete: Callable[[str], None]

    def new_file(self, data: bytes = b"pass\n") -> str:
        f = str(uuid.uuid4())
        self.put(f, data)
        return f


def _fake_target():
    agent = FakeAgent()
    with agent.serve() as address:
        yield Target("fake", address, agent.source.put, agent.source.delete)


def _reference_target(tmp: Path):
    server_mod = pytest.importorskip("reference_agent.server")
    from reference_agent.config import AgentConfig
    from reference_agent.telemetry import Telemetry

    source = tmp / "source"
    source.mkdir()
    config = AgentConfig(listen="127.0.0.1:0", source=str(source), state_dir=str(tmp / "state"), slots=2,
                         discover_path=False, log_rpcs=False)
    with server_mod.AgentServer(config, telemetry=Telemetry(stream=None)) as server:
        yield Target("reference", server.address, lambda f, data: (source / f.lower()).write_bytes(data),
                     lambda f: (source / f.lower()).unlink())


@pytest.fixture(scope="module", params=["fake", "reference"])
def target(request, tmp_path_factory):
    if request.param == "fake":
        yield from _fake_target()
    else:
        yield from _reference_target(tmp_path_factory.mktemp("reference"))


@pytest.fixture
def client(target, connect):
    return connect(target.address)




class TestProtocolSurface:
    """PROTOCOL-V1 as a client sees it; every test uses fresh UUIDs, so one agent serves all."""

    def test_stage_lists_staged_files_once_in_order_in_lower_case(self, target, client):
        a, b, absent = target.new_file(), target.new_file(), str(uuid.uuid4())
        job = job_id()
        assert client.stage_in(job.upper(), [b.upper(), absent, a, b, a.upper()]) == [b, a]
        assert client.stage_in(job, [a, b, absent]) == [a, b]            # AGT-STAGE-2
        assert client.stage_in(job, []) == []

    def test_content_is_cached_by_file_uuid(self, target, client):
        """AGT-STAGE-5 (SHOULD), seen from outside: a file gone from the source still stages
        for another job once it is on the agent; a file never staged does not."""
        f, never = target.new_file(), target.new_file()
        assert client.stage_in(job_id(), [f]) == [f]
        target.delete(f)
        target.delete(never)
        assert client.stage_in(job_id(), [f, never]) == [f]

    def test_stage_after_submit_is_refused_without_state_change(self, target, client):
        f, late = target.new_file(), target.new_file()
        job = job_id()
        client.stage_in(job, [f])
        client.run(job, [f])
        assert code_of(client.stage_in, job.upper(), [late]) == "FAILED_PRECONDITION"
        assert code_of(client.run, job, [f, late]) == "ALREADY_EXISTS"  # late was not added
        assert code_of(client.status, job) == "OK"

    def test_first_runjob_without_files_is_invalid_and_creates_nothing(self, target, client):
        f = target.new_file()
        job = job_id()
        client.stage_in(job, [f])
        assert code_of(client.run, job, []) == "INVALID_ARGUMENT"
        assert code_of(client.stage_in, job, [f]) == "OK"   # the refused RunJob created no job
        client.run(job, [f])
        assert code_of(client.stage_in, job, [f]) == "FAILED_PRECONDITION"   # now it exists

    def test_unstaged_files_are_named_and_no_job_is_created(self, target, client):
        f, other = target.new_file(), target.new_file()
        job = job_id()
        client.stage_in(job, [f])
        with pytest.raises(AgentCallError) as info:
            client.run(job, [f, other.upper()])
        assert info.value.code_name == "FAILED_PRECONDITION" and other in info.value.details.lower()
        assert client.stage_in(job, [other]) == [other]                  # still not submitted
        client.run(job, [f, other])

    def test_files_of_another_job_are_not_staged_for_this_one(self, target, client):
        f = target.new_file()
        mine, yours = job_id(), job_id()
        client.stage_in(yours, [f])
        assert code_of(client.run, mine, [f]) == "FAILED_PRECONDITION"

    @pytest.mark.parametrize("bad", MALFORMED)
    def test_malformed_uuids_are_invalid_argument_with_no_state_change(self, target, client, bad):
        f = target.new_file()
        job = job_id()
        assert code_of(client.stage_in, bad, [f]) == "INVALID_ARGUMENT"
        assert code_of(client.stage_in, job, [f, bad]) == "INVALID_ARGUMENT"
        assert code_of(client.run, job, [f]) == "FAILED_PRECONDITION"   # f was not staged
        assert code_of(client.run, bad, [f]) == "INVALID_ARGUMENT"
        client.stage_in(job, [f])
        assert code_of(client.run, job, [f, bad]) == "INVALID_ARGUMENT"
        assert code_of(client.stage_in, job, []) == "OK"                 # still not submitted

    @pytest.mark.parametrize("method, message", [
        ("RunJob", RunJob_pb2.RunJobRequest()),
        ("RunJob", RunJob_pb2.RunJobRequest(job=Common_pb2.JobId())),
        ("StageInFiles", StageInFile_pb2.StageInFilesRequest()),
        ("StageInFiles", StageInFile_pb2.StageInFilesRequest(job=Common_pb2.JobId(uuid=_U),
                                                             files=[Common_pb2.FileId()])),
    ], ids=["run-no-job", "run-no-uuid", "stage-no-job", "stage-file-no-uuid"])
    def test_missing_required_fields_are_invalid_argument(self, target, raw, method, message):
        assert raw(target.address).status(method, message.SerializePartialToString()) \
            is grpc.StatusCode.INVALID_ARGUMENT

    @pytest.mark.parametrize("payload", [b"\xff\xff\xff", b"\x0a\x05abc", b"\x0a"])
    def test_unparseable_bytes_get_a_non_ok_status(self, target, raw, payload):
        for method in ("RunJob", "StageInFiles"):
            assert raw(target.address).status(method, payload) in (grpc.StatusCode.INVALID_ARGUMENT,
                                                                   grpc.StatusCode.INTERNAL)

    def test_request_over_the_size_limit_is_resource_exhausted(self, target, raw):
        big = StageInFile_pb2.StageInFilesRequest(job=Common_pb2.JobId(uuid="x" * (5 * 1024 * 1024)))
        assert raw(target.address).status("StageInFiles", big.SerializeToString()) \
            is grpc.StatusCode.RESOURCE_EXHAUSTED

    @pytest.mark.parametrize("wanted, code", [
        (RUNNING, "OK"), ([f">={RUNNING}", f"<={RUNNING}.99"], "OK"), ([None, "", " "], "OK"),
        (">=99", "FAILED_PRECONDITION"), (["3", "<3"], "FAILED_PRECONDITION"),
        ("python3", "INVALID_ARGUMENT"), ("3.11.x", "INVALID_ARGUMENT"), (">>3", "INVALID_ARGUMENT"),
    ])
    def test_python_version(self, target, client, wanted, code):
        f = target.new_file()
        job = job_id()
        client.stage_in(job, [f])
        assert code_of(client.run, job, [f], python_version=wanted) == code
        if code != "OK":
            assert code_of(client.stage_in, job, [f]) == "OK"            # no job was created

    def test_repeat_rules(self, target, client):
        a, b = target.new_file(), target.new_file()
        job = job_id()
        client.stage_in(job, [a, b])
        client.run(job, [a, b, a], python_version=[RUNNING, None])
        assert code_of(client.run, job) == "OK"
        assert code_of(client.run, job.upper(), [a.upper(), b, a]) == "OK"
        assert code_of(client.run, job, [], python_version=[RUNNING, ""]) == "OK"
        assert code_of(client.run, job, [a, b, a], python_version=[RUNNING, ""]) == "OK"
        assert code_of(client.run, job, [a, b]) == "ALREADY_EXISTS"
        assert code_of(client.run, job, [b, a, a]) == "ALREADY_EXISTS"
        assert code_of(client.run, job, [], python_version=[RUNNING]) == "ALREADY_EXISTS"
        assert code_of(client.run, job, [], python_version="three") == "INVALID_ARGUMENT"
        assert code_of(client.run, job) == "OK"

    def test_states_are_monotonic_until_done(self, target, client):
        f = target.new_file(b"pass\n")
        job = job_id()
        client.stage_in(job, [f])
        seen = [client.run(job, [f])]
        deadline = time.monotonic() + 30  # generous: 2 shared cores under load
        while seen[-1] is not JobState.DONE and time.monotonic() < deadline:
            time.sleep(0.005)
            seen.append(client.status(job.upper() if len(seen) % 2 else job))
        assert seen[-1] is JobState.DONE, f"not DONE after 30 s: {[s.name for s in seen[-3:]]}"
        assert seen == sorted(seen)

    def test_ok_responses_carry_their_required_fields_on_the_wire(self, target, raw):
        f = target.new_file()
        job = job_id()
        caller = raw(target.address)
        stage = StageInFile_pb2.StageInFilesRequest(job=Common_pb2.JobId(uuid=job), files=[Common_pb2.FileId(uuid=f)])
        answer = StageInFile_pb2.StageInFilesResponse.FromString(caller.call("StageInFiles", stage.SerializeToString()))
        assert answer.IsInitialized() and [s.file.uuid for s in answer.success_files] == [f]
        run = RunJob_pb2.RunJobRequest(job=Common_pb2.JobId(uuid=job), files=[Common_pb2.FileId(uuid=f)])
        for _ in range(2):
            response = RunJob_pb2.RunJobResponse.FromString(caller.call("RunJob", run.SerializeToString()))
            assert response.HasField("code") and response.code in (0, 1, 2)
