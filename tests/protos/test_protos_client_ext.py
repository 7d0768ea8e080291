"""The client's extension paths over loopback: watch or poll, resumed streams, fallbacks, outcome and cancel."""
from __future__ import annotations

import threading
import uuid
from concurrent import futures

import grpc
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from fakes import AfterSeconds, FakeAgent, Manual, Scripted
from protos import AgentExtensions_pb2, AgentExtensions_pb2_grpc, Common_pb2
from protos.client import (RECONNECT_OPTIONS, AgentClient, AgentUnavailable, InvalidRequest, JobTimeout, NotOffered,
                           ProtocolViolation, UnknownJob)
from protos.extensions import EndKind
from protos.states import JobState

WAIT, RUN, DONE = JobState.WAIT, JobState.RUN, JobState.DONE


def new_id() -> str:
    return str(uuid.uuid4())


@pytest.fixture
def served():
    """served(**config) -> (agent, client) over a real loopback port."""
    made = []

    def make(**config):
        agent = FakeAgent(**config)
        serving = agent.serve()
        address = serving.__enter__()
        client = AgentClient.connect(address, timeout=5)
        made.append((serving, client))
        return agent, client

    yield make
    for serving, client in made:
        client.close()
        serving.__exit__(None, None, None)


def submitted(agent, client, progression=None) -> str:
    job = new_id()
    if progression is not None:
        agent.backend.set_progression(job, progression)
    client.submit(job, [agent.source.add(b"pass\n")])
    return job


def test_reconnect_options_bring_a_restarted_agent_back_quickly():
    opts = dict(RECONNECT_OPTIONS)
    assert opts["grpc.initial_reconnect_backoff_ms"] <= 100
    assert opts["grpc.max_reconnect_backoff_ms"] <= 250          # next attempt <= 0.3 s with gRPC's 20 % jitter
    assert opts["grpc.min_reconnect_backoff_ms"] >= 1000          # the minimum connect timeout, not a backoff


def test_watch_is_used_where_offered_and_sees_every_change(served):
    agent, client = served(progression=Scripted(["WAIT", "WAIT", "RUN", "RUN", "DONE"]))
    job = submitted(agent, client)
    seen = []
    timeline = client.wait_until_done(job, deadline=10, on_state=seen.append)
    assert seen == [WAIT, RUN, DONE] and timeline.polls == 0 and timeline.watches == 1
    assert timeline.outcome.end is EndKind.EXITED and timeline.outcome.job == job
    assert [c.method for c in agent.calls].count("GetCapabilities") == 1
    client.wait_until_done(submitted(agent, client), deadline=10)
    assert [c.method for c in agent.calls].count("GetCapabilities") == 1   # cached
    client.capabilities(refresh=True)
    assert [c.method for c in agent.calls].count("GetCapabilities") == 2


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(waits=st.integers(0, 3), runs=st.integers(0, 3), cut=st.integers(0, 3), code=st.sampled_from(
    ["UNAVAILABLE", "DEADLINE_EXCEEDED", "INTERNAL"]))
def test_a_stream_broken_at_any_event_is_resumed(served, waits, runs, cut, code):
    agent, client = served(progression=Scripted(["WAIT"] * waits + ["RUN"] * runs + ["DONE"]))
    job = submitted(agent, client)
    agent.backend.faults.break_stream(after=cut, code=code)
    if code == "INTERNAL":   # not transient: raised, not resumed
        expected = 3 if waits else 2 if runs else 1   # events the stream sends: RUN is never skipped
        if cut >= expected:
            assert client.wait_until_done(job, deadline=10).final is DONE
        else:
            with pytest.raises(Exception) as info:
                client.wait_until_done(job, deadline=10)
            assert getattr(info.value, "code_name", None) == "INTERNAL"
        return
    timeline = client.wait_until_done(job, deadline=10)
    states = [s for _, s in timeline.points]
    assert states == sorted(set(states)) and states[-1] is DONE     # each state once, in order
    assert timeline.outcome is not None and timeline.polls == 0
    assert len(timeline.retries) == (1 if timeline.watches == 2 else 0)


def test_falls_back_to_polling_where_watch_is_not_offered(served):
    for offered in (None, (), ("outcome",), ("cancel", "outcome")):
        agent, client = served(extensions=offered)
        job = submitted(agent, client)
        timeline = client.wait_until_done(job, deadline=10)
        assert timeline.final is DONE and timeline.watches == 0 and timeline.polls >= 1
        assert not agent.backend.calls_to("WatchJobs")
        with pytest.raises(NotOffered, match="WatchJobs"):
            client.wait_until_done(job, deadline=10, watch=True)


def test_a_listed_watch_that_answers_unimplemented_is_forgotten(served):
    agent, client = served()
    agent.backend.faults.fail_next("UNIMPLEMENTED", method="WatchJobs")
    job = submitted(agent, client)
    timeline = client.wait_until_done(job, deadline=10)
    assert timeline.final is DONE and timeline.watches == 1 and timeline.polls >= 1
    assert "watch" not in client.capabilities()
    client.wait_until_done(submitted(agent, client), deadline=10)
    assert len(agent.backend.calls_to("WatchJobs")) == 1


def test_too_many_streams_means_polling_this_time(served):
    agent, client = served()
    agent.backend.faults.fail_next("RESOURCE_EXHAUSTED", method="WatchJobs")
    job = submitted(agent, client)
    timeline = client.wait_until_done(job, deadline=10)
    assert timeline.final is DONE and timeline.polls >= 1 and "watch" in client.capabilities()
    assert client.wait_until_done(submitted(agent, client), deadline=10).watches == 1


