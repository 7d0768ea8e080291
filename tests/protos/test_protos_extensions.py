"""protos.extensions: capability names, the Outcome record and its rules, tails, the watch checker."""
from __future__ import annotations

import uuid

import grpc
import pytest
from hypothesis import given, settings, strategies as st

from protos import AgentExtensions_pb2, Common_pb2, errors
from protos import extensions as ext
from protos.extensions import EndKind, Outcome, OutcomeError, WatchChecker, WatchViolation
from protos.states import JobState

WAIT, RUN, DONE = JobState.WAIT, JobState.RUN, JobState.DONE
A, B, C = (str(uuid.UUID(int=(i << 64) | 0xABCDEF)) for i in (1, 2, 3))


def test_capability_names_and_methods_come_from_the_contract():
    assert ext.CAPABILITIES == ("outcome", "cancel", "watch")
    service = AgentExtensions_pb2.DESCRIPTOR.services_by_name[ext.SERVICE]
    assert set(ext.METHODS.values()) | {"GetCapabilities"} == {m.name for m in service.methods}
    assert [e.name for e in EndKind] == list(AgentExtensions_pb2.EndKind.keys())
    assert [int(e) for e in EndKind] == list(AgentExtensions_pb2.EndKind.values())


def test_capabilities_read_and_written():
    assert ext.capabilities_from(["watch", "later-extension", "watch", "outcome"]) == {"watch", "outcome"}
    msg = ext.capabilities_message({"watch", "outcome"})
    assert list(msg.extensions) == ["outcome", "watch"]
    with pytest.raises(ValueError, match="'teleport'"):
        ext.capabilities_message(["teleport"])


outcomes = st.one_of(
    st.builds(lambda s, sub: Outcome(A, JobState(s), submitted_ms=sub) if s == 0 else
              Outcome(A, RUN, submitted_ms=sub, started_ms=sub), st.sampled_from([0, 1]),
              st.none() | st.integers(0, 2**62)),
    st.builds(Outcome, st.just(A), st.just(DONE), st.just(EndKind.EXITED), st.integers(0, 255)),
    st.builds(Outcome, st.just(B), st.just(DONE), st.just(EndKind.SIGNALLED), st.none(), st.integers(1, 64),
              st.none() | st.text(max_size=20), st.none() | st.integers(0, 2**62),
              st.none() | st.integers(0, 2**62), st.none() | st.integers(0, 2**62),
              st.binary(max_size=100), st.binary(max_size=100), st.booleans(), st.booleans()),
    st.builds(Outcome, st.just(C), st.just(DONE), st.sampled_from([EndKind.INTERRUPTED, EndKind.CANCELLED])),
)


@settings(deadline=None)
@given(outcomes)
def test_outcome_round_trips_through_the_wire(outcome):
    data = outcome.to_proto().SerializeToString()
    back = Outcome.from_proto(AgentExtensions_pb2.JobOutcome.FromString(data))
    assert back == outcome


@pytest.mark.parametrize("kwargs, match", [
    (dict(state=DONE), "end must be set exactly when the job is DONE"),
    (dict(state=RUN, end=EndKind.EXITED, exit_status=0), "end must be set exactly"),
    (dict(state=DONE, end=EndKind.EXITED), "exit_status must be set exactly when end is EXITED"),
    (dict(state=DONE, end=EndKind.EXITED, exit_status=256), "0-255, got 256"),
    (dict(state=DONE, end=EndKind.EXITED, exit_status=-1), "0-255, got -1"),
    (dict(state=DONE, end=EndKind.EXITED, exit_status=True), "0-255, got True"),
    (dict(state=DONE, end=EndKind.CANCELLED, exit_status=0), "exit_status must be set exactly"),
    (dict(state=DONE, end=EndKind.SIGNALLED), "signal must be set exactly when end is SIGNALLED"),
    (dict(state=DONE, end=EndKind.SIGNALLED, signal=0), "positive number, got 0"),
    (dict(state=DONE, end=EndKind.EXITED, exit_status=1, signal=9), "signal must be set exactly"),
    (dict(state=WAIT, started_ms=5), "a WAIT job has no start time"),
    (dict(state=RUN, ended_ms=5), "a RUN job has no end time"),
    (dict(state=RUN, submitted_ms=-1), "submitted_ms must be Unix time"),
    (dict(state=DONE, end=7), "7 is not a valid EndKind"),
    (dict(state=5), "5 is not a valid JobState"),
    (dict(state=RUN, stdout="text"), "stdout tail must be bytes"),
])
def test_outcome_rules_name_the_bad_value(kwargs, match):
    with pytest.raises(OutcomeError, match=match):
        Outcome(A, **kwargs)


