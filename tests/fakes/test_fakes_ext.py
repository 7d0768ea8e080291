"""The fake agent's AgentExtensions on the wire (raw stubs over loopback), its cancel modes, and legal mode."""
from __future__ import annotations

import random
import uuid

import grpc
import pytest
from hypothesis import HealthCheck, event, given, settings

from fakes import FakeAgent, FakeBackend, Manual, Scripted
from fakes.legal import Behaviour, behaviours
from protos import AgentExtensions_pb2, AgentExtensions_pb2_grpc, Common_pb2
from protos.client import AgentClient, Backoff
from protos.extensions import EndKind, Outcome, WatchChecker
from protos.states import JobState

WAIT, RUN, DONE = JobState.WAIT, JobState.RUN, JobState.DONE


def new_id() -> str:
    return str(uuid.uuid4())


@pytest.fixture
def wire():
    """wire(**config) -> (agent, stub, client) for a served fake."""
    made = []

    def make(**config):
        agent = FakeAgent(**config)
        serving = agent.serve()
        address = serving.__enter__()
        channel = grpc.insecure_channel(address)
        made.append((serving, channel))
        return agent, AgentExtensions_pb2_grpc.AgentExtensionsStub(channel), AgentClient(channel, timeout=5)

    yield make
    for serving, channel in made:
        channel.close()
        serving.__exit__(None, None, None)


def code_of(call, *args, **kwargs) -> tuple[str, str]:
    try:
        result = call(*args, **kwargs)
        if not hasattr(result, "ByteSize"):
            list(result)
        return "OK", ""
    except grpc.RpcError as exc:
        return exc.code().name, exc.details()


def jid(job: str) -> Common_pb2.JobId:
    return Common_pb2.JobId(uuid=job)


def submit(agent, client, progression=None) -> str:
    job = new_id()
    if progression is not None:
        agent.backend.set_progression(job, progression)
    client.submit(job, [agent.source.add(b"pass\n")])
    return job


def test_capabilities_as_configured(wire):
    agent, stub, _ = wire()
    assert list(stub.GetCapabilities(AgentExtensions_pb2.CapabilitiesRequest()).extensions) == [
        "outcome", "cancel", "watch"]
    agent.backend.extensions = frozenset()
    assert list(stub.GetCapabilities(AgentExtensions_pb2.CapabilitiesRequest()).extensions) == []
    for method, request in (("GetOutcome", jid(new_id())), ("CancelJob", jid(new_id())),
                            ("WatchJobs", AgentExtensions_pb2.WatchRequest(jobs=[jid(new_id())]))):
        code, details = code_of(getattr(stub, method), request)
        assert code == "UNIMPLEMENTED" and "extension" in details, (method, details)
    agent.backend.extensions = None
    calls = len(agent.calls)
    assert code_of(stub.GetCapabilities, AgentExtensions_pb2.CapabilitiesRequest())[0] == "UNIMPLEMENTED"
    assert len(agent.calls) == calls, "a v1 agent never sees a call to a service it does not have"


def test_ids_are_checked_as_in_v1_and_unknown_ones_are_not_found(wire):
    agent, stub, client = wire()
    known, unknown = submit(agent, client), new_id()
    for method in ("GetOutcome", "CancelJob"):
        assert code_of(getattr(stub, method), jid("../x"))[0] == "INVALID_ARGUMENT"
        code, details = code_of(getattr(stub, method), jid(unknown.upper()))
        assert code == "NOT_FOUND" and unknown in details
    code, details = code_of(stub.WatchJobs, AgentExtensions_pb2.WatchRequest(jobs=[jid(known), jid(unknown)]))
    assert code == "NOT_FOUND" and unknown in details and known not in details
    assert code_of(stub.WatchJobs, AgentExtensions_pb2.WatchRequest(jobs=[jid("x"), jid(unknown)]))[0] == \
        "INVALID_ARGUMENT"
    assert list(stub.WatchJobs(AgentExtensions_pb2.WatchRequest())) == []   # no job: ends at once


def test_a_stream_over_several_jobs_keeps_the_watch_rules(wire):
    agent, stub, client = wire()
    jobs = [submit(agent, client, Scripted(["WAIT"] * n + ["RUN"] * n + ["DONE"])) for n in (0, 1, 3)]
    done_first = jobs[0]
    assert client.status(done_first) is DONE
    checker = WatchChecker(jobs + [jobs[1].upper()], outcome_offered=True, floors={done_first: DONE})
    request = AgentExtensions_pb2.WatchRequest(jobs=[jid(j) for j in jobs] + [jid(jobs[1].upper())])
    for ev in stub.WatchJobs(request):
        checker.event(ev.job.uuid, ev.code, Outcome.from_proto(ev.outcome) if ev.HasField("outcome") else None)
    checker.closed(grpc.StatusCode.OK)
    assert checker.events == 1 + 3 + 3   # the DONE job once; the others WAIT, RUN, DONE; the repeated id once
    assert all(o.end is EndKind.EXITED for o in checker.outcomes.values()) and len(checker.outcomes) == 3


