"""The recording fake warns about client habits that the contract makes wasteful or risky."""
from __future__ import annotations

import random
import uuid
import warnings

import pytest

from fakes import AfterPolls, FakeAgent, ManualClock, Scripted
from fakes.habits import KINDS, ClientHabitWarning, HabitRules
from protos.client import AgentClient, AlreadySubmitted, Backoff, StageAfterSubmit


@pytest.fixture
def served():
    """served(**config) -> (agent, client, clock); the client's sleep moves the fake's clock."""
    made = []

    def make(**config):
        config.setdefault("extensions", None)   # habits are v1 polling habits: a client that watches polls not
        clock = ManualClock()
        agent = FakeAgent(clock=clock, **config)
        ctx = agent.serve()
        address = ctx.__enter__()
        client = AgentClient.connect(address, timeout=10, clock=clock, sleep=clock.advance)
        made.append((ctx, client))
        return agent, client, clock

    yield make
    for ctx, client in made:
        client.close()
        ctx.__exit__(None, None, None)


def _submitted(agent, client):
    job, f = str(uuid.uuid4()), agent.source.add(b"pass\n")
    client.submit(job, [f])
    return job, f


def test_a_careful_client_shows_no_habit(served, recwarn):
    agent, client, _ = served(progression=Scripted(["WAIT"] * 30 + ["RUN"] * 30 + ["DONE"]))
    job, _ = _submitted(agent, client)
    client.wait_until_done(job, deadline=3600, backoff=Backoff(initial=0.05, maximum=2, rng=random.Random(1)))
    assert agent.backend.habits == [] and not recwarn.list


def test_mismatched_repeat_and_stage_after_submit_are_warned(served):
    agent, client, _ = served(progression=Scripted(["WAIT"]))
    job, f = _submitted(agent, client)
    other = agent.source.add(b"other\n")
    with pytest.warns(ClientHabitWarning, match="mismatched-repeat .AGT-RUN-8."):
        with pytest.raises(AlreadySubmitted):
            client.run(job, [other])
    with pytest.warns(ClientHabitWarning, match="stage-after-submit .AGT-STAGE-4."):
        with pytest.raises(StageAfterSubmit):
            client.stage_in(job, [other])
    assert [(h.kind, h.job, h.requirement) for h in agent.backend.habits] == [
        ("mismatched-repeat", job, "AGT-RUN-8"), ("stage-after-submit", job, "AGT-STAGE-4")]


def test_reusing_a_done_job_id_for_other_files_is_warned(served):
    agent, client, _ = served(progression=AfterPolls(0, 0))
    job, f = _submitted(agent, client)
    other = agent.source.add(b"other\n")
    with pytest.warns(ClientHabitWarning, match="reused-job-id"):
        with pytest.raises(StageAfterSubmit):
            client.stage_in(job, [other])
        with pytest.raises(AlreadySubmitted):
            client.run(job, [other])
    assert [h.kind for h in agent.backend.habits] == ["reused-job-id"]   # once per kind and job


@pytest.mark.parametrize("interval, flagged", [(0.1, True), (0.0, True), (0.6, False)])
def test_polling_at_a_fixed_short_interval_is_warned(served, interval, flagged):
    agent, client, clock = served(progression=Scripted(["WAIT"] * 20 + ["DONE"]))
    job, _ = _submitted(agent, client)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        client.wait_until_done(job, poll_interval=interval, deadline=3600)
    kinds = [h.kind for h in agent.backend.habits]
    assert kinds == (["poll-without-backoff"] if flagged else [])
    assert [w.category for w in seen] == ([ClientHabitWarning] if flagged else [])


def test_a_growing_interval_is_not_flagged_and_a_state_change_restarts_the_count(served):
    agent, client, _ = served(progression=Scripted(["WAIT"] * 6 + ["RUN"] * 6 + ["DONE"]))
    job, _ = _submitted(agent, client)
    client.wait_until_done(job, poll_interval=0.1, deadline=3600)   # 6 fast polls per state: under 8
    assert agent.backend.habits == []
    agent2, client2, _ = served(progression=Scripted(["WAIT"] * 40 + ["DONE"]))
    job2, _ = _submitted(agent2, client2)
    client2.wait_until_done(job2, deadline=3600, backoff=Backoff(initial=0.01, maximum=1.0, multiplier=1.5, jitter=0))
    assert [h.kind for h in agent2.backend.habits] == []


def test_a_backoff_that_stops_growing_below_the_floor_is_flagged(served):
    agent, client, _ = served(progression=Scripted(["WAIT"] * 40 + ["DONE"]))
    job, _ = _submitted(agent, client)
    with pytest.warns(ClientHabitWarning, match="poll-without-backoff"):
        client.wait_until_done(job, deadline=3600, backoff=Backoff(initial=0.01, maximum=0.05, jitter=0))


def test_rules_can_be_tuned_or_silenced(served, recwarn):
    agent, client, _ = served(progression=Scripted(["WAIT"] * 5 + ["DONE"]), habits=HabitRules(polls=3, warn=False))
    job, _ = _submitted(agent, client)
    client.wait_until_done(job, poll_interval=0.1, deadline=3600)
    assert [h.kind for h in agent.backend.habits] == ["poll-without-backoff"] and not recwarn.list
    agent.reset()
    assert agent.backend.habits == []


@pytest.mark.parametrize("rules, message", [
    (dict(polls=1), "polls must be a whole number >= 2, got 1"),
    (dict(polls=True), "polls must be a whole number >= 2, got True"),
    (dict(floor=-1), "floor must be a finite number >= 0, got -1"),
    (dict(floor=float("nan")), "floor must be a finite number >= 0, got nan"),
    (dict(growth=0.5), "growth must be a finite number >= 1, got 0.5"),
])
def test_malformed_rules_are_refused(rules, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        HabitRules(**rules)
    with pytest.raises(TypeError, match="habits must be a fakes.HabitRules"):
        FakeAgent(habits={"polls": 3})


def test_every_kind_names_its_reason():
    assert set(KINDS) == {"mismatched-repeat", "reused-job-id", "stage-after-submit", "poll-without-backoff"}
    assert all(advice for _, advice in KINDS.values())


def test_resending_a_whole_submission_is_not_a_habit(served, recwarn):
    """A restarted client that submits again with the same id stages the same files again: the
    agent refuses the staging (AGT-STAGE-4) but nothing was meant to change."""
    agent, client, _ = served(progression=Scripted(["WAIT"]))
    job, f = _submitted(agent, client)
    assert client.submit(job, [f]).name == "WAIT"
    assert [c.code.name for c in agent.calls][-2:] == ["FAILED_PRECONDITION", "OK"]
    assert agent.backend.habits == [] and not recwarn.list
