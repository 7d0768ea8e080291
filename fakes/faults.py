"""Fault injection for the fake agent: fail calls once or every Nth time, add latency."""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import grpc

METHOD_NAMES = ("StageInFiles", "RunJob", "GetCapabilities", "GetOutcome", "CancelJob", "WatchJobs")


def _method(method: str | None) -> str | None:
    if method is not None and method not in METHOD_NAMES:
        raise ValueError(f"unknown method {method!r}; use one of {', '.join(METHOD_NAMES)} or None for all")
    return method


def _code(code: grpc.StatusCode | str) -> grpc.StatusCode:
    if isinstance(code, str):
        try:
            code = grpc.StatusCode[code]
        except KeyError:
            raise ValueError(f"unknown status code {code!r}") from None
    if not isinstance(code, grpc.StatusCode) or code is grpc.StatusCode.OK:
        raise ValueError(f"a fault needs a non-OK grpc.StatusCode, got {code!r}")
    return code


@dataclass
class Fault:
    """One injected failure. `remaining` counts one-shot uses left; `every` > 0 fails each Nth
    matching call instead. With `after_apply` the call changes the agent's state first and only
    the answer is lost, as when a connection drops after the server acted. A `slow` fault lets
    the call change the state, then holds the answer until the client's deadline has passed
    (at most `cap` seconds): the client sees DEADLINE_EXCEEDED; a client with no deadline, or
    one further away than `cap`, gets the answer late. With `after_events` (WatchJobs only) the
    stream sends that many events, then ends with `code` (a stream broken mid-way)."""

    code: grpc.StatusCode
    details: str
    method: str | None = None
    remaining: int = 1
    every: int = 0
    after_apply: bool = False
    seen: int = 0
    slow: bool = False
    cap: float = 2.0
    after_events: int | None = None

    def matches(self, method: str) -> bool:
        return self.method is None or self.method == method


class FaultPlan:
    """The faults and latencies in force for one fake agent. Thread-safe; `clear()` removes all."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._latency: dict[str | None, float] = {}

    def fail_next(self, code: grpc.StatusCode | str, details: str | None = None, *, method: str | None = None,
                  times: int = 1, after_apply: bool = False) -> Fault:
        """Fail the next `times` calls (of `method`, or of any method) with `code`."""
        code = _code(code)
        if isinstance(times, bool) or not isinstance(times, int) or times < 1:
            raise ValueError(f"times must be a whole number >= 1, got {times!r}")
        fault = Fault(code, details or f"injected fault: {code.name}", _method(method), remaining=times,
                      after_apply=bool(after_apply))
        with self._lock:
            self._faults.append(fault)
        return fault

    def fail_every(self, n: int, code: grpc.StatusCode | str, details: str | None = None, *,
                   method: str | None = None, after_apply: bool = False) -> Fault:
        """Fail every n-th call (of `method`, or of any method) with `code`, until clear()."""
        code = _code(code)
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a whole number >= 1, got {n!r}")
        fault = Fault(code, details or f"injected fault: {code.name} (every {n} calls)", _method(method),
                      remaining=0, every=n, after_apply=bool(after_apply))
        with self._lock:
            self._faults.append(fault)
        return fault

    def slow_next(self, method: str | None = None, *, times: int = 1, cap: float = 2.0) -> Fault:
        """Answer the next `times` calls (of `method`, or of any method) after the caller's deadline:
        the call is applied, the answer comes too late (DEADLINE_EXCEEDED at the client)."""
        if isinstance(times, bool) or not isinstance(times, int) or times < 1:
            raise ValueError(f"times must be a whole number >= 1, got {times!r}")
        if isinstance(cap, bool) or not isinstance(cap, (int, float)) or not 0 < cap <= 60:
            raise ValueError(f"cap must be a number of seconds in (0, 60], got {cap!r}")
        fault = Fault(grpc.StatusCode.DEADLINE_EXCEEDED, "injected fault: answer slower than the caller's deadline",
                      _method(method), remaining=times, after_apply=True, slow=True, cap=float(cap))
        with self._lock:
            self._faults.append(fault)
        return fault

    def break_stream(self, after: int, code: grpc.StatusCode | str = "UNAVAILABLE", *, times: int = 1) -> Fault:
        """End the next `times` WatchJobs streams with `code` after `after` events (0: before any)."""
        code = _code(code)
        for name, value, low in (("after", after, 0), ("times", times, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be a whole number >= {low}, got {value!r}")
        fault = Fault(code, f"injected fault: stream ended with {code.name} after {after} event(s)", "WatchJobs",
                      remaining=times, after_events=after)
        with self._lock:
            self._faults.append(fault)
        return fault

    def set_latency(self, seconds: float, method: str | None = None) -> None:
        """Delay every call (of `method`, or of any method when None) by `seconds`; 0 removes it."""
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds) \
                or seconds < 0:
            raise ValueError(f"latency must be a finite number of seconds >= 0, got {seconds!r}")
        with self._lock:
            self._latency[_method(method)] = float(seconds)

    def latency(self, method: str) -> float:
        with self._lock:
            return self._latency.get(None, 0.0) + self._latency.get(method, 0.0)

    def take(self, method: str) -> Fault | None:
        """Count this call against every matching fault; return the one that fires, if any."""
        fired = None
        with self._lock:
            for fault in list(self._faults):
                if not fault.matches(method):
                    continue
                fault.seen += 1
                if fault.every:
                    if fired is None and fault.seen % fault.every == 0:
                        fired = fault
                elif fired is None:
                    fired = fault
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.remove(fault)
        return fired

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
            self._latency.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._faults)
