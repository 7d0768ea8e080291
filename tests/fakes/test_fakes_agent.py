"""FakeAgent over a real loopback channel and grpc_testing: progressions, faults, calls, interpreters."""
from __future__ import annotations

import threading

import grpc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fakes
from fakes import AfterPolls, AfterSeconds, FakeAgent, Immediate, Manual, ManualClock, Scripted
from protos import Common_pb2, RunJob_pb2, StageInFile_pb2
from protos.client import AgentCallError, AgentClient
from protos.states import DoneReason, Event, IllegalTransition, JobState

# these tests misuse the protocol on purpose; the habits they show are tested in test_fakes_habits.py
pytestmark = pytest.mark.filterwarnings("ignore::fakes.habits.ClientHabitWarning")

W, R, D = JobState.WAIT, JobState.RUN, JobState.DONE


def submit(client, agent, job, data=b"print('hi')\n", **kwargs):
    f = agent.source.add(data)
    assert client.stage_in(job, [f]) == [f]
    return client.run(job, [f], **kwargs), f


def test_default_progression_is_wait_run_done_and_calls_are_recorded(connect, new_uuid):
    agent = FakeAgent()
    job = new_uuid()
    with agent.serve() as address:
        client = connect(address)
        first, f = submit(client, agent, job.upper())
        assert [first, client.status(job), client.status(job), client.status(job)] == [W, R, D, D]
    calls = agent.calls
    assert [(c.method, c.code.name) for c in calls] == [("StageInFiles", "OK")] + [("RunJob", "OK")] * 4
    assert calls[0].request.job.uuid == job.upper()                 # the request as sent
    assert [s.file.uuid for s in calls[0].response.success_files] == [f]
    assert [c.response.code for c in agent.backend.calls_to("RunJob")] == [0, 1, 2, 2]
    fake_job = agent.backend.job(job)
    assert fake_job.files == (f,) and fake_job.answers == 4 and fake_job.machine.reason is DoneReason.SUCCEEDED


@pytest.mark.parametrize("progression, expected", [
    (Immediate(), [D, D]),
    (AfterPolls(wait=2, run=3), [W, W, R, R, R, D, D]),
    (Scripted(["WAIT", "RUN", "RUN", "DONE"]), [W, R, R, D, D]),
    (Scripted(["WAIT"]), [W] * 5),
])
def test_per_agent_progressions_over_the_wire(connect, new_uuid, progression, expected):
    agent = FakeAgent(progression=progression)
    job = new_uuid()
    with agent.serve() as address:
        client = connect(address)
        first, _ = submit(client, agent, job)
        assert [first] + [client.status(job) for _ in expected[1:]] == expected


def test_per_job_progression_overrides_the_default_before_and_after_submission(connect, new_uuid):
    agent = FakeAgent(progression=Immediate())
    slow, other = new_uuid(), new_uuid()
    agent.backend.set_progression(slow.upper(), Scripted(["WAIT", "WAIT", "RUN"]))
    with agent.serve() as address:
        client = connect(address)
        assert submit(client, agent, slow)[0] == W and submit(client, agent, other)[0] == D
        assert client.status(slow) == W and client.status(slow) == R
        agent.backend.set_progression(slow, Immediate())
        assert client.status(slow) == D


def test_after_seconds_follows_a_controllable_clock(connect, new_uuid):
    clock = ManualClock()
    agent = FakeAgent(progression=AfterSeconds(wait=10, run=50), clock=clock)
    job = new_uuid()
    with agent.serve() as address:
        client = connect(address)
        assert submit(client, agent, job)[0] == W
        clock.advance(9.9)
        assert client.status(job) == W
        clock.advance(0.1)
        assert agent.backend.state(job) == R and client.status(job) == R
        clock.advance(50)
        assert client.status(job) == D


def test_manual_progression_moves_only_by_hand_and_refuses_illegal_moves(connect, new_uuid):
    agent = FakeAgent(progression=Manual())
    job = new_uuid()
    with agent.serve() as address:
        client = connect(address)
        assert submit(client, agent, job)[0] == W and client.status(job) == W
        agent.backend.advance(job, Event.START)
        assert client.status(job) == R
        agent.backend.advance(job, "kill")
        assert client.status(job) == D and agent.backend.job(job).machine.reason is DoneReason.KILLED
        with pytest.raises(IllegalTransition):
            agent.backend.advance(job, Event.START)
        assert client.status(job) == D


def test_wait_until_done_against_the_fake(connect, new_uuid):
    agent = FakeAgent(progression=AfterPolls(wait=2, run=2))
    job = new_uuid()
    with agent.serve() as address:
        client = connect(address)
        submit(client, agent, job)
        timeline = client.wait_until_done(job, poll_interval=0, deadline=5, sleep=lambda s: None)
    assert [s for _, s in timeline.points] == [W, R, D]