def test_break_stream_and_disconnect_end_streams(wire):
    agent, stub, client = wire(progression=Manual())
    job = submit(agent, client)
    agent.backend.faults.break_stream(after=1, code="UNAVAILABLE")
    stream = stub.WatchJobs(AgentExtensions_pb2.WatchRequest(jobs=[jid(job)]))
    first = next(stream)
    assert first.code == WAIT
    agent.backend.advance(job, "start")
    with pytest.raises(grpc.RpcError) as info:
        list(stream)
    assert info.value.code() is grpc.StatusCode.UNAVAILABLE
    stream = stub.WatchJobs(AgentExtensions_pb2.WatchRequest(jobs=[jid(job)]))
    assert next(stream).code == RUN
    agent.backend.connected = False
    with pytest.raises(grpc.RpcError) as info:
        list(stream)
    assert info.value.code() is grpc.StatusCode.UNAVAILABLE
    assert [c.code.name for c in agent.backend.calls_to("WatchJobs")] == ["UNAVAILABLE", "UNAVAILABLE"]
    assert len(agent.backend.calls_to("WatchJobs")[0].response) == 1


@pytest.mark.parametrize("kwargs, match", [
    (dict(after=-1), "after must be a whole number >= 0"),
    (dict(after=1, times=0), "times must be a whole number >= 1"),
    (dict(after=1, code="OK"), "non-OK"),
    (dict(after=1, code="NOPE"), "'NOPE'"),
])
def test_break_stream_refuses_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FakeAgent().backend.faults.break_stream(**kwargs)


@pytest.mark.parametrize("config, error, match", [
    (dict(extensions=["teleport"]), ValueError, "'teleport'"),
    (dict(extensions="watch"), TypeError, "'watch'"),
    (dict(watch_tick=0), ValueError, "watch_tick"),
])
def test_backend_refuses_bad_extension_config(config, error, match):
    with pytest.raises(error, match=match):
        FakeBackend(**config)


@pytest.mark.parametrize("mode, answer, end", [
    ("at-once", DONE, EndKind.CANCELLED), ("late", RUN, EndKind.CANCELLED), ("ends-first", DONE, EndKind.EXITED)])
def test_cancel_modes_of_a_running_job(wire, mode, answer, end):
    agent, _, client = wire(progression=Scripted(["RUN"]))
    agent.backend.cancel_mode = mode
    job = submit(agent, client)
    assert client.cancel(job) is answer
    assert client.status(job) is DONE and client.outcome(job).end is end
    assert client.cancel(job) is DONE and client.outcome(job) == client.outcome(job)   # AGT-EXT-4


def test_a_cancelled_waiting_job_never_starts(wire):
    agent, _, client = wire(progression=Scripted(["WAIT", "RUN", "DONE"]))
    job = submit(agent, client)
    assert client.cancel(job) is DONE
    for _ in range(3):
        assert client.status(job) is DONE
    outcome = client.outcome(job)
    assert outcome.end is EndKind.CANCELLED and outcome.started_ms is None


@pytest.mark.parametrize("kwargs, match", [
    (dict(offers="watch"), "offers must be None or names"),
    (dict(offers={"teleport"}), "offers must be None or names"),
    (dict(cancel="never"), "cancel must be one of"),
    (dict(breaks={-1}), "breaks must hold call numbers"),
])
def test_legal_behaviour_refuses_bad_extension_fields(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Behaviour(**kwargs)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(behaviour=behaviours(slow=False))
def test_a_client_that_cancels_gets_one_outcome_under_every_legal_behaviour(legal_agent, behaviour):
    """Submit, cancel where offered (racing the job's end), wait: the job is DONE once, with one
    outcome that no later answer changes (AGT-EXT-4, AGT-EXT-6)."""
    with legal_agent.play(behaviour) as play:
        job = str(uuid.uuid4())
        with AgentClient.connect(legal_agent.address, timeout=1, clock=play.clock, sleep=play.sleep,
                                 backoff=Backoff(rng=random.Random(0))) as client:
            client.submit(job, [play.source.add(b"pass\n")], deadline=600)
            offered = retried(lambda: client.capabilities(refresh=True))
            if "cancel" in offered:
                try:
                    client.cancel(job)
                except Exception as exc:  # noqa: BLE001 - a transient failure of the cancel: legal
                    assert getattr(exc, "transient", False), exc
            timeline = client.wait_until_done(job, deadline=3600)
            if "outcome" in offered:
                first, again = (retried(lambda: client.outcome(job)) for _ in range(2))
                assert first == again and first.done
                event(f"end {first.end.name}")
    assert timeline.final is DONE and [j.uuid for j in play.jobs] == [job]
    for kind in play.exercised:
        event(kind)


def retried(call, attempts: int = 20):
    """The call, sent again on a transient failure (legal mode loses and fails calls)."""
    for attempt in range(attempts):
        try:
            return call()
        except Exception as exc:  # noqa: BLE001
            if not getattr(exc, "transient", False) or attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def test_grpc_testing_server_serves_the_extension_too():
    from fakes import EXT_SERVICE, testing_server

    agent = FakeAgent(progression=Manual())
    server = testing_server(agent)
    methods = {m.name: m for m in EXT_SERVICE.methods}
    rpc = server.invoke_unary_unary(methods["GetCapabilities"], (), AgentExtensions_pb2.CapabilitiesRequest(), None)
    response, _, code, _ = rpc.termination()
    assert code is grpc.StatusCode.OK and list(response.extensions) == ["outcome", "cancel", "watch"]
    rpc = server.invoke_unary_unary(methods["GetOutcome"], (), jid(new_id()), None)
    assert rpc.termination()[2] is grpc.StatusCode.NOT_FOUND
