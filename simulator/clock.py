"""Callback events on SimPy's clock, and the documented order of events at equal times."""
from __future__ import annotations

from typing import Any, Callable

import simpy

# Tie-breaking rule: events due at the same simulated time run in this order of class, and
# within a class in the order they were scheduled (SimPy's event counter). So a job that ends
# at t frees its slot before a job submitted at t asks for one, and a poll at t sees a job
# that ended at t as DONE. The state sampler runs last and sees the settled state.
P_AGENT = 2      # agent failure or repair
P_END = 3        # a job's process ends (the agent starts the next WAIT job at once)
P_TRANSFER = 4   # a file transfer completes (StageInFiles returns when its files are in)
P_RUNJOB = 5     # a RunJob reaches the agent
P_ARRIVAL = 6    # a client submits a new job (or resubmits one)
P_SEEN = 7       # a client's poll that sees DONE
P_SAMPLE = 8     # the state-count sampler


class Call:
    """A SimPy-compatible event that calls `fn(arg)` when processed. Far cheaper than a process.

    SimPy's `Environment.step()` pops `(time, priority, id, event)`, runs `event.callbacks` and
    checks `event._ok`; this class offers exactly that, with slots and one shared callback list.
    `cancelled` events are skipped (used when a transfer's rate changes).
    """

    __slots__ = ("callbacks", "_ok", "_value", "fn", "arg", "cancelled")

    def __init__(self, fn: Callable[[Any], None], arg: Any):
        self.callbacks = _DISPATCH
        self._ok = True
        self._value = None
        self.fn = fn
        self.arg = arg
        self.cancelled = False


def _dispatch(event: Call) -> None:
    if not event.cancelled:
        event.fn(event.arg)


_DISPATCH = [_dispatch]


class Clock:
    """Schedules Calls on a SimPy environment: `at(delay, priority, fn, arg)`."""

    def __init__(self, env: simpy.Environment):
        self.env = env
        self._schedule = env.schedule

    def at(self, delay: float, priority: int, fn: Callable[[Any], None], arg: Any = None) -> Call:
        ev = Call(fn, arg)
        self._schedule(ev, priority, delay)
        return ev

    @property
    def now(self) -> float:
        return self.env._now
