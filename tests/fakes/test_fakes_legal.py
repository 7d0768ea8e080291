"""The documented client against every legal behaviour that fakes.legal generates (legal_agent)."""
from __future__ import annotations

import random
import uuid

import pytest
from hypothesis import HealthCheck, event, find, given, settings

from fakes.legal import Behaviour, LegalAgent, Restart, behaviours
from protos.client import AgentCallError, AgentClient, Backoff
from protos.states import JobState, is_forward

EXPLORE = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def run_documented_client(agent, play, timeout=0.05):
    """What docs/CLIENT.md tells a client to do: submit (stage + first RunJob), then wait. A call
    that takes longer than `timeout` (a slow answer, or a loaded machine) is a transient failure."""
    script = play.source.add(b"print('hello')\n")
    job = str(uuid.uuid4())
    with AgentClient.connect(agent.address, timeout=timeout, backoff=Backoff(rng=random.Random(0)),
                             clock=play.clock, sleep=play.sleep) as client:
        first = client.submit(job, [script], deadline=600)
        return job, first, client.wait_until_done(job, deadline=3600)


@EXPLORE
@given(behaviour=behaviours())
def test_documented_client_copes_with_every_legal_behaviour(legal_agent, behaviour):
    with legal_agent.play(behaviour) as play:
        job, first, timeline = run_documented_client(legal_agent, play)
    for kind in play.exercised:   # what was exercised, for --hypothesis-show-statistics
        event(kind)
    event("client watched" if timeline.watches else "client polled")
    states = [first, *(s for _, s in timeline.points)]
    assert timeline.final is JobState.DONE
    assert all(is_forward(a, b) for a, b in zip(states, states[1:])), states
    assert [j.uuid for j in play.jobs] == [job], "exactly one job was created"
    assert play.habits == [], play.habits
    runs = [c for c in play.calls if c.method == "RunJob" and c.request.files]
    assert all(list(c.request.files) == list(runs[0].request.files) for c in runs), "retries sent verbatim"


def test_a_client_that_does_not_retry_is_caught_and_shrunk(legal_agent):
    """A naive client (one call each, no retry) fails on a legal behaviour; Hypothesis finds one and
    shrinks it to a single transient failure."""
    def naive_fails(behaviour):
        with legal_agent.play(behaviour) as play:
            script = play.source.add(b"pass\n")
            job = str(uuid.uuid4())
            with AgentClient.connect(legal_agent.address, timeout=5) as client:   # no slow answers here
                try:
                    client.stage_in(job, [script])
                    client.run(job, [script])
                    client.wait_until_done(job, poll_interval=1, deadline=3600, clock=play.clock,
                                           sleep=play.sleep, retry=False)
                except AgentCallError:
                    return True
        return False

    smallest = find(behaviours(slow=False), naive_fails,
                    settings=settings(max_examples=300, deadline=None, database=None))
    assert smallest.answers == ("DONE",) and smallest.restart is None and not smallest.vanish
    assert len(smallest.unavailable | smallest.lost) == 1 and smallest.unavailable | smallest.lost <= {0, 1, 2}


def test_restart_that_ends_a_running_job_reports_it_done(legal_agent):
    behaviour = Behaviour(answers=("WAIT", "RUN") + ("RUN",) * 10 + ("DONE",),
                          restart=Restart(after_answer=2, down_calls=2, ends_running=True))
    with legal_agent.play(behaviour) as play:
        job, first, timeline = run_documented_client(legal_agent, play, timeout=5)
    assert first is JobState.WAIT and [s for _, s in timeline.points] == [JobState.RUN, JobState.DONE]
    assert [code for _, code in timeline.retries] == ["UNAVAILABLE", "UNAVAILABLE"]
    assert play.jobs[0].machine.reason.value == "interrupted" and timeline.polls == 4


def test_vanished_files_stay_staged_and_slow_answers_are_applied(legal_agent):
    behaviour = Behaviour(answers=("DONE",), vanish=True, slow=frozenset({0}))
    with legal_agent.play(behaviour) as play:
        job, first, _ = run_documented_client(legal_agent, play, timeout=0.3)
    stage_calls = [c for c in play.calls if c.method == "StageInFiles"]
    assert [c.code.name for c in stage_calls if c.injected] == ["DEADLINE_EXCEEDED"]   # the slow one
    sent = [f.uuid for f in stage_calls[0].request.files]
    # every answer lists the file, also those after it left the source (more than one retry
    # only if the machine is so loaded that a call takes longer than the 0.3 s timeout)
    assert all([s.file.uuid for s in c.response.success_files] == sent for c in stage_calls)
    assert len(play.source) == 0 and list(play.jobs[0].inputs) == sent
    assert any("left the source" in e for e in play.events)


@pytest.mark.parametrize("kwargs, message", [
    (dict(answers=("WAIT", "RUN")), "ending in DONE"),
    (dict(answers=()), "ending in DONE"),
    (dict(answers=("RUN", "WAIT", "DONE")), "must not go backwards"),
    (dict(answers=("WAIT", "BUSY", "DONE")), "WAIT/RUN/DONE names"),
    (dict(unavailable={-1}), r"unavailable must hold call numbers >= 0, got \[-1\]"),
    (dict(slow={"1"}), r"slow must hold call numbers >= 0, got \['1'\]"),
])
def test_malformed_behaviours_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Behaviour(**kwargs)


@pytest.mark.parametrize("kwargs, message", [
    (dict(after_answer=0), "after_answer must be a whole number >= 1, got 0"),
    (dict(after_answer=1, down_calls=True), "down_calls must be a whole number >= 1, got True"),
])
def test_malformed_restarts_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Restart(**kwargs)


def test_play_needs_a_behaviour():
    with pytest.raises(TypeError, match="needs a fakes.legal.Behaviour"):
        with LegalAgent().play({"answers": ("DONE",)}):
            pass