@pytest.mark.parametrize("job", [A.upper(), "not-a-uuid", A + "\n", ""])
def test_outcome_job_is_a_lower_case_uuid(job):
    with pytest.raises(OutcomeError, match="lower case"):
        Outcome(job, WAIT)


def test_outcome_from_the_wire_without_required_fields():
    with pytest.raises(OutcomeError, match="required job or code"):
        Outcome.from_proto(AgentExtensions_pb2.JobOutcome(code=2))
    with pytest.raises(OutcomeError, match="required job or code"):
        Outcome.from_proto(AgentExtensions_pb2.JobOutcome(job=Common_pb2.JobId(uuid=A)))


def test_succeeded_only_for_exit_status_zero():
    assert Outcome(A, DONE, EndKind.EXITED, 0).succeeded
    assert not Outcome(A, DONE, EndKind.EXITED, 1).succeeded
    assert not Outcome(A, DONE, EndKind.CANCELLED).succeeded and not Outcome(A, RUN).succeeded


@settings(deadline=None)
@given(st.binary(max_size=300), st.integers(0, 200))
def test_cut_tail_keeps_the_last_bytes(data, limit):
    tail, cut = ext.cut_tail(data, limit)
    assert data.endswith(tail) and len(tail) == min(len(data), limit)
    assert cut == (len(data) > limit)
    outcome = Outcome(A, RUN, stdout=tail, stdout_truncated=cut)
    outcome.check_tails(limit)
    if limit:
        with pytest.raises(OutcomeError, match="over the bound"):
            Outcome(A, RUN, stderr=b"x" * (limit + 1)).check_tails(limit)


def test_cut_tail_refuses_a_negative_limit():
    with pytest.raises(ValueError, match="-1"):
        ext.cut_tail(b"abc", -1)


def test_watch_jobs_validates_like_v1_and_dedups():
    ids = [Common_pb2.JobId(uuid=A.upper()), Common_pb2.JobId(uuid=B), A]
    assert ext.watch_jobs(ids) == (A, B)
    assert ext.watch_jobs([]) == ()
    with pytest.raises(errors.InvalidArgument, match=r"jobs\[1\]"):
        ext.watch_jobs([A, "../etc"])
    with pytest.raises(errors.InvalidArgument, match=r"jobs\[0\].uuid"):
        ext.watch_jobs([Common_pb2.JobId()])


def test_error_texts_and_codes():
    nf = ext.unknown_jobs([A, B])
    assert nf.code is grpc.StatusCode.NOT_FOUND and A in nf.message and B in nf.message
    many = ext.unknown_jobs([str(uuid.UUID(int=i)) for i in range(100)])
    assert "100 in all" in many.message and len(many.message) <= errors.MAX_MESSAGE
    assert ext.not_offered("watch").code is grpc.StatusCode.UNIMPLEMENTED
    ex = ext.too_many_watches(8, "for this caller")
    assert ex.code is grpc.StatusCode.RESOURCE_EXHAUSTED and "limit 8" in ex.message


# ---- the watch checker -----------------------------------------------------------------

@st.composite
def legal_streams(draw):
    """A legal stream for 1-3 jobs: first events (current states), then changes interleaved."""
    jobs = [A, B, C][: draw(st.integers(1, 3))]
    paths = {}
    for job in jobs:
        start = draw(st.sampled_from([WAIT, RUN, DONE]))
        later = [s for s in (RUN, DONE) if s > start]
        if start is WAIT and draw(st.booleans()):
            later = [DONE]  # never started: cancelled or interrupted in WAIT
        paths[job] = [start, *later]
    events = [(j, paths[j][0]) for j in jobs]
    rest = {j: paths[j][1:] for j in jobs}
    while any(rest.values()):
        job = draw(st.sampled_from([j for j in jobs if rest[j]]))
        events.append((job, rest[job].pop(0)))
    return jobs, paths, events