# --- interpreters ----------------------------------------------------------------------------------

@pytest.mark.parametrize("versions, python_version, chosen", [
    (["3.8.18", "3.12.1", "3.13.0rc1"], None, "3.12.1"),
    (["3.8.18", "3.12.1", "3.13.0rc1"], "3.8", "3.8.18"),
    (["3.8.18", "3.12.1", "3.13.0rc1"], [">=3.8", "<3.12"], "3.8.18"),
    (["3.10.4", "3.11.9"], ["3", None, " "], "3.11.9"),
    (["2.7.18", "3.9.1"], "==2.7.*", "2.7.18"),
])
def test_python_version_chooses_the_newest_satisfying_interpreter(connect, new_uuid, versions, python_version,
                                                                    chosen):
    agent = FakeAgent(python_versions=versions)
    job = new_uuid()
    with agent.serve() as address:
        submit(connect(address), agent, job, python_version=python_version)
    assert agent.backend.job(job).interpreter == chosen


@pytest.mark.parametrize("python_version, code", [
    ("==3.13.*", "FAILED_PRECONDITION"),            # only a pre-release would match
    ([">=3.9", "<3.12"], "FAILED_PRECONDITION"),    # AND: nothing in between
    ("2", "FAILED_PRECONDITION"),
    ("3.x", "INVALID_ARGUMENT"), ("=>3.8", "INVALID_ARGUMENT"), ("~=3", "INVALID_ARGUMENT"),
])
def test_python_version_refusals_create_no_job(connect, new_uuid, python_version, code):
    agent = FakeAgent(python_versions=["3.8.18", "3.12.1", "3.13.0rc1"])
    job = new_uuid()
    with agent.serve() as address:
        client = connect(address)
        f = agent.source.add(b"x")
        client.stage_in(job, [f])
        with pytest.raises(AgentCallError) as info:
            client.run(job, [f], python_version=python_version)
        assert info.value.code_name == code
        assert agent.backend.job(job) is None
        assert client.run(job, [f]) == W    # a later correct RunJob succeeds


def test_default_interpreter_is_the_running_one():
    import platform
    assert FakeAgent().backend.python_versions == [platform.python_version()]


# --- staging -----------------------------------------------------------------------------------

def test_staging_copies_bytes_caches_by_uuid_and_skips_unreadable(connect, new_uuid):
    agent = FakeAgent()
    src = agent.source
    a, b, gone = src.add(b"A"), src.add(b"B"), src.add(b"G")
    src.delete(gone)
    src.fail_reads(b)
    job1, job2 = new_uuid(), new_uuid()
    with agent.serve() as address:
        client = connect(address)
        assert client.stage_in(job1, [a, b, gone, a.upper()]) == [a]
        src.put(a, b"changed")                      # the job keeps the bytes of staging time
        assert agent.backend.staged(job1) == {a: b"A"}
        assert client.stage_in(job2, [a]) == [a]    # from the cache: no second read
        assert src.reads[a] == 1 and agent.backend.staged(job2) == {a: b"A"}
        src.heal()
        assert client.stage_in(job1, [b, a]) == [b, a]
        assert client.stage_in(job1, []) == []


# --- faults -------------------------------------------------------------------------------------

def test_fail_next_and_fail_every_reach_the_client(connect, new_uuid):
    agent = FakeAgent()
    job = new_uuid()
    agent.backend.faults.fail_next(grpc.StatusCode.UNAVAILABLE, "try again", method="StageInFiles")
    with agent.serve() as address:
        client = connect(address)
        with pytest.raises(AgentCallError) as info:
            client.stage_in(job, [])
        assert (info.value.code_name, info.value.details) == ("UNAVAILABLE", "try again")
        assert client.stage_in(job, []) == []
        agent.backend.faults.fail_every(2, "RESOURCE_EXHAUSTED", method="RunJob")
        outcomes = []
        for _ in range(4):
            try:
                outcomes.append(client.status(job).name)
            except AgentCallError as exc:
                outcomes.append(exc.code_name)
    # every call of an unknown job is INVALID_ARGUMENT (no files), every 2nd is the injected fault
    assert outcomes == ["INVALID_ARGUMENT", "RESOURCE_EXHAUSTED"] * 2
    assert [c.injected for c in agent.calls] == [True, False, False, True, False, True]


