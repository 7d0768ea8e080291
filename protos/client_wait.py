"""How AgentClient.wait_until_done waits: a WatchJobs stream where the agent offers it, polls otherwise."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import grpc

from protos import AgentExtensions_pb2, Common_pb2
from protos.client_errors import (AgentCallError, JobTimeout, NotOffered, ProtocolViolation, ResourceExhausted,
                                  classify)
from protos.extensions import OUTCOME, WATCH, Outcome, OutcomeError, WatchChecker, WatchViolation
from protos.retry import Backoff
from protos.states import JobState

if TYPE_CHECKING:  # pragma: no cover
    from protos.client import AgentClient


@dataclass
class Timeline:
    """The states seen for one job, as (seconds since the first poll, state), and the transient
    failures survived on the way, as (seconds, status code name)."""

    job: str
    points: list[tuple[float, JobState]] = field(default_factory=list)
    retries: list[tuple[float, str]] = field(default_factory=list)
    polls: int = 0
    watches: int = 0                  # WatchJobs streams opened (0 when the wait polled)
    outcome: Outcome | None = None    # the DONE event's outcome, when the agent offers "outcome"

    @property
    def final(self) -> JobState | None:
        return self.points[-1][1] if self.points else None


@dataclass
class _Wait:
    """One wait_until_done: its clock, deadline, backoff and what it has seen so far."""

    client: "AgentClient"
    timeline: Timeline
    deadline: float
    backoff: Backoff
    clock: Callable[[], float]
    sleep: Callable[[float], None]
    on_state: Callable[[JobState], None] | None
    retry: bool
    start: float = 0.0
    last_error: AgentCallError | None = None

    def elapsed(self) -> float:
        return self.clock() - self.start

    def seen(self, state: JobState) -> bool:
        """Record a state; True when it is a change."""
        points = self.timeline.points
        if points and points[-1][1] == state:
            return False
        points.append((self.elapsed(), state))
        if self.on_state:
            self.on_state(state)
        return True

    def failed(self, exc: AgentCallError) -> None:
        """A failure of the wait's own calls: raised unless it is transient and retry is on."""
        if not (self.retry and exc.transient):
            raise exc
        self.last_error = exc
        self.timeline.retries.append((self.elapsed(), exc.code_name))

    def timeout_if_due(self) -> None:
        if self.elapsed() >= self.deadline:
            raise JobTimeout(self.timeline.job, self.deadline, self.timeline.points, self.last_error)

    def pause(self, attempt: int) -> None:
        self.sleep(min(self.backoff.delay(attempt), max(0.0, self.deadline - self.elapsed())))


def wait(client: "AgentClient", job: str, *, deadline: float, watch: bool | None, poll_interval: float | None,
         backoff: Backoff | None, on_state, clock, sleep, retry: bool) -> Timeline:
    if backoff is None:
        backoff = Backoff.fixed(poll_interval) if poll_interval is not None else client.backoff
    ctx = _Wait(client, Timeline(job), deadline, backoff, clock, sleep, on_state, retry, start=clock())
    if _should_watch(client, watch) and _watch(ctx, insist=watch is True):
        return ctx.timeline
    return _poll(ctx)


def _should_watch(client: "AgentClient", watch: bool | None) -> bool:
    if watch is False:
        return False
    if watch is True:
        if not client.offers(WATCH):
            raise NotOffered("WatchJobs", grpc.StatusCode.UNIMPLEMENTED,
                             "the agent does not offer the 'watch' extension (GetCapabilities)")
        return True
    try:
        return client.offers(WATCH)
    except AgentCallError as exc:
        if exc.transient:
            return False   # the agent is not answering now: poll (polls retry); ask again next wait
        raise


def _poll(ctx: _Wait) -> Timeline:
    """Status queries until DONE (the v1 way)."""
    attempt = 0
    while True:
        try:
            ctx.timeline.polls += 1
            state = ctx.client.status(ctx.timeline.job,
                                      timeout=ctx.client._call_timeout(ctx.deadline - ctx.elapsed()),
                                      ready=ctx.last_error is not None)
        except AgentCallError as exc:
            ctx.failed(exc)
            state = None
        if state is not None:
            ctx.last_error = None
            if ctx.seen(state):
                attempt = 0
            if state is JobState.DONE:
                return ctx.timeline
        ctx.timeout_if_due()
        ctx.pause(attempt)
        attempt += 1


def _event(event, job: str) -> tuple[JobState, Outcome | None]:
    try:
        if not event.HasField("job") or not event.HasField("code"):
            raise OutcomeError("JobEvent without its required job or code")
        outcome = Outcome.from_proto(event.outcome) if event.HasField("outcome") else None
        return JobState(event.code), outcome
    except (OutcomeError, ValueError) as exc:
        raise ProtocolViolation("WatchJobs", grpc.StatusCode.OK, f"bad event: {exc}",
                                requirement="AGT-EXT-7", job=job) from None


def _watch(ctx: _Wait, *, insist: bool) -> bool:
    """Watch until DONE (True), or False when the agent refuses the watch and polling should take
    over (UNIMPLEMENTED despite listing it, RESOURCE_EXHAUSTED: too many streams)."""
    client, job = ctx.client, ctx.timeline.job
    checker = WatchChecker([job], outcome_offered=OUTCOME in client.capabilities())
    request = AgentExtensions_pb2.WatchRequest(jobs=[Common_pb2.JobId(uuid=job)])
    attempt, again = 0, False
    while True:
        ctx.timeout_if_due()
        left = ctx.deadline - ctx.elapsed()
        span = left if client.watch_refresh is None else min(left, client.watch_refresh)
        ctx.timeline.watches += 1
        stream = client._ext.WatchJobs(request, timeout=max(span, 0.05), metadata=client.metadata or None,
                                       wait_for_ready=again or None)
        try:
            for event in stream:
                state, outcome = _event(event, job)
                checker.event(event.job.uuid, state, outcome)
                ctx.last_error = None
                if ctx.seen(state):
                    attempt = 0
                if outcome is not None and outcome.done:
                    ctx.timeline.outcome = outcome
                if state is JobState.DONE:
                    return True   # all a waiter needs: never hang on a stream the agent fails to end
            checker.closed(grpc.StatusCode.OK)
            return True
        except WatchViolation as exc:
            raise ProtocolViolation("WatchJobs", grpc.StatusCode.OK, exc.message, requirement=exc.requirement,
                                    job=job) from None
        except grpc.RpcError as exc:
            error = classify("WatchJobs", exc.code(), exc.details(), request)
        finally:
            stream.cancel()
        if ctx.timeline.final is JobState.DONE:
            return True   # the stream broke after the DONE event: nothing left to learn
        if not insist and isinstance(error, (NotOffered, ResourceExhausted)):
            if isinstance(error, NotOffered):
                client.forget(WATCH)
            return False
        checker, again = checker.resume(), True
        if error.code is grpc.StatusCode.DEADLINE_EXCEEDED and span < left:
            continue   # the refresh of a quiet stream, not a failure
        ctx.failed(error)
        ctx.timeout_if_due()
        ctx.pause(attempt)
        attempt += 1
