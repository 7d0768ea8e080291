"""Client habits that the contract makes wasteful or risky, seen by the recording fake and warned about."""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import grpc

from protos.states import JobState

# kind -> (the requirement that makes it wasteful or risky, what to do instead)
KINDS: dict[str, tuple[str | None, str]] = {
    "mismatched-repeat": ("AGT-RUN-8", "a repeat RunJob must send the submission's lists verbatim, or none"),
    "reused-job-id": ("AGT-RUN-7", "a job id runs at most once: use a new id for new work"),
    "stage-after-submit": ("AGT-STAGE-4", "stage every file before the first RunJob: a job's inputs are frozen"),
    "poll-without-backoff": (None, "let the poll interval grow while the state does not change"),
}


class ClientHabitWarning(UserWarning):
    """A client habit that the contract makes wasteful or risky (see fakes.habits.KINDS)."""


@dataclass(frozen=True)
class Habit:
    """One habit seen: its kind (a key of KINDS), the job, what happened, the backend's clock."""

    kind: str
    job: str
    detail: str
    at: float

    @property
    def requirement(self) -> str | None:
        return KINDS[self.kind][0]

    def __str__(self) -> str:
        rid = f" ({self.requirement})" if self.requirement else ""
        return f"{self.kind}{rid}: job {self.job}: {self.detail}; {KINDS[self.kind][1]}"


def _number(name: str, value: object, minimum: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < minimum:
        raise ValueError(f"{name} must be a finite number >= {minimum:g}, got {value!r}")
    return value


@dataclass(frozen=True)
class HabitRules:
    """When polling counts as "without backoff": `polls` status queries of one job in a row, each
    under `floor` seconds after the previous, with the state unchanged and the interval never
    grown `growth`-fold over the first of the run. `warn=False` only records habits."""

    polls: int = 8
    floor: float = 0.5
    growth: float = 2.0
    warn: bool = True

    def __post_init__(self):
        if isinstance(self.polls, bool) or not isinstance(self.polls, int) or self.polls < 2:
            raise ValueError(f"polls must be a whole number >= 2, got {self.polls!r}")
        _number("floor", self.floor, 0)
        _number("growth", self.growth, 1)


@dataclass
class _Polling:
    last_at: float
    state: JobState | None
    first: float = 0.0
    run: int = 0
    flagged: bool = False


@dataclass
class HabitWatcher:
    """Watches the calls a FakeBackend records; `habits` lists what it saw, once per kind and job."""

    rules: HabitRules = field(default_factory=HabitRules)
    habits: list[Habit] = field(default_factory=list)
    _polling: dict[str, _Polling] = field(default_factory=dict)
    _seen: set[tuple[str, str]] = field(default_factory=set)

    def reset(self) -> None:
        self.habits.clear()
        self._polling.clear()
        self._seen.clear()

    def observe(self, call, job: str | None, state: JobState | None, submitted: tuple[str, ...] = ()) -> None:
        """One recorded call of `job` (lower case, None when malformed); `state` is the job's
        state after the call (None when not submitted), `submitted` its files."""
        if job is None:
            return
        request, code = call.request, call.code
        if call.method == "RunJob" and not request.files and not request.requirements:
            self._poll(call, job)
        if call.injected:
            return
        if code is grpc.StatusCode.ALREADY_EXISTS:
            kind = "reused-job-id" if state is JobState.DONE else "mismatched-repeat"
            self._add(kind, job, "RunJob with other files or requirements than the submission", call.at)
        elif code is grpc.StatusCode.FAILED_PRECONDITION and call.method == "StageInFiles" and \
                not {f.uuid.lower() for f in request.files} <= set(submitted):
            # staging the submission's own files again (a restarted client re-sending its
            # submission) changes nothing; adding other files to a frozen job is the habit
            kind = "reused-job-id" if state is JobState.DONE else "stage-after-submit"
            self._add(kind, job, f"StageInFiles for a job already submitted ({state.name if state is not None else 'not submitted'})", call.at)

    def _poll(self, call, job: str) -> None:
        answered = JobState(call.response.code) if call.ok and call.response is not None else None
        seen = self._polling.get(job)
        if seen is None:
            self._polling[job] = _Polling(call.at, answered)
            return
        interval = call.at - seen.last_at
        changed = answered is not None and seen.state is not None and answered != seen.state
        seen.last_at = call.at
        seen.state = answered if answered is not None else seen.state
        if changed or interval >= self.rules.floor:
            seen.run = 0
            return
        if seen.run == 0 or interval > self.rules.growth * seen.first:
            seen.first, seen.run = interval, 1
        else:
            seen.run += 1
        if seen.run + 1 >= self.rules.polls and not seen.flagged:
            seen.flagged = True
            self._add("poll-without-backoff", job, f"{seen.run + 1} status queries in a row under "
                      f"{self.rules.floor:g} s apart (last interval {interval:.3g} s)", call.at)

    def _add(self, kind: str, job: str, detail: str, at: float) -> None:
        if (kind, job) in self._seen:
            return
        self._seen.add((kind, job))
        habit = Habit(kind, job, detail, at)
        self.habits.append(habit)
        if self.rules.warn:
            # seen in a server thread: no frame of the client's to point at, so name the fake instead
            warnings.warn_explicit(str(habit), ClientHabitWarning, "fake agent", 0, module="fakes.habits")
