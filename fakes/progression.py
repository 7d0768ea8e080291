"""How a fake job moves through WAIT, RUN and DONE: by polls, by a clock, by script, or by hand."""
from __future__ import annotations

import math
import threading
import time
from typing import Callable, Iterable

from protos.states import EVENT_FOR_REASON, DoneReason, Event, JobState, JobStateMachine

Clock = Callable[[], float]


class ManualClock:
    """A clock that stands still until a test calls `advance(seconds)`. Call it to read the time."""

    def __init__(self, start: float = 0.0):
        self._now = float(start)
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        if not isinstance(seconds, (int, float)) or not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"a clock only moves forward by a finite number of seconds, got {seconds!r}")
        with self._lock:
            self._now += float(seconds)
            return self._now


def _count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a whole number >= 0, got {value!r}")
    return value


def _seconds(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value!r}")
    return float(value)


class Progression:
    """Base class: `target(answers, elapsed)` is the state a job should be reported in.

    `answers` counts the OK RunJob answers for the job, the submission included (1 at the
    submission); `elapsed` is the clock's seconds since the submission. None means "leave the
    state alone". The backend only ever moves a job forward through protos.states'
    JobStateMachine, ending with `outcome` (internal: v1 does not put the reason on the wire).
    """

    def __init__(self, outcome: DoneReason | str = DoneReason.SUCCEEDED):
        outcome = DoneReason(outcome)
        if outcome is DoneReason.INTERRUPTED:
            raise ValueError("outcome INTERRUPTED is for agent failures; use SUCCEEDED, FAILED or KILLED")
        self.outcome = outcome

    def target(self, answers: int, elapsed: float) -> JobState | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def apply(self, machine: JobStateMachine, answers: int, elapsed: float) -> JobState:
        """Advance `machine` towards target() with legal events only; return its state."""
        goal = self.target(answers, elapsed)
        if goal is None:
            return machine.state
        while machine.state < goal:
            if machine.state is JobState.WAIT:
                machine.advance(Event.START)
            else:
                machine.advance(EVENT_FOR_REASON[self.outcome])
        return machine.state

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if k != "outcome")
        return f"{type(self).__name__}({args})"


class AfterPolls(Progression):
    """WAIT for the first `wait` answers, RUN for the next `run` answers, then DONE.

    The default of FakeAgent, AfterPolls(wait=1, run=1), answers WAIT at the submission, RUN at
    the first status query and DONE from the second on."""

    def __init__(self, wait: int = 1, run: int = 1, outcome: DoneReason | str = DoneReason.SUCCEEDED):
        super().__init__(outcome)
        self.wait = _count("wait", wait)
        self.run = _count("run", run)

    def target(self, answers: int, elapsed: float) -> JobState:
        if answers <= self.wait:
            return JobState.WAIT
        if answers <= self.wait + self.run:
            return JobState.RUN
        return JobState.DONE


class Immediate(AfterPolls):
    """DONE already in the answer to the submission."""

    def __init__(self, outcome: DoneReason | str = DoneReason.SUCCEEDED):
        super().__init__(0, 0, outcome)

    def __repr__(self) -> str:
        return "Immediate()"


class AfterSeconds(Progression):
    """WAIT for `wait` seconds of the backend's clock after submission, RUN for `run` more, then DONE."""

    def __init__(self, wait: float = 0.0, run: float = 1.0, outcome: DoneReason | str = DoneReason.SUCCEEDED):
        super().__init__(outcome)
        self.wait = _seconds("wait", wait)
        self.run = _seconds("run", run)

    def target(self, answers: int, elapsed: float) -> JobState:
        if elapsed < self.wait:
            return JobState.WAIT
        if elapsed < self.wait + self.run:
            return JobState.RUN
        return JobState.DONE


class Scripted(Progression):
    """The n-th answer reports states[n-1]; after the list ends the last state stays.

    The list must be non-empty and must not go backwards (AGT-STATE-1): Scripted([WAIT]) is a
    job that never starts, Scripted([RUN]) one that never ends."""

    def __init__(self, states: Iterable[JobState | int | str], outcome: DoneReason | str = DoneReason.SUCCEEDED):
        super().__init__(outcome)
        parsed = []
        for s in states:
            try:
                parsed.append(JobState[s] if isinstance(s, str) else JobState(s))
            except (KeyError, ValueError):
                raise ValueError(f"not a job state: {s!r} (use WAIT, RUN or DONE)") from None
        if not parsed:
            raise ValueError("a script needs at least one state")
        for before, after in zip(parsed, parsed[1:]):
            if after < before:
                raise ValueError(f"a script must not go backwards: {before.name} then {after.name}")
        self.states = tuple(parsed)

    def target(self, answers: int, elapsed: float) -> JobState:
        return self.states[min(max(answers, 1), len(self.states)) - 1]


class Manual(Progression):
    """Never moves by itself: the test moves the job with FakeBackend.advance(job, event)."""

    def target(self, answers: int, elapsed: float) -> None:
        return None


def system_clock() -> float:
    return time.monotonic()
