"""The AgentExtensions service's plain-Python layer: capabilities, outcomes, tails, watch rules, errors."""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Iterable, Mapping

import grpc

from protos import AgentExtensions_pb2, Common_pb2, errors, validation
from protos.states import JobState

SERVICE = AgentExtensions_pb2.DESCRIPTOR.services_by_name["AgentExtensions"].full_name
OUTCOME = "outcome"
CANCEL = "cancel"
WATCH = "watch"
CAPABILITIES = (OUTCOME, CANCEL, WATCH)
# The method of each extension (GetCapabilities belongs to none: every agent with the service serves it).
METHODS = {OUTCOME: "GetOutcome", CANCEL: "CancelJob", WATCH: "WatchJobs"}
# The reference agent's and the fakes' bound on each output tail (AGT-EXT-3: "bounded").
TAIL_LIMIT = 64 * 1024


class EndKind(enum.IntEnum):
    """How a DONE job ended; values equal the wire's EndKind."""

    EXITED = 0       # exit_status is set
    SIGNALLED = 1    # signal is set
    INTERRUPTED = 2  # ended while the agent was down, or could not be tracked
    CANCELLED = 3    # ended by CancelJob (never started, or killed)


class OutcomeError(ValueError):
    """An outcome that breaks the rules of AGT-EXT-3 (`requirement` names the ID)."""

    requirement = "AGT-EXT-3"


class NotFound(errors.ProtocolError):
    """A well-formed job id the agent never saw, to an extension method (AGT-EXT-3/5/7)."""

    code = grpc.StatusCode.NOT_FOUND


class Unimplemented(errors.ProtocolError):
    """A method of an extension the agent does not offer (AGT-EXT-2)."""

    code = grpc.StatusCode.UNIMPLEMENTED


def unknown_jobs(jobs: Iterable[str], requirement: str = "AGT-EXT-7") -> NotFound:
    jobs = list(jobs)
    noun = "job" if len(jobs) == 1 else "jobs"
    return NotFound(f"unknown {noun} (never submitted to this agent): {errors._few(jobs)}", requirement)


def not_offered(capability: str) -> Unimplemented:
    return Unimplemented(f"this agent does not offer the {capability!r} extension "
                         f"(GetCapabilities lists what it offers)", "AGT-EXT-2")


def too_many_watches(limit: int, scope: str) -> errors.ResourceExhausted:
    """`scope` is "for this caller" or "in all"."""
    return errors.ResourceExhausted(f"too many open watch streams {scope} (limit {limit}); "
                                    f"close one or poll with RunJob", "AGT-EXT-9")


def capabilities_from(names: Iterable[str]) -> frozenset[str]:
    """The known extensions among the names an agent lists (reading 1: unknown names are ignored,
    a name listed twice counts once)."""
    return frozenset(n for n in names if n in CAPABILITIES)


def capabilities_message(offered: Iterable[str]) -> AgentExtensions_pb2.Capabilities:
    """An agent's answer to GetCapabilities: the offered names in the contract's order."""
    offered = set(offered)
    unknown = sorted(offered - set(CAPABILITIES))
    if unknown:
        raise ValueError(f"unknown extension(s) {unknown}; known: {', '.join(CAPABILITIES)}")
    return AgentExtensions_pb2.Capabilities(extensions=[c for c in CAPABILITIES if c in offered])


def cut_tail(data: bytes, limit: int = TAIL_LIMIT) -> tuple[bytes, bool]:
    """The last `limit` bytes of an output stream and whether bytes before them were dropped."""
    if limit < 0:
        raise ValueError(f"tail limit must be 0 or more bytes, got {limit}")
    if len(data) <= limit:
        return bytes(data), False
    return bytes(data[len(data) - limit:]), True


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_ms(name: str, value: int | None) -> None:
    if value is not None and (not _whole(value) or value < 0):
        raise OutcomeError(f"{name} must be Unix time in ms (an integer >= 0), got {value!r}")


