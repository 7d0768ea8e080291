"""WatchJobs on the reference agent over loopback (AGT-EXT-7/8/9), also across a restart."""
from __future__ import annotations

import grpc
import pytest

from agent_ext_helpers import Ext, events_of, gate_script, wait_until
from agent_helpers import new_id
from protos import AgentExtensions_pb2, Common_pb2
from protos.extensions import EndKind, WatchChecker
from protos.states import JobState
from reference_agent.watch import WatchLimits

W, R, D = JobState.WAIT, JobState.RUN, JobState.DONE


def checked(events, jobs, floors=None) -> WatchChecker:
    """protos.extensions' rules of a stream, applied to every event of a stream that ended OK."""
    checker = WatchChecker(jobs, outcome_offered=True, floors=floors)
    for job, state, outcome in events:
        checker.event(job, state, outcome)
    checker.closed(grpc.StatusCode.OK)
    return checker


def test_current_states_first_then_each_change_once_then_the_end(make_agent, tmp_path):
    """AGT-EXT-7/8: first events are the current states in request order (a DONE job gets one
    event, with its outcome), then WAIT -> RUN -> DONE per job, each once, and the stream ends
    after the last DONE; no event is earlier than v1 said, no DONE before v1 says DONE."""
    agent = make_agent(slots=1)
    ext = Ext(agent.channel)
    gate = tmp_path / "gate"
    finished = agent.submit("print('finished')")
    agent.wait_done(finished)
    running = agent.submit(gate_script(gate, "print('ran')"))
    wait_until(lambda: agent.client.run(running) is R, "RUN")
    waiting = agent.submit("import sys; sys.exit(2)")
    call = ext.watch([running, waiting, finished, running.upper()])  # a repeat counts once
    stream = iter(call)
    first = [next(stream) for _ in range(3)]
    assert [(e.job.uuid, e.code) for e in first] == [(running, R), (waiting, W), (finished, D)]
    assert first[2].outcome.stdout_tail == b"finished\n" and not first[0].HasField("outcome")
    gate.touch()
    rest = []
    for event in stream:
        rest.append((event.job.uuid, JobState(event.code), event))
        if event.code == D:  # v1 already says DONE when the watch does (AGT-EXT-8)
            assert agent.client.run(event.job.uuid) is D
    assert [(j, s) for j, s, _ in rest] == [(running, D), (waiting, R), (waiting, D)]
    assert rest[0][2].outcome.stdout_tail == b"ran\n"
    assert (rest[2][2].outcome.end, rest[2][2].outcome.exit_status) == (EndKind.EXITED, 2)


def test_every_event_obeys_the_rules_for_many_jobs(make_agent):
    """AGT-EXT-7 over many jobs at once, checked by protos.extensions.WatchChecker."""
    agent = make_agent(slots=2)
    jobs = [agent.submit(f"print({i})") for i in range(12)]
    events = events_of(Ext(agent.channel).watch(jobs))
    checker = checked(events, jobs)
    assert checker.finished and {o.stdout for o in checker.outcomes.values()} == {f"{i}\n".encode() for i in range(12)}


def test_a_cancelled_waiting_job_goes_wait_done(make_agent, tmp_path):
    """AGT-EXT-5/7: a WAIT job cancelled while watched: WAIT then DONE (cancelled), never RUN."""
    agent = make_agent(slots=1)
    ext = Ext(agent.channel)
    gate = tmp_path / "gate"
    blocker = agent.submit(gate_script(gate))
    wait_until(lambda: agent.client.run(blocker) is R, "RUN")
    waiting = agent.submit("print('no')")
    stream = iter(ext.watch([waiting]))
    assert next(stream).code == W
    assert ext.cancel(waiting) is D
    last = next(stream)
    assert last.code == D and last.outcome.end == EndKind.CANCELLED
    assert list(stream) == []
    gate.touch()


