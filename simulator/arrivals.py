"""Arrival processes: the registry a scenario's `workload.arrivals` names.

A process is either driven by a rate (`times(rate, rng)` yields arrival times for ever; the
scenario then needs `workload.rate` or, if `profile` is allowed, a time-varying rate profile) or
read from a trace file (`read(path, stats)` yields `traces.TraceJob`s; the scenario then needs
`workload.trace`). A new process is one `ARRIVALS.register(...)`: the scenario's validation,
the engine's arrivals and the docs' key table follow from the entry.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from simulator import traces
from simulator.registry import Registry


@dataclass(frozen=True)
class ArrivalProcess:
    """One arrival process: rate-driven (`times`) or trace-driven (`read`)."""

    times: Callable[[float, random.Random], Iterator[float]] | None = None
    read: Callable[[Path, traces.TraceStats | None], Iterator[traces.TraceJob]] | None = None
    profile: bool = False     # accepts workload.profile (a time-varying rate) instead of a rate

    @property
    def from_trace(self) -> bool:
        return self.read is not None


def poisson(rate: float, rng: random.Random) -> Iterator[float]:
    """Exponential gaps of mean 1/rate, one `rng.expovariate` draw per arrival."""
    expo = rng.expovariate
    t = 0.0
    while True:
        t += expo(rate)
        yield t


def deterministic(rate: float, rng: random.Random) -> Iterator[float]:
    """One arrival every 1/rate seconds, the first at 1/rate (no draw)."""
    gap = 1.0 / rate
    t = 0.0
    while True:
        t += gap
        yield t


ARRIVALS: Registry[ArrivalProcess] = Registry("arrival process")
ARRIVALS.register("poisson", ArrivalProcess(times=poisson, profile=True),
                  "exponential gaps at `rate` jobs/s (or a `profile`)")
ARRIVALS.register("deterministic", ArrivalProcess(times=deterministic), "one job every 1/`rate` s")
ARRIVALS.register("swf", ArrivalProcess(read=traces.read_swf), "a Standard Workload Format `trace`")
ARRIVALS.register("csv", ArrivalProcess(read=traces.read_csv), "a CSV `trace` (submit,runtime[,python])")
