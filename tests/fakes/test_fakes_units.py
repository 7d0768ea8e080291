"""Unit tests of the fakes' building blocks: file source, clock, progressions, fault plan, backend config."""
from __future__ import annotations

import math

import grpc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fakes import (AfterPolls, AfterSeconds, FakeAgent, FakeBackend, FakeFileSource, FaultPlan, Immediate,
                   Manual, ManualClock, Scripted)
from protos.states import DoneReason, Event, JobState, JobStateMachine

U = "0f0e0d0c-0b0a-0908-0706-050403020100"
MALFORMED_UUIDS = ["", "../x", "/etc/passwd", U + "0", U[:-1], U.replace("0f", "zz", 1), U + "\n", " " + U,
                   U.replace("-", ""), "٠" * 8 + U[8:]]


# --- FakeFileSource ------------------------------------------------------------------------------

def test_source_put_read_delete_case_insensitive():
    src = FakeFileSource()
    assert src.put(U.upper(), b"abc") == U
    assert U in src and U.upper() in src and len(src) == 1
    assert src.read(U.upper()) == b"abc"
    assert src.reads[U] == 1
    assert src.delete(U) is True and src.delete(U) is False
    with pytest.raises(FileNotFoundError, match=U):
        src.read(U)


def test_source_fail_reads_one_or_all_and_heal():
    src = FakeFileSource({U: b"x"})
    other = src.add(b"y")
    src.fail_reads(U)
    with pytest.raises(OSError, match="injected"):
        src.read(U)
    assert src.read(other) == b"y"
    src.fail_reads(error=PermissionError("denied"))
    with pytest.raises(PermissionError):
        src.read(other)
    src.heal()
    assert src.read(U) == b"x"
    src.clear()
    assert len(src) == 0 and not src.reads


@pytest.mark.parametrize("bad", MALFORMED_UUIDS + [None, 5])
def test_source_rejects_malformed_keys(bad):
    src = FakeFileSource()
    with pytest.raises(ValueError, match="canonical UUID"):
        src.put(bad, b"x")
    assert bad not in src


@pytest.mark.parametrize("data", ["text", None, 3, [1]])
def test_source_rejects_non_bytes(data):
    with pytest.raises(TypeError, match="bytes"):
        FakeFileSource().put(U, data)


# --- ManualClock and progressions -----------------------------------------------------------------

def test_manual_clock_moves_only_forward():
    clock = ManualClock(5)
    assert clock() == 5.0
    assert clock.advance(1.5) == 6.5 == clock()
    for bad in (-1, math.nan, math.inf, "1", None):
        with pytest.raises(ValueError, match="forward"):
            clock.advance(bad)
    assert clock() == 6.5


def answers(progression, n, elapsed=0.0):
    machine = JobStateMachine()
    return [progression.apply(machine, i, elapsed).name for i in range(1, n + 1)]


def test_after_polls_default_and_custom():
    assert answers(AfterPolls(), 4) == ["WAIT", "RUN", "DONE", "DONE"]
    assert answers(AfterPolls(wait=2, run=0), 4) == ["WAIT", "WAIT", "DONE", "DONE"]
    assert answers(Immediate(), 2) == ["DONE", "DONE"]


def test_after_seconds_uses_elapsed_time():
    p = AfterSeconds(wait=1, run=2)
    m = JobStateMachine()
    assert [p.apply(m, 1, t).name for t in (0, 0.99, 1, 2.99, 3, 0)] == ["WAIT", "WAIT", "RUN", "RUN", "DONE", "DONE"]


def test_scripted_and_manual():
    assert answers(Scripted(["WAIT", "WAIT", "RUN", JobState.DONE]), 6) == ["WAIT", "WAIT", "RUN", "DONE", "DONE", "DONE"]
    assert answers(Scripted([JobState.RUN]), 3) == ["RUN"] * 3
    assert answers(Manual(), 3) == ["WAIT"] * 3


def test_outcome_is_recorded_in_the_machine():
    m = JobStateMachine()
    Immediate(outcome="failed").apply(m, 1, 0)
    assert m.reason is DoneReason.FAILED and [e for _, e in m.history] == [Event.START, Event.FAIL]