def _outcome(job, state, ran):
    if state is not DONE:
        return Outcome(job, state)
    return Outcome(job, DONE, EndKind.EXITED, 0, started_ms=1) if ran else Outcome(job, DONE, EndKind.CANCELLED)


@settings(deadline=None)
@given(legal_streams(), st.booleans())
def test_checker_accepts_every_legal_stream(stream, offered):
    jobs, paths, events = stream
    checker = WatchChecker(jobs, outcome_offered=offered)
    for job, state in events:
        ran = paths[job] != [WAIT, DONE]
        checker.event(job, state, _outcome(job, state, ran) if state is DONE else None)
    assert checker.finished
    checker.closed(grpc.StatusCode.OK)
    with pytest.raises(WatchViolation, match="after every watched job's DONE"):
        checker.event(jobs[0], DONE)


@settings(max_examples=60, deadline=None)
@given(legal_streams(), st.data())
def test_checker_resumes_a_stream_broken_at_any_event(stream, data):
    jobs, paths, events = stream
    cut = data.draw(st.integers(0, len(events)))
    checker = WatchChecker(jobs)
    for job, state in events[:cut]:
        checker.event(job, state)
    checker.closed(grpc.StatusCode.UNAVAILABLE)  # a broken stream is not a violation
    again = checker.resume()
    assert set(again.jobs) == {j for j in jobs if checker.states.get(j) is not DONE}
    for job in again.jobs:  # the new stream's first events repeat the last state seen
        again.event(job, checker.states.get(job, WAIT))
    for job in again.jobs:  # ...once: a second repeat is a violation
        with pytest.raises(WatchViolation, match="AGT-EXT-7"):
            again.event(job, again.states[job])
    if checker.states and again.jobs and checker.states.get(again.jobs[0], WAIT) > WAIT:
        with pytest.raises(WatchViolation, match="AGT-EXT-8"):  # never earlier than seen before
            checker.resume().event(again.jobs[0], WAIT)


@pytest.mark.parametrize("jobs, events, rid, match", [
    ([A], [(A, RUN), (A, WAIT)], "AGT-EXT-7", "WAIT after RUN"),
    ([A], [(A, RUN), (A, RUN)], "AGT-EXT-7", "RUN after RUN"),
    ([A], [(C, RUN)], "AGT-EXT-7", "not watched"),
    ([A, B], [(A, WAIT), (A, RUN)], "AGT-EXT-7", "before the first event"),
])
def test_checker_refuses_illegal_streams(jobs, events, rid, match):
    checker = WatchChecker(jobs)
    with pytest.raises(WatchViolation, match=match) as info:
        for job, state in events:
            checker.event(job, state)
    assert info.value.requirement == rid


def test_checker_floors_and_outcomes():
    checker = WatchChecker([A], outcome_offered=True, floors={A.upper(): RUN})
    with pytest.raises(WatchViolation, match="AGT-EXT-8: .*WAIT after v1 reported RUN"):
        checker.event(A, WAIT)
    checker = WatchChecker([A], outcome_offered=True)
    checker.event(A, WAIT)
    checker.floor(A, RUN)
    with pytest.raises(WatchViolation, match="DONE event without its outcome"):
        checker.event(A, DONE)
    with pytest.raises(WatchViolation, match="its RUN change was not sent"):
        checker.event(A, DONE, Outcome(A, DONE, EndKind.EXITED, 0, started_ms=5))
    with pytest.raises(WatchViolation, match="carries an outcome for"):
        checker.event(A, DONE, Outcome(A, RUN))
    checker.event(A, DONE, Outcome(A, DONE, EndKind.CANCELLED))
    assert checker.outcomes[A].end is EndKind.CANCELLED


def test_checker_closed_with_ok_too_early():
    checker = WatchChecker([A, B])
    checker.event(A, DONE)
    with pytest.raises(WatchViolation, match=f"before DONE of {B}"):
        checker.closed(grpc.StatusCode.OK)
    checker.closed(grpc.StatusCode.UNAVAILABLE)
    empty = WatchChecker([])
    assert empty.finished
    empty.closed(grpc.StatusCode.OK)