def test_unknown_ids_fail_before_any_event_and_malformed_ones_are_invalid(agent):
    """AGT-EXT-7: NOT_FOUND naming every unknown id, before any event; INVALID_ARGUMENT naming a
    malformed one; an empty watch ends at once."""
    ext = Ext(agent.channel)
    known = agent.submit("print(1)")
    unknown = [new_id(), new_id()]
    with pytest.raises(grpc.RpcError) as info:
        events_of(ext.watch([known, *unknown]))
    assert info.value.code().name == "NOT_FOUND" and all(u in info.value.details() for u in unknown)
    bad = AgentExtensions_pb2.WatchRequest(jobs=[Common_pb2.JobId(uuid=known), Common_pb2.JobId(uuid="zz")])
    with pytest.raises(grpc.RpcError) as info:
        list(ext.stub.WatchJobs(bad, timeout=20))
    assert info.value.code().name == "INVALID_ARGUMENT" and "jobs[1]" in info.value.details()
    assert events_of(ext.watch([])) == []
    assert agent.core.events.open_streams() == 0


def test_streams_are_bounded_per_caller_and_in_all(make_agent, tmp_path):
    """AGT-EXT-9: RESOURCE_EXHAUSTED beyond the bound for one caller (its token, else its host)
    and in all; a closed stream frees its place."""
    agent = make_agent(slots=1)
    agent.core.events.limits = WatchLimits(per_caller=2, total=3)
    gate = tmp_path / "gate"
    job = agent.submit(gate_script(gate))
    ext = Ext(agent.channel)
    token = lambda name: (("authorization", f"Bearer {name}"),)  # noqa: E731
    open_calls = [ext.watch([job], metadata=token("a")) for _ in range(2)]
    for call in open_calls:
        assert next(call).job.uuid == job
    with pytest.raises(grpc.RpcError) as info:
        next(ext.watch([job], metadata=token("a")))
    assert info.value.code().name == "RESOURCE_EXHAUSTED" and "for this caller" in info.value.details()
    third = ext.watch([job])  # by host: another caller
    next(third)
    with pytest.raises(grpc.RpcError) as info:
        next(ext.watch([job], metadata=token("b")))
    assert info.value.code().name == "RESOURCE_EXHAUSTED" and "in all" in info.value.details()
    open_calls[0].cancel()
    wait_until(lambda: agent.core.events.open_streams() == 2, "a cancelled stream's place freed")
    again = ext.watch([job], metadata=token("b"))
    next(again)
    gate.touch()
    for call in (open_calls[1], third, again):
        assert [e.code for e in call] == [D]


def test_a_restart_ends_open_streams_unavailable_and_a_new_watch_resumes(make_agent, tmp_path):
    """AGT-EXT-8: the agent stopped mid-watch ends the stream with UNAVAILABLE; the agent started
    again on the same state directory answers a new watch with the current state first (the
    running job, adopted), then its DONE."""
    first = make_agent(slots=1)
    gate = tmp_path / "gate"
    job = first.submit(gate_script(gate, "print('survived the restart')"))
    wait_until(lambda: first.client.run(job) is R, "RUN")
    stream = iter(Ext(first.channel).watch([job], timeout=60))
    assert next(stream).code == R
    first.server.stop(grace=0.2, stop_jobs=False)  # the job's process lives on, as after a crash
    with pytest.raises(grpc.RpcError) as info:
        next(stream)
    assert info.value.code().name == "UNAVAILABLE"
    second = make_agent(slots=1, state_dir=str(first.state), source=str(first.source))
    checker = WatchChecker([job], outcome_offered=True, floors={job: R})
    resumed = iter(Ext(second.channel).watch([job]))
    current = next(resumed)
    checker.event(current.job.uuid, current.code)
    assert current.code == R
    gate.touch()
    events = events_of(resumed)
    for event_job, state, outcome in events:
        checker.event(event_job, state, outcome)
    checker.closed(grpc.StatusCode.OK)
    assert checker.outcomes[job].stdout == b"survived the restart\n"