@dataclass(frozen=True)
class Outcome:
    """What GetOutcome answers for one job (AGT-EXT-3), checked when built: `end` set exactly when
    DONE, `exit_status` 0-255 exactly when EXITED, `signal` (positive) exactly when SIGNALLED, no
    start time in WAIT, no end time before DONE, the job id in lower case (docs/SPEC.md, readings)."""

    job: str
    state: JobState
    end: EndKind | None = None
    exit_status: int | None = None
    signal: int | None = None
    interpreter_version: str | None = None
    submitted_ms: int | None = None
    started_ms: int | None = None
    ended_ms: int | None = None
    stdout: bytes = b""
    stderr: bytes = b""
    stdout_truncated: bool = False
    stderr_truncated: bool = False

    def __post_init__(self):
        if not validation.is_uuid(self.job) or self.job != self.job.lower():
            raise OutcomeError(f"job must be a canonical UUID in lower case (AGT-ID-3), got {self.job!r}")
        try:
            object.__setattr__(self, "state", JobState(self.state))
            if self.end is not None:
                object.__setattr__(self, "end", EndKind(self.end))
        except ValueError as exc:
            raise OutcomeError(str(exc)) from None
        done = self.state is JobState.DONE
        if done != (self.end is not None):
            raise OutcomeError(f"end must be set exactly when the job is DONE: state {self.state.name}, "
                               f"end {self.end.name if self.end is not None else 'absent'}")
        self._check_end()
        for name in ("submitted_ms", "started_ms", "ended_ms"):
            _check_ms(name, getattr(self, name))
        if self.state is JobState.WAIT and self.started_ms is not None:
            raise OutcomeError(f"a WAIT job has no start time, got started_ms={self.started_ms}")
        if not done and self.ended_ms is not None:
            raise OutcomeError(f"a {self.state.name} job has no end time, got ended_ms={self.ended_ms}")
        for name in ("stdout", "stderr"):
            if not isinstance(getattr(self, name), bytes):
                raise OutcomeError(f"{name} tail must be bytes, got {type(getattr(self, name)).__name__}")

    def _check_end(self) -> None:
        exited, signalled = self.end is EndKind.EXITED, self.end is EndKind.SIGNALLED
        if exited != (self.exit_status is not None):
            raise OutcomeError(f"exit_status must be set exactly when end is EXITED: end "
                               f"{self.end.name if self.end is not None else 'absent'}, exit_status {self.exit_status!r}")
        if exited and not (_whole(self.exit_status) and 0 <= self.exit_status <= 255):
            raise OutcomeError(f"exit_status must be 0-255, got {self.exit_status!r}")
        if signalled != (self.signal is not None):
            raise OutcomeError(f"signal must be set exactly when end is SIGNALLED: end "
                               f"{self.end.name if self.end is not None else 'absent'}, signal {self.signal!r}")
        if signalled and not (_whole(self.signal) and self.signal > 0):
            raise OutcomeError(f"signal must be a positive number, got {self.signal!r}")

    @property
    def done(self) -> bool:
        return self.state is JobState.DONE

    @property
    def succeeded(self) -> bool:
        """True when the job ran to an exit status of 0."""
        return self.end is EndKind.EXITED and self.exit_status == 0

    def check_tails(self, limit: int = TAIL_LIMIT) -> None:
        """Raise OutcomeError when a tail is longer than `limit` (a bound the caller knows, such as
        the reference agent's 64 KiB; the contract gives no number)."""
        for name in ("stdout", "stderr"):
            if len(getattr(self, name)) > limit:
                raise OutcomeError(f"{name} tail of {len(getattr(self, name))} bytes is over the bound of {limit}")

    def to_proto(self) -> AgentExtensions_pb2.JobOutcome:
        msg = AgentExtensions_pb2.JobOutcome(job=Common_pb2.JobId(uuid=self.job), code=int(self.state))
        for name in ("exit_status", "signal", "interpreter_version", "submitted_ms", "started_ms", "ended_ms"):
            if getattr(self, name) is not None:
                setattr(msg, name, getattr(self, name))
        if self.end is not None:
            msg.end = int(self.end)
        if self.stdout or self.stdout_truncated:
            msg.stdout_tail, msg.stdout_truncated = self.stdout, self.stdout_truncated
        if self.stderr or self.stderr_truncated:
            msg.stderr_tail, msg.stderr_truncated = self.stderr, self.stderr_truncated
        return msg

    @classmethod
    def from_proto(cls, msg: AgentExtensions_pb2.JobOutcome) -> "Outcome":
        """The record for a JobOutcome from the wire; OutcomeError when it breaks AGT-EXT-3 (also for a
        missing required field, which Python protobuf does not reject when parsing)."""
        if not msg.HasField("job") or not msg.job.HasField("uuid") or not msg.HasField("code"):
            raise OutcomeError("JobOutcome without its required job or code (AGT-WIRE-2 applies to it too)")

        def opt(name):
            return getattr(msg, name) if msg.HasField(name) else None
        try:
            state = JobState(msg.code)
        except ValueError:
            raise OutcomeError(f"code {msg.code} is not WAIT, RUN or DONE") from None
        return cls(job=msg.job.uuid, state=state, end=opt("end"), exit_status=opt("exit_status"),
                   signal=opt("signal"), interpreter_version=opt("interpreter_version"),
                   submitted_ms=opt("submitted_ms"), started_ms=opt("started_ms"), ended_ms=opt("ended_ms"),
                   stdout=msg.stdout_tail, stderr=msg.stderr_tail,
                   stdout_truncated=msg.stdout_truncated, stderr_truncated=msg.stderr_truncated)


def watch_jobs(jobs: Iterable[object]) -> tuple[str, ...]:
    """The job ids of a WatchRequest in lower case, each once, in order of first appearance;
    InvalidArgument naming the first malformed or missing one (v1's rules: AGT-ID-1/2)."""
    seen: dict[str, None] = {}
    for i, job in enumerate(jobs):
        if isinstance(job, Common_pb2.JobId):
            if not job.HasField("uuid"):
                raise errors.missing_field(f"jobs[{i}].uuid")
            job = job.uuid
        seen.setdefault(validation.parse_uuid(job, f"jobs[{i}].uuid"), None)
    return tuple(seen)