@pytest.mark.parametrize("make, message", [
    (lambda: AfterPolls(wait=-1), "wait"), (lambda: AfterPolls(run=1.5), "run"),
    (lambda: AfterPolls(wait=True), "wait"), (lambda: AfterSeconds(wait=math.nan), "wait"),
    (lambda: AfterSeconds(run=-0.1), "run"), (lambda: AfterSeconds(run="1"), "run"),
    (lambda: Scripted([]), "at least one"), (lambda: Scripted(["DONE", "RUN"]), "backwards"),
    (lambda: Scripted(["FINISHED"]), "not a job state"), (lambda: Scripted([7]), "not a job state"),
    (lambda: Immediate(outcome="interrupted"), "INTERRUPTED"), (lambda: Immediate(outcome="bogus"), "bogus"),
])
def test_progressions_reject_malformed_parameters(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(list(JobState)), min_size=1, max_size=8).map(sorted),
       st.integers(min_value=1, max_value=12))
def test_scripted_answers_are_monotonic_and_follow_the_script(states, n):
    seen = answers(Scripted(states), n)
    assert seen == [states[min(i, len(states)) - 1].name for i in range(1, n + 1)]
    assert [JobState[s] for s in seen] == sorted(JobState[s] for s in seen)


# --- FaultPlan -------------------------------------------------------------------------------------

def test_fault_plan_once_every_and_method_filter():
    plan = FaultPlan()
    plan.fail_next("UNAVAILABLE", method="RunJob", times=2)
    plan.fail_every(3, grpc.StatusCode.INTERNAL)
    fired = [(f.code.name if (f := plan.take(m)) else None) for m in
             ["StageInFiles", "RunJob", "RunJob", "RunJob", "StageInFiles", "StageInFiles"]]
    # the third call is also the every-3rd one: the fault added first answers it
    assert fired == [None, "UNAVAILABLE", "UNAVAILABLE", None, None, "INTERNAL"]
    plan.set_latency(0.5)
    plan.set_latency(0.25, method="RunJob")
    assert plan.latency("RunJob") == 0.75 and plan.latency("StageInFiles") == 0.5
    plan.clear()
    assert len(plan) == 0 and plan.latency("RunJob") == 0


@pytest.mark.parametrize("call, message", [
    (lambda p: p.fail_next("OK"), "non-OK"), (lambda p: p.fail_next("NOPE"), "NOPE"),
    (lambda p: p.fail_next(3), "non-OK"), (lambda p: p.fail_next("INTERNAL", times=0), "times"),
    (lambda p: p.fail_next("INTERNAL", method="Run"), "Run"), (lambda p: p.fail_every(0, "INTERNAL"), "n must"),
    (lambda p: p.set_latency(-1), "latency"), (lambda p: p.set_latency(math.inf), "latency"),
])
def test_fault_plan_rejects_malformed_parameters(call, message):
    plan = FaultPlan()
    with pytest.raises(ValueError, match=message):
        call(plan)
    assert len(plan) == 0


# --- backend configuration --------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, error, message", [
    ({"python_versions": ["three"]}, ValueError, "three"),
    ({"progression": "immediate"}, TypeError, "Progression"),
    ({"bogus": 1}, TypeError, "bogus"),
])
def test_backend_rejects_malformed_configuration(kwargs, error, message):
    with pytest.raises(error, match=message):
        FakeAgent(**kwargs)


def test_agent_takes_a_backend_or_keywords_not_both():
    with pytest.raises(TypeError, match="not both"):
        FakeAgent(FakeBackend(), python_versions=["3.11.0"])


def test_backend_steering_rejects_bad_input():
    backend = FakeBackend()
    with pytest.raises(KeyError, match="no job"):
        backend.state(U)
    with pytest.raises(KeyError, match="no job"):
        backend.advance(U, Event.START)
    with pytest.raises(ValueError):
        backend.job("../x")
    with pytest.raises(TypeError):
        backend.set_progression(U, "fast")