def test_after_apply_loses_the_answer_but_keeps_the_effect(connect, new_uuid):
    agent = FakeAgent()
    job = new_uuid()
    f = agent.source.add(b"x")
    with agent.serve() as address:
        client = connect(address)
        client.stage_in(job, [f])
        agent.backend.faults.fail_next("UNAVAILABLE", method="RunJob", after_apply=True)
        with pytest.raises(AgentCallError, match="UNAVAILABLE"):
            client.run(job, [f])
        assert agent.backend.job(job) is not None      # submitted although the client saw an error
        assert client.run(job, [f]) == R               # a retry is a status query (second answer)


def test_latency_and_disconnect(connect, new_uuid):
    slept = []
    agent = FakeAgent(sleep=slept.append)
    agent.backend.faults.set_latency(0.25, method="RunJob")
    agent.backend.faults.set_latency(0.5)
    job = new_uuid()
    with agent.serve() as address:
        client = connect(address)
        client.stage_in(job, [])
        with pytest.raises(AgentCallError):
            client.status(job)
        assert slept == [0.5, 0.75]
        agent.backend.connected = False
        with pytest.raises(AgentCallError) as info:
            client.stage_in(job, [])
        assert info.value.code_name == "UNAVAILABLE"
        agent.reset()
        assert client.stage_in(job, []) == [] and slept == [0.5, 0.75]
        assert len(agent.calls) == 1


def test_real_latency_trips_a_client_deadline(new_uuid):
    agent = FakeAgent()
    agent.backend.faults.set_latency(0.5)
    with agent.serve() as address, grpc.insecure_channel(address) as channel:
        with pytest.raises(AgentCallError) as info:
            AgentClient(channel, timeout=0.05).stage_in(new_uuid(), [])
    assert info.value.code_name == "DEADLINE_EXCEEDED"


# --- concurrency and grpc_testing -------------------------------------------------------------------

def test_concurrent_first_runjobs_create_one_job(connect, new_uuid):
    agent = FakeAgent(progression=AfterPolls(wait=100, run=0))
    job = new_uuid()
    f = agent.source.add(b"x")
    with agent.serve() as address:
        client = connect(address)
        client.stage_in(job, [f])
        barrier, results = threading.Barrier(8), []
        def go():
            barrier.wait(5)
            results.append(client.run(job, [f]))
        threads = [threading.Thread(target=go) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
    assert results == [W] * 8
    assert len(agent.backend.jobs()) == 1 and agent.backend.job(job).answers == 8


def _invoke(server, method, request):
    rpc = server.invoke_unary_unary(fakes.METHODS[method], (), request, None)
    response, _, code, details = rpc.termination()
    return response, code, details


def test_grpc_testing_server_answers_like_the_wire(new_uuid):
    agent = FakeAgent(progression=Immediate())
    server = fakes.testing_server(agent)
    job, f = new_uuid(), agent.source.add(b"x")
    req = StageInFile_pb2.StageInFilesRequest(job=Common_pb2.JobId(uuid=job), files=[Common_pb2.FileId(uuid=f)])
    response, code, _ = _invoke(server, "StageInFiles", req)
    assert code is grpc.StatusCode.OK and [s.file.uuid for s in response.success_files] == [f]
    run = RunJob_pb2.RunJobRequest(job=Common_pb2.JobId(uuid=job), files=[Common_pb2.FileId(uuid=f)])
    response, code, _ = _invoke(server, "RunJob", run)
    assert code is grpc.StatusCode.OK and response.code == RunJob_pb2.DONE
    _, code, details = _invoke(server, "StageInFiles", req)
    assert code is grpc.StatusCode.FAILED_PRECONDITION and job in details


@settings(max_examples=40, deadline=None)
@given(st.text(max_size=40))
def test_grpc_testing_any_malformed_job_uuid_is_invalid_argument(text):
    from protos.validation import is_uuid
    agent = FakeAgent()
    server = fakes.testing_server(agent)
    req = StageInFile_pb2.StageInFilesRequest(job=Common_pb2.JobId(uuid=text))
    _, code, _ = _invoke(server, "StageInFiles", req)
    assert code is (grpc.StatusCode.OK if is_uuid(text) else grpc.StatusCode.INVALID_ARGUMENT)
    assert [c.code for c in agent.calls] == [code]


def test_full_method_names_come_from_the_descriptor():
    assert fakes.full_method_name("RunJob") == "/Agent/RunJob"
    assert sorted(fakes.METHODS) == ["RunJob", "StageInFiles"]


@pytest.mark.parametrize("port", [-1, 65536, "80", True])
def test_serve_rejects_bad_ports(port):
    with pytest.raises(ValueError, match="port"):
        with FakeAgent().serve(port=port):
            pass


def test_serve_reports_a_port_it_cannot_bind():
    agent = FakeAgent()
    with agent.serve() as address:
        port = int(address.rsplit(":", 1)[1])
        with pytest.raises(OSError, match=str(port)):
            with FakeAgent().serve(port=port):
                pass