class WatchViolation(Exception):
    """A watch stream that breaks AGT-EXT-7 or AGT-EXT-8 (`requirement` names which)."""

    def __init__(self, requirement: str, message: str):
        super().__init__(f"{requirement}: {message}")
        self.requirement = requirement
        self.message = message


class WatchChecker:
    """The rules of one WatchJobs stream, as the client, the fakes' tests and the suite check them.

    Feed it each event (`event()`) and how the stream closed (`closed()`); it raises WatchViolation
    at the first event that breaks AGT-EXT-7/8. `floors` are the latest states v1 (or an earlier
    stream) reported for jobs (AGT-EXT-8: a watch never reports earlier); `outcome_offered` says
    whether DONE events must carry the outcome.
    """

    def __init__(self, jobs: Iterable[str], *, outcome_offered: bool = False,
                 floors: Mapping[str, JobState] | None = None):
        self.jobs = tuple(dict.fromkeys(j.lower() for j in jobs))
        self.outcome_offered = outcome_offered
        self.floors = {j.lower(): JobState(s) for j, s in (floors or {}).items()}
        self.states: dict[str, JobState] = {}
        self.outcomes: dict[str, Outcome] = {}
        self.events = 0

    @property
    def finished(self) -> bool:
        """Every watched job was seen DONE: the stream must end now."""
        return all(self.states.get(j) is JobState.DONE for j in self.jobs)

    def floor(self, job: str, state: JobState | int) -> None:
        """Record that v1 reported `state` for `job` (a watch event after it may not be earlier)."""
        job, state = job.lower(), JobState(state)
        self.floors[job] = max(state, self.floors.get(job, JobState.WAIT))

    def event(self, job: str, state: JobState | int, outcome: Outcome | None = None) -> None:
        job, state = job.lower(), JobState(state)
        if job not in self.jobs:
            raise WatchViolation("AGT-EXT-7", f"event {state.name} for job {job}, which is not watched")
        if self.finished:
            raise WatchViolation("AGT-EXT-7", f"event {state.name} for {job} after every watched job's DONE "
                                 "(the stream must end)")
        last = self.states.get(job)
        if last is not None and len(self.states) < len(self.jobs):
            missing = [j for j in self.jobs if j not in self.states]
            raise WatchViolation("AGT-EXT-7", f"second event for {job} ({state.name}) before the first event "
                                 f"(current state) of {missing[0]}")
        if last is not None and state <= last:
            raise WatchViolation("AGT-EXT-7", f"job {job}: {state.name} after {last.name} (each state once, in order)")
        floor = self.floors.get(job)
        if floor is not None and state < floor:
            raise WatchViolation("AGT-EXT-8", f"job {job}: watch reports {state.name} after v1 reported {floor.name}")
        self._check_outcome(job, state, last, outcome)
        self.states[job] = state
        self.events += 1

    def _check_outcome(self, job: str, state: JobState, last: JobState | None, outcome: Outcome | None) -> None:
        if outcome is not None and (outcome.job != job or outcome.state is not state):
            raise WatchViolation("AGT-EXT-7", f"job {job}: event {state.name} carries an outcome for "
                                 f"{outcome.job} in {outcome.state.name}")
        if state is not JobState.DONE:
            return
        if outcome is None and self.outcome_offered:
            raise WatchViolation("AGT-EXT-7", f"job {job}: DONE event without its outcome ('outcome' is offered)")
        if last is JobState.WAIT and outcome is not None and outcome.started_ms is not None:
            raise WatchViolation("AGT-EXT-7", f"job {job}: WAIT then DONE, but the job started "
                                 f"(started_ms={outcome.started_ms}): its RUN change was not sent")
        if outcome is not None:
            self.outcomes[job] = outcome

    def closed(self, code: grpc.StatusCode) -> None:
        """The stream closed with `code`. OK before every job's DONE breaks AGT-EXT-7; any other
        status is a broken stream that a client resumes (not a violation by itself)."""
        if code is grpc.StatusCode.OK and not self.finished:
            pending = [j for j in self.jobs if self.states.get(j) is not JobState.DONE]
            raise WatchViolation("AGT-EXT-7", f"stream ended with OK before DONE of {pending[0]}"
                                 + (f" and {len(pending) - 1} more" if len(pending) > 1 else ""))

    def resume(self) -> "WatchChecker":
        """The checker for the stream that resumes this one: the jobs not yet DONE, with the states
        seen so far as floors (reading 7: a first event may repeat the last state, never go earlier)."""
        floors = {**self.floors, **self.states}
        pending = [j for j in self.jobs if self.states.get(j) is not JobState.DONE]
        return WatchChecker(pending, outcome_offered=self.outcome_offered,
                            floors={j: floors[j] for j in pending if j in floors})
