"""FakeBackend: the state of one fake agent (staged files, jobs, calls, faults) behind one lock."""
from __future__ import annotations

import platform
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

import grpc
from packaging.version import InvalidVersion, Version

from fakes.faults import FaultPlan
from fakes.habits import Habit, HabitRules, HabitWatcher
from fakes.progression import AfterPolls, Clock, Progression
from fakes.source import FakeFileSource
from protos import errors, extensions, submission, validation
from protos.extensions import EndKind, Outcome
from protos.states import EVENT_FOR_REASON, DoneReason, Event, JobState, JobStateMachine
from protos.validation import RunRequest

# How a fake job's internal DONE reason reads as an outcome (AGT-EXT-3); a cancel reads CANCELLED.
_ENDS = {DoneReason.SUCCEEDED: (EndKind.EXITED, 0), DoneReason.FAILED: (EndKind.EXITED, 1),
         DoneReason.KILLED: (EndKind.SIGNALLED, 9), DoneReason.INTERRUPTED: (EndKind.INTERRUPTED, None)}


@dataclass
class FakeJob:
    """A submitted job: what was submitted, its state machine, and how many answers it got."""

    uuid: str
    files: tuple[str, ...]
    requirement_texts: tuple[str, ...]
    interpreter: str
    inputs: dict[str, bytes]
    progression: Progression
    submitted_at: float
    machine: JobStateMachine = field(default_factory=JobStateMachine)
    answers: int = 0
    cancelled: bool = False
    kill_pending: bool = False
    started_at: float | None = None
    ended_at: float | None = None
    stdout: bytes = b""
    stderr: bytes = b""

    @property
    def state(self) -> JobState:
        return self.machine.state


@dataclass(frozen=True)
class Call:
    """One call the fake received: the request (a copy), the status it answered and the response."""

    method: str
    request: object
    code: grpc.StatusCode
    details: str
    response: object | None
    at: float
    injected: bool = False
    metadata: tuple[tuple[str, str], ...] = ()  # the call's invocation metadata (e.g. authorization)

    @property
    def ok(self) -> bool:
        return self.code is grpc.StatusCode.OK


def _job_key(job: str) -> str:
    if not validation.is_uuid(job):
        raise ValueError(f"a job id must be a canonical UUID, got {job!r}")
    return job.lower()


def _versions(values: Iterable[str]) -> list[str]:
    out = []
    for v in values:
        try:
            Version(str(v))
        except InvalidVersion:
            raise ValueError(f"not an interpreter version: {v!r} (use e.g. '3.11.7')") from None
        out.append(str(v))
    return out


