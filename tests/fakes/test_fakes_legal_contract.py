"""The legal mode never breaks PROTOCOL-V1: its answers, replayed through protos.states and
protos.submission by an independent checker, for generated behaviours and client actions."""
from __future__ import annotations

import uuid
from collections import defaultdict

import grpc
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from fakes.legal import behaviours
from protos import submission, validation
from protos.client import AgentCallError, AgentClient
from protos.errors import ProtocolError
from protos.states import TRANSITIONS, Event, JobState, JobStateMachine, is_forward

JOBS = [str(uuid.UUID(int=n)) for n in (1, 2)]
FILES = [str(uuid.UUID(int=0xF0 + n)) for n in range(3)]   # FILES[2] is never in the source
TRANSIENT = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}

actions = st.lists(st.one_of(
    st.tuples(st.just("submit"), st.sampled_from(JOBS), st.lists(st.sampled_from(FILES[:2]), min_size=1, max_size=2)),
    st.tuples(st.just("stage"), st.sampled_from(JOBS), st.lists(st.sampled_from(FILES), max_size=3)),
    st.tuples(st.just("run"), st.sampled_from(JOBS), st.lists(st.sampled_from(FILES), max_size=2)),
    st.tuples(st.just("status"), st.sampled_from(JOBS), st.just([])),
), min_size=1, max_size=20)


def reachable(old: JobState, new: JobState) -> bool:
    """Whether some sequence of events of protos.states.TRANSITIONS leads from old to new."""
    seen, todo = {old}, [old]
    while todo:
        state = todo.pop()
        for (s, _), (n, _) in TRANSITIONS.items():
            if s is state and n not in seen:
                seen.add(n)
                todo.append(n)
    return new in seen


def problems_with(calls, jobs, in_source) -> list[str]:
    """What in a recorded run breaks the contract, replayed through protos.submission and protos.states."""
    found, staged, submitted, last = [], defaultdict(list), {}, {}
    for i, call in enumerate(calls):
        if call.injected and call.code not in TRANSIENT:
            found.append(f"call {i}: injected {call.code.name}, which is not transient")
        if call.response is None and call.injected:
            continue   # refused before the agent acted: no state change to check
        code = grpc.StatusCode.OK if call.injected else call.code
        if call.method == "StageInFiles":
            req = validation.validate_stage_request(call.request)
            expected = _expected(lambda: submission.check_stage_allowed(req.job, req.job in submitted))
            if code is not expected:
                found.append(f"call {i}: StageInFiles got {code.name}, the rules say {expected.name}")
            elif code is grpc.StatusCode.OK:
                want = [f for f in validation.dedupe(req.files) if f in in_source or f in staged[req.job]]
                listed = [s.file.uuid for s in call.response.success_files]
                if listed != want:
                    found.append(f"call {i}: StageInFiles listed {listed}, AGT-STAGE-1/2 say {want}")
                staged[req.job] = validation.dedupe([*staged[req.job], *listed])
            continue
        req = validation.validate_run_request(call.request)
        if req.job in submitted:
            files, texts = submitted[req.job]
            expected = _expected(lambda: submission.check_repeat(req, files, texts))
        else:
            expected = _expected(lambda: submission.check_first_run(req, staged[req.job]))
        if code is not expected:
            found.append(f"call {i}: RunJob got {code.name}, the rules say {expected.name}")
        elif code is grpc.StatusCode.OK:
            submitted.setdefault(req.job, (req.files, req.requirement_texts))
            state, before = JobState(call.response.code), last.get(req.job, JobState.WAIT)
            if not (is_forward(before, state) and reachable(before, state)):
                found.append(f"call {i}: {req.job} answered {state.name} after {before.name} (AGT-STATE-1)")
            last[req.job] = state
    for job in jobs:
        replay, previous = JobStateMachine(), JobState.WAIT
        for state, event in job.machine.history:
            replay.advance(event)   # raises IllegalTransition for a move the table does not allow
            if event is Event.INTERRUPT and previous is not JobState.RUN:
                found.append(f"{job.uuid}: interrupted in {previous.name}; AGT-DUR-1 keeps WAIT jobs waiting")
            previous = state
        if replay.state is not job.state or set(submitted) != {j.uuid for j in jobs}:
            found.append(f"{job.uuid}: the fake's jobs differ from the submissions the rules accepted")
    return found


def _expected(check) -> grpc.StatusCode:
    try:
        check()
    except ProtocolError as exc:
        return exc.code
    return grpc.StatusCode.OK


@pytest.mark.filterwarnings("ignore::fakes.habits.ClientHabitWarning")   # the actions misuse on purpose
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(behaviour=behaviours(max_waits=2, max_runs=3, max_call=16), steps=actions)
def test_the_legal_mode_answers_by_the_protocol_rules(legal_agent, behaviour, steps):
    with legal_agent.play(behaviour) as play:
        for f in FILES[:2]:
            play.source.put(f, f.encode())
        with AgentClient.connect(legal_agent.address, timeout=0.05) as client:
            calls = {"stage": [client.stage_in], "run": [client.run], "submit": [client.stage_in, client.run],
                     "status": [lambda j, _: client.status(j)]}
            for kind, job, files in steps:
                for call in calls[kind]:
                    try:
                        call(job, files)
                    except AgentCallError:
                        pass
                    play.settle()   # a slow answer is recorded once its caller gave up: keep the order
    for call in play.calls:   # what was exercised, for --hypothesis-show-statistics
        answer = JobState(call.response.code).name if call.method == "RunJob" and call.ok else ""
        event(f"{call.method} {call.code.name} {answer}".strip())
    for kind in play.exercised:
        event(kind)
    assert problems_with(play.calls, play.jobs, set(FILES[:2])) == [], play.describe()


def test_the_checker_catches_a_doctored_run(legal_agent):
    """The checker can fail: a DONE job answered WAIT afterwards, and a job interrupted in WAIT."""
    from dataclasses import replace

    from fakes.legal import Behaviour

    with legal_agent.play(Behaviour(answers=("WAIT", "DONE"))) as play:
        play.source.put(FILES[0], b"x")
        with AgentClient.connect(legal_agent.address, timeout=5) as client:
            for job in JOBS:
                client.stage_in(job, [FILES[0]])
                client.run(job, [FILES[0]])
            assert client.status(JOBS[0]) is JobState.DONE
        assert problems_with(play.calls, play.jobs, {FILES[0]}) == []
        legal_agent.backend.advance(JOBS[1], Event.INTERRUPT)   # the table allows it; AGT-DUR-1 does not
        back = type(play.calls[-1].response)(code=int(JobState.WAIT))
        found = problems_with([*play.calls, replace(play.calls[-1], response=back)], play.jobs, {FILES[0]})
    assert any("answered WAIT after DONE" in p for p in found), found
    assert any("interrupted in WAIT" in p for p in found), found


def test_reachable_follows_the_transition_table():
    assert reachable(JobState.WAIT, JobState.DONE) and reachable(JobState.RUN, JobState.RUN)
    assert not reachable(JobState.DONE, JobState.RUN) and not reachable(JobState.RUN, JobState.WAIT)
