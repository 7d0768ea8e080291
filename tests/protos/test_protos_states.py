"""The job state machine: every legal path accepted, every illegal move refused, never backwards."""
from __future__ import annotations

import itertools

import pytest
from hypothesis import given, strategies as st

from protos.states import (
    DoneReason, Event, IllegalTransition, JobState, JobStateMachine, TRANSITIONS, is_forward, next_state,
)

LEGAL_PATHS = [
    ([Event.START, Event.SUCCEED], DoneReason.SUCCEEDED),
    ([Event.START, Event.FAIL], DoneReason.FAILED),
    ([Event.START, Event.KILL], DoneReason.KILLED),
    ([Event.START, Event.INTERRUPT], DoneReason.INTERRUPTED),
    ([Event.INTERRUPT], DoneReason.INTERRUPTED),
    ([Event.KILL], DoneReason.KILLED),
]


def test_wire_values():
    assert [s.value for s in JobState] == [0, 1, 2]


@pytest.mark.parametrize("events,reason", LEGAL_PATHS)
def test_every_legal_path_is_accepted(events, reason):
    m = JobStateMachine()
    seen = [m.state]
    for e in events:
        seen.append(m.advance(e))
    assert m.state is JobState.DONE and m.reason is reason and m.done
    assert all(is_forward(a, b) for a, b in zip(seen, seen[1:]))


@pytest.mark.parametrize("state,event", [
    (s, e) for s, e in itertools.product(JobState, Event) if (s, e) not in TRANSITIONS])
def test_every_illegal_move_is_refused(state, event):
    reason = DoneReason.SUCCEEDED if state is JobState.DONE else None
    m = JobStateMachine.restore(state, reason)
    with pytest.raises(IllegalTransition) as info:
        m.advance(event)
    assert m.state is state, "a refused move must not change the state"
    assert state.name in str(info.value) and event.value in str(info.value)


def test_done_is_final_and_table_only_moves_forward():
    assert not [k for k in TRANSITIONS if k[0] is JobState.DONE]
    for (s, _), (new, reason) in TRANSITIONS.items():
        assert int(new) > int(s)
        assert (reason is not None) == (new is JobState.DONE)


@given(st.lists(st.sampled_from(list(Event)), max_size=12))
def test_no_sequence_of_events_makes_a_job_go_backwards(events):
    m = JobStateMachine()
    seen = [m.state]
    for e in events:
        try:
            m.advance(e)
        except IllegalTransition:
            pass
        seen.append(m.state)
    assert all(is_forward(a, b) for a, b in zip(seen, seen[1:]))
    assert seen.count(JobState.RUN) <= len(events)
    assert [st for st, _ in m.history] == [s for a, s in zip(seen, seen[1:]) if a != s]


def test_listeners_see_each_transition():
    calls = []
    m = JobStateMachine(listeners=[lambda mach, old, new, ev: calls.append((old, new, ev))])
    m.advance("start")
    m.advance("succeed")
    assert calls == [(JobState.WAIT, JobState.RUN, Event.START), (JobState.RUN, JobState.DONE, Event.SUCCEED)]


def test_restore_checks_reason():
    assert JobStateMachine.restore(2, "failed").reason is DoneReason.FAILED
    with pytest.raises(ValueError, match="DoneReason"):
        JobStateMachine.restore(JobState.DONE)
    with pytest.raises(ValueError, match="no DoneReason"):
        JobStateMachine.restore(JobState.RUN, "failed")
    with pytest.raises(ValueError):
        JobStateMachine.restore(7)
    assert next_state(JobState.WAIT, "start") == (JobState.RUN, None)