class FakeBackend:
    """Everything a fake agent knows, guarded by `lock`; the servicer over it is stateless.

    Follows PROTOCOL-V1 on the surface and runs nothing: jobs move through WAIT, RUN and DONE
    as their Progression says (the default for every job is `progression`, a job may get its own
    with set_progression()). Staging copies bytes from `source` (a FakeFileSource) at call time
    and caches them by UUID (AGT-STAGE-5). `python_versions` are the interpreters the fake
    pretends to have; RunJob picks with protos.validation.choose_interpreter. `habits` (HabitRules)
    sets when a recorded call counts as a wasteful or risky client habit (`habits`). `connected=False`
    makes every call fail with UNAVAILABLE (and ends open watch streams with it); `faults` injects
    failures and latency. `extensions` are the AgentExtensions the fake offers (all three by
    default; () serves the service with none listed, None serves no such service: a v1 agent).
    A watch stream moves poll-driven progressions itself: each step of a stream counts as one
    answer per watched job, a step at once after a change, else every `watch_tick` real seconds.
    `reset()` forgets jobs, staged files, calls and faults but keeps the configuration and the source.
    """

    def __init__(self, *, source: FakeFileSource | None = None, python_versions: Iterable[str] | None = None,
                 progression: Progression | None = None, clock: Clock | None = None,
                 sleep: Callable[[float], None] = time.sleep, habits: HabitRules | None = None,
                 extensions: Iterable[str] | None = extensions.CAPABILITIES, watch_tick: float = 0.005):
        if habits is not None and not isinstance(habits, HabitRules):
            raise TypeError(f"habits must be a fakes.HabitRules, got {habits!r}")
        if progression is not None and not isinstance(progression, Progression):
            raise TypeError(f"progression must be a fakes.Progression, got {progression!r}")
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)   # notified on every state change (watch streams)
        self.extensions = _offered(extensions)
        if isinstance(watch_tick, bool) or not isinstance(watch_tick, (int, float)) or not 0 < watch_tick <= 1:
            raise ValueError(f"watch_tick must be a number of seconds in (0, 1], got {watch_tick!r}")
        self.watch_tick = float(watch_tick)
        self.cancel_mode = "at-once"   # or "late", "ends-first": see cancel()
        self.source = source if source is not None else FakeFileSource()
        self.python_versions = _versions(python_versions if python_versions is not None
                                         else [platform.python_version()])
        self.progression = progression if progression is not None else AfterPolls()
        self.clock: Clock = clock if clock is not None else time.monotonic
        self.epoch = time.time() - self.clock()   # the clock's 0 in Unix seconds (outcome times)
        self.sleep = sleep
        self.faults = FaultPlan()
        self.connected = True
        self._staged: dict[str, dict[str, bytes]] = {}
        self._cache: dict[str, bytes] = {}
        self._jobs: dict[str, FakeJob] = {}
        self._progressions: dict[str, Progression] = {}
        self._calls: list[Call] = []
        self.watcher = HabitWatcher(habits if habits is not None else HabitRules())

    # --- the protocol's two operations (requests already validated by the servicer) -----------

    def stage_in(self, job: str, files: Iterable[str]) -> list[str]:
        """Stage files for a job; return those staged, once each, in request order (AGT-STAGE-1..4)."""
        with self.lock:
            submission.check_stage_allowed(job, job in self._jobs)
            wanted = validation.dedupe(files)
            staged = self._staged.setdefault(job, {})
            for f in wanted:
                if f not in staged:
                    data = self._fetch(f)
                    if data is not None:
                        staged[f] = data
            if not staged:
                del self._staged[job]
            return [f for f in wanted if f in staged]

    def _fetch(self, file_uuid: str) -> bytes | None:
        if file_uuid in self._cache:
            return self._cache[file_uuid]
        try:
            data = bytes(self.source.read(file_uuid))
        except Exception:  # absent or unreadable: left out of success_files (AGT-STAGE-1)
            return None
        self._cache[file_uuid] = data
        return data

    def run_job(self, request: RunRequest) -> JobState:
        """Submit a job or answer a status query about it (AGT-RUN-1..9)."""
        with self.lock:
            job = self._jobs.get(request.job)
            if job is not None:
                self.check_repeat(job, request)
                return self._answer(job)
            return self._answer(self.submit(request))

    def check_repeat(self, job: FakeJob, request: RunRequest) -> None:
        """A repeat is a status query when files and requirements are each empty or equal (AGT-RUN-8)."""
        submission.check_repeat(request, job.files, job.requirement_texts)

    def submit(self, request: RunRequest) -> FakeJob:
        """Create the job after the first-RunJob checks (AGT-RUN-2..5); the caller holds the lock."""
        staged = self._staged.get(request.job, {})
        submission.check_first_run(request, staged)
        interpreter = validation.choose_interpreter(request.requirements, self.python_versions)
        if interpreter is None:
            raise errors.no_interpreter(request.requirement_texts, self.python_versions)
        job = FakeJob(request.job, request.files, request.requirement_texts, interpreter,
                      dict(staged), self._progressions.get(request.job, self.progression), self.clock())
        job.machine.listeners.append(lambda machine, old, new, event, _job=job: self._moved(_job, new))
        self._jobs[request.job] = job
        self._notify()
        return job

    def _moved(self, job: FakeJob, new: JobState) -> None:
        if new is JobState.RUN:
            job.started_at = self.clock()
        elif new is JobState.DONE:
            job.ended_at = self.clock()
        self._notify()

    def _notify(self) -> None:
        with self.changed:
            self.changed.notify_all()

    def _answer(self, job: FakeJob) -> JobState:
        job.answers += 1
        return self._apply(job, job.answers)

    def _apply(self, job: FakeJob, answers: int) -> JobState:
        """Move a job as its progression says; a kill under way (cancel_mode "late") lands first."""
        if job.kill_pending and job.machine.state is not JobState.DONE:
            job.machine.advance(Event.KILL)
        return job.progression.apply(job.machine, answers, self.clock() - job.submitted_at)

    # --- what a test reads and steers ------------------------------------------------------------

    def set_progression(self, job: str, progression: Progression) -> None:
        """Give one job its own progression; before or after its submission."""
        if not isinstance(progression, Progression):
            raise TypeError(f"progression must be a fakes.Progression, got {progression!r}")
        job = _job_key(job)
        with self.lock:
            self._progressions[job] = progression
            if job in self._jobs:
                self._jobs[job].progression = progression

    def job(self, job: str) -> FakeJob | None:
        """The submitted job (any case), or None."""
        with self.lock:
            return self._jobs.get(_job_key(job))

    def jobs(self) -> list[FakeJob]:
        with self.lock:
            return list(self._jobs.values())

    def state(self, job: str) -> JobState:
        """The job's state now, applying time-based progress; does not count as an answer."""
        with self.lock:
            found = self.job(job)
            if found is None:
                raise KeyError(f"no job {job} was submitted")
            return self._apply(found, max(found.answers, 1))

    def advance(self, job: str, event: Event | str) -> JobState:
        """Move a job by hand (raises protos.states.IllegalTransition for an illegal move)."""
        with self.lock:
            found = self.job(job)
            if found is None:
                raise KeyError(f"no job {job} was submitted")
            return found.machine.advance(event)

    # --- the extension: outcome, cancel, watch ------------------------------------------------------

    def outcome(self, job: str) -> Outcome:
        """The job's outcome now (AGT-EXT-3), applying time-based progress; NotFound when never submitted."""
        with self.lock:
            found = self._known(job)
            state = self.state(job)
            end = code = None
            if state is JobState.DONE:
                end, code = (EndKind.CANCELLED, None) if found.cancelled else _ENDS[found.machine.reason]
            stdout, out_cut = extensions.cut_tail(found.stdout)
            stderr, err_cut = extensions.cut_tail(found.stderr)
            return Outcome(found.uuid, state, end, code if end is EndKind.EXITED else None,
                           code if end is EndKind.SIGNALLED else None, found.interpreter,
                           self._ms(found.submitted_at), self._ms(found.started_at), self._ms(found.ended_at),
                           stdout, stderr, out_cut, err_cut)

    def _ms(self, at: float | None) -> int | None:
        return None if at is None else int(round((self.epoch + at) * 1000))

    def _known(self, job: str) -> FakeJob:
        found = self._jobs.get(job.lower())
        if found is None:
            raise extensions.unknown_jobs([job.lower()], "AGT-EXT-3")
        return found

    def cancel(self, job: str) -> JobState:
        """Cancel a job (AGT-EXT-5): a WAIT job is DONE (cancelled) at once, a DONE job unchanged; a RUN
        job as `cancel_mode` says: "at-once" DONE (cancelled), "late" answers RUN and is DONE
        (cancelled) at its next answer or watch step, "ends-first" lost the race to the job's own
        end (DONE with its natural outcome: AGT-EXT-6, exactly one outcome)."""
        with self.lock:
            found = self._known(job)
            state = self.state(job)
            if state is JobState.DONE:
                return state
            if state is JobState.RUN and self.cancel_mode == "ends-first":
                found.machine.advance(EVENT_FOR_REASON[found.progression.outcome])
            elif state is JobState.RUN and self.cancel_mode == "late":
                found.cancelled = found.kill_pending = True
            else:
                found.cancelled = True
                found.machine.advance(Event.KILL)
            return found.state

    def set_output(self, job: str, *, stdout: bytes = b"", stderr: bytes = b"") -> None:
        """What the job 'wrote' (the fake runs nothing): its outcome carries the tails (64 KiB each)."""
        with self.lock:
            found = self.job(job)
            if found is None:
                raise KeyError(f"no job {job} was submitted")
            found.stdout, found.stderr = bytes(stdout), bytes(stderr)

    def watch_step(self, jobs: Iterable[str], last: dict[str, JobState], *, first: bool) -> list[list[JobState]]:
        """One step of a watch stream: each watched job not yet seen DONE counts one answer (not
        on the first step, which reports the current states) and is moved by its progression. For
        each job, the states to send: none, its current state (first step), or every state it
        passed since `last` (a job that went from WAIT to DONE in one step started: RUN, then
        DONE; AGT-EXT-7). Waits up to `watch_tick` for a change when nothing changed."""
        with self.changed:
            for wait in (False, True):
                out: list[list[JobState]] = []
                for key in jobs:
                    found = self._jobs[key]
                    before = last.get(key)
                    if before is JobState.DONE:
                        out.append([])
                        continue
                    if not first:
                        found.answers += 1
                    state = self._apply(found, max(found.answers, 1))
                    if state == before:
                        out.append([])
                    elif before is JobState.WAIT and state is JobState.DONE and found.started_at is not None:
                        out.append([JobState.RUN, JobState.DONE])
                    else:
                        out.append([state])
                if first or any(out) or wait or not self.connected:
                    return out
                self.changed.wait(self.watch_tick)
                first = True   # the wait was the step: look again without counting another answer
            return out  # pragma: no cover - the loop always returns

    def staged(self, job: str) -> dict[str, bytes]:
        """Files staged for a job (submitted or not), UUID -> bytes."""
        job = _job_key(job)
        with self.lock:
            if job in self._jobs:
                return dict(self._jobs[job].inputs)
            return dict(self._staged.get(job, {}))

    # --- calls ------------------------------------------------------------------------------------

    def record(self, call: Call) -> None:
        with self.lock:
            self._calls.append(call)
            if call.method not in ("RunJob", "StageInFiles"):
                return   # client habits are v1 habits
            uuid = call.request.job.uuid if call.request is not None and call.request.HasField("job") else None
            if validation.is_uuid(uuid):
                found = self._jobs.get(uuid.lower())
                self.watcher.observe(call, uuid.lower(), found.state if found else None, found.files if found else ())

    @property
    def habits(self) -> list[Habit]:
        """Client habits seen so far (fakes.habits.KINDS), each also warned as ClientHabitWarning."""
        with self.lock:
            return list(self.watcher.habits)

    @property
    def calls(self) -> list[Call]:
        """Every call received, in arrival order of completion (a copy)."""
        with self.lock:
            return list(self._calls)

    def calls_to(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def reset(self) -> None:
        """Forget jobs, staged files, the cache, calls and faults; reconnect. Keeps configuration."""
        with self.lock:
            self._staged.clear()
            self._cache.clear()
            self._jobs.clear()
            self._progressions.clear()
            self._calls.clear()
            self.watcher.reset()
            self.faults.clear()
            self.connected = True


def _offered(names: Iterable[str] | None) -> frozenset[str] | None:
    if names is None:
        return None
    if isinstance(names, str):
        raise TypeError(f"extensions must be a list of names, got the string {names!r}")
    names = frozenset(names)
    unknown = sorted(names - set(extensions.CAPABILITIES))
    if unknown:
        raise ValueError(f"unknown extension(s) {unknown}; known: {', '.join(extensions.CAPABILITIES)}")
    return names