def test_capabilities_not_answered_means_polling_and_no_cache(served):
    agent, client = served()
    job = submitted(agent, client)
    agent.backend.faults.fail_next("UNAVAILABLE", method="GetCapabilities")
    assert client.wait_until_done(job, deadline=10).watches == 0
    assert client.capabilities() == {"outcome", "cancel", "watch"}


def test_watch_errors_are_the_typed_errors(served):
    agent, client = served()
    with pytest.raises(UnknownJob) as info:
        client.wait_until_done(new_id(), deadline=10)
    assert info.value.requirement == "AGT-EXT-7" and info.value.code_name == "NOT_FOUND"
    with pytest.raises(InvalidRequest) as bad:
        client.wait_until_done("not-a-uuid", deadline=10)
    assert bad.value.requirement == "AGT-ID-1"
    with pytest.raises(JobTimeout) as late:
        client.wait_until_done(submitted(agent, client, Scripted(["WAIT"])), deadline=0.3)
    assert late.value.timeline == [(late.value.timeline[0][0], WAIT)]


def test_a_quiet_stream_is_refreshed_not_retried(served):
    agent, _ = served(progression=AfterSeconds(wait=0.0, run=0.5))
    with AgentClient.connect(agent.address, timeout=5, watch_refresh=0.1) as client:
        timeline = client.wait_until_done(submitted(agent, client), deadline=10)
    assert timeline.final is DONE and timeline.watches >= 3 and timeline.retries == []
    with pytest.raises(ValueError, match="watch_refresh"):
        AgentClient.connect(agent.address, watch_refresh=0)


def test_outcome_cancel_and_run_and_wait(served):
    agent, client = served(progression=Manual())
    job = submitted(agent, client)
    agent.backend.set_output(job, stderr=b"e" * 10)
    outcome = client.outcome(job)
    assert outcome.state is WAIT and outcome.end is None and outcome.submitted_ms and outcome.started_ms is None
    assert client.cancel(job) is DONE and client.status(job) is DONE
    outcome = client.outcome(job)
    assert outcome.end is EndKind.CANCELLED and outcome.stderr == b"e" * 10 and outcome.ended_ms >= outcome.submitted_ms
    with pytest.raises(UnknownJob) as info:
        client.cancel(new_id())
    assert info.value.requirement == "AGT-EXT-3"
    agent.backend.progression = Scripted(["WAIT", "RUN", "DONE"], outcome="failed")
    result = client.run_and_wait(new_id(), [agent.source.add(b"x\n")], deadline=10)
    assert result.end is EndKind.EXITED and result.exit_status == 1 and not result.succeeded


def test_run_and_wait_without_watch_asks_the_outcome_and_without_outcome_answers_done(served):
    agent, client = served(extensions=["outcome"])
    result = client.run_and_wait(new_id(), [agent.source.add(b"x\n")], deadline=10)
    assert result.succeeded and len(agent.backend.calls_to("GetOutcome")) == 1
    agent, client = served(extensions=["watch"])
    assert client.run_and_wait(new_id(), [agent.source.add(b"x\n")], deadline=10) is DONE
    with pytest.raises(NotOffered) as info:
        client.outcome(new_id())
    assert info.value.requirement == "AGT-EXT-2"


def test_extension_calls_retry_through_a_restart(served):
    agent, client = served()
    job = submitted(agent, client)
    agent.backend.faults.fail_next("UNAVAILABLE", method="GetOutcome")
    with pytest.raises(AgentUnavailable):
        client.outcome(job)
    assert client.outcome(job).state in (WAIT, RUN, DONE)


class _Lying(AgentExtensions_pb2_grpc.AgentExtensionsServicer):
    """An agent whose extension answers break the rules: the client must not take them."""

    def GetCapabilities(self, request, context):
        return AgentExtensions_pb2.Capabilities(extensions=["outcome", "watch", "teleport"])

    def GetOutcome(self, request, context):
        return AgentExtensions_pb2.JobOutcome(job=request, code=RUN, end=0, exit_status=0)   # end before DONE

    def WatchJobs(self, request, context):
        job = request.jobs[0]
        yield AgentExtensions_pb2.JobEvent(job=job, code=RUN)
        yield AgentExtensions_pb2.JobEvent(job=job, code=WAIT)                           # backwards


def test_answers_that_break_the_extension_rules_raise_protocol_violation():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    AgentExtensions_pb2_grpc.add_AgentExtensionsServicer_to_server(_Lying(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with AgentClient.connect(f"127.0.0.1:{port}", timeout=5) as client:
            assert client.capabilities() == {"outcome", "watch"}         # unknown names ignored
            with pytest.raises(ProtocolViolation, match="end must be set exactly when the job is DONE") as info:
                client.outcome(new_id())
            assert info.value.requirement == "AGT-EXT-3"
            with pytest.raises(ProtocolViolation, match="WAIT after RUN") as info:
                client.wait_until_done(new_id(), deadline=5)
            assert info.value.requirement == "AGT-EXT-7"
    finally:
        server.stop(None)


def test_the_watch_gets_done_while_another_thread_cancels(served):
    agent, client = served(progression=Manual())
    job = submitted(agent, client)
    result = {}
    waiter = threading.Thread(target=lambda: result.update(t=client.wait_until_done(job, deadline=10)))
    waiter.start()
    assert client.cancel(job) is DONE
    waiter.join(10)
    assert result["t"].outcome.end is EndKind.CANCELLED and result["t"].final is DONE
    assert Common_pb2.JobId(uuid=job).uuid == job
