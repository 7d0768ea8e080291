"""Job states of the Agent protocol and the one transition table that drives every job."""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Callable


class JobState(enum.IntEnum):
    """The three states a job is reported in; values equal the wire's ResponseCode."""

    WAIT = 0
    RUN = 1
    DONE = 2


class DoneReason(str, enum.Enum):
    """Why a job is DONE. Internal: v1 does not put this on the wire (AGT-STATE-2)."""

    SUCCEEDED = "succeeded"    # process exited with status 0
    FAILED = "failed"          # process exited with a non-zero status
    KILLED = "killed"          # stopped by a limit of the agent (timeout, memory, signal)
    INTERRUPTED = "interrupted"  # the agent lost track of it (restart, agent failure)


class Event(str, enum.Enum):
    """What can happen to a job. Each legal (state, event) pair is in TRANSITIONS."""

    START = "start"            # the job's process was started
    SUCCEED = "succeed"
    FAIL = "fail"
    KILL = "kill"
    INTERRUPT = "interrupt"


# The whole state machine: (state, event) -> (new state, reason for DONE or None).
# A job may be interrupted or killed before it starts (agent failure, cancelled at stop).
# Success and failure require a process, hence only from RUN. DONE is final.
TRANSITIONS: dict[tuple[JobState, Event], tuple[JobState, DoneReason | None]] = {
    (JobState.WAIT, Event.START): (JobState.RUN, None),
    (JobState.WAIT, Event.INTERRUPT): (JobState.DONE, DoneReason.INTERRUPTED),
    (JobState.WAIT, Event.KILL): (JobState.DONE, DoneReason.KILLED),
    (JobState.RUN, Event.SUCCEED): (JobState.DONE, DoneReason.SUCCEEDED),
    (JobState.RUN, Event.FAIL): (JobState.DONE, DoneReason.FAILED),
    (JobState.RUN, Event.KILL): (JobState.DONE, DoneReason.KILLED),
    (JobState.RUN, Event.INTERRUPT): (JobState.DONE, DoneReason.INTERRUPTED),
}

EVENT_FOR_REASON = {
    DoneReason.SUCCEEDED: Event.SUCCEED,
    DoneReason.FAILED: Event.FAIL,
    DoneReason.KILLED: Event.KILL,
    DoneReason.INTERRUPTED: Event.INTERRUPT,
}


class IllegalTransition(Exception):
    """Raised by advance() for an event that is not allowed in the job's current state."""

    def __init__(self, state: JobState, event: Event):
        self.state = state
        self.event = event
        allowed = sorted(e.value for (s, e) in TRANSITIONS if s == state)
        super().__init__(
            f"illegal transition: event {event.value!r} in state {state.name} "
            f"(allowed: {', '.join(allowed) or 'none, the state is final'})"
        )


def next_state(state: JobState, event: Event) -> tuple[JobState, DoneReason | None]:
    """Look up (state, event) in TRANSITIONS; raise IllegalTransition when absent."""
    try:
        return TRANSITIONS[(JobState(state), Event(event))]
    except KeyError:
        raise IllegalTransition(JobState(state), Event(event)) from None


def is_forward(old: JobState, new: JobState) -> bool:
    """True when a poller may see `new` after `old` (AGT-STATE-1: never backwards)."""
    return int(new) >= int(old)


Listener = Callable[["JobStateMachine", JobState, JobState, Event], None]


@dataclass
class JobStateMachine:
    """One job's state. `advance()` is the only way to change it; it refuses illegal moves.

    The reference agent drives it with real processes, the simulator with SimPy events and
    the fakes with scripted progressions, so the protocol's semantics live here once.
    """

    state: JobState = JobState.WAIT
    reason: DoneReason | None = None
    history: list[tuple[JobState, Event]] = field(default_factory=list)
    listeners: list[Listener] = field(default_factory=list, repr=False)

    def advance(self, event: Event | str) -> JobState:
        if event.__class__ is not Event:  # hot path in the simulator: no conversion for members
            event = Event(event)
        try:
            new, reason = TRANSITIONS[(self.state, event)]
        except KeyError:
            raise IllegalTransition(self.state, event) from None
        old = self.state
        self.state, self.reason = new, reason
        self.history.append((new, event))
        for listener in self.listeners:
            listener(self, old, new, event)
        return new

    def can(self, event: Event | str) -> bool:
        return (self.state, Event(event)) in TRANSITIONS

    @property
    def done(self) -> bool:
        return self.state is JobState.DONE

    @classmethod
    def restore(cls, state: JobState | int, reason: DoneReason | str | None = None) -> "JobStateMachine":
        """Rebuild a machine from a journal row (reason only for DONE)."""
        state = JobState(state)
        if state is JobState.DONE and reason is None:
            raise ValueError("a DONE job needs its DoneReason to be restored")
        if state is not JobState.DONE and reason is not None:
            raise ValueError(f"a {state.name} job has no DoneReason (got {reason!r})")
        return cls(state=state, reason=DoneReason(reason) if reason is not None else None)
