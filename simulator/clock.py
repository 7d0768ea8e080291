"""Callback events on SimPy's clock, and the documented order of events at equal times."""
from __future__ import annotations

import heapq
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

    SimPy's `Environment.step()` pops `(time, priority, id, event)` from the environment's heap,
    runs `event.callbacks` and checks `event._ok`; this class offers exactly that, with slots and
    one shared callback list. `cancel()` turns a pending call into a no-op (a transfer whose
    rate changed is rescheduled rather than removed from the heap).
    """

    __slots__ = ("callbacks", "fn", "arg")
    _ok = True          # read by SimPy's step(); never failed
    _value = None

    def __init__(self, fn: Callable[[Any], None], arg: Any):
        self.callbacks = _DISPATCH
        self.fn = fn
        self.arg = arg

    def cancel(self) -> None:
        self.fn = _noop


def _noop(_arg: Any) -> None:
    return None


def _dispatch(event: Call) -> None:
    event.fn(event.arg)


_DISPATCH = [_dispatch]


class Clock:
    """Schedules Calls on a SimPy environment: `at(delay, priority, fn, arg)`.

    Pushes onto the environment's own heap with its own event counter, exactly as
    `Environment.schedule()` does, minus one call per event (this is the engine's hot path).
    """

    def __init__(self, env: simpy.Environment):
        self.env = env
        self._queue = env._queue
        self._eid = env._eid
        self._push = heapq.heappush

    def at(self, delay: float, priority: int, fn: Callable[[Any], None], arg: Any = None) -> Call:
        ev = Call(fn, arg)
        self._push(self._queue, (self.env._now + delay, priority, next(self._eid), ev))
        return ev

    @property
    def now(self) -> float:
        return self.env._now
