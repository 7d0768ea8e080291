"""Job sources: arrival times, runtimes, input files by popularity and python requirements."""
from __future__ import annotations

import itertools
import math
import random
from typing import Iterator

import numpy as np

from simulator import traces
from simulator.scenario import Scenario


class FileCatalog:
    """The files jobs read: `catalog` files with sizes drawn once, picked by Zipf or uniformly.

    File k (0-based) has popularity proportional to 1/(k+1)^s under Zipf. Draws are made in
    numpy batches of 4096 from the Generator handed in, so a job costs a few list pops.
    """

    BATCH = 4096

    def __init__(self, scenario: Scenario, rng: random.Random, gen: np.random.Generator):
        files = scenario.workload.files
        draw_size = files.size.sampler(rng)
        self.sizes = [max(0.0, draw_size()) for _ in range(files.catalog)]
        self.count = files.count.sampler(rng)
        self.fixed_count = int(round(files.count.mean)) if files.count.kind == "fixed" else None
        self.gen = gen
        n = files.catalog
        if files.popularity == "zipf":
            weights = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** files.zipf_s
        else:
            weights = np.ones(n)
        self.cdf = np.cumsum(weights / weights.sum())
        self.cdf[-1] = 1.0
        self._buf: list[int] = []

    def _refill(self) -> None:
        u = self.gen.random(self.BATCH)
        self._buf = np.searchsorted(self.cdf, u, side="right").tolist()
        self._buf.reverse()

    def draw(self) -> tuple[int, ...]:
        """The input files of one job (at least one, AGT-RUN-2), the first being the entry point."""
        k = self.fixed_count if self.fixed_count is not None else max(1, int(round(self.count())))
        k = max(1, k)
        buf = self._buf
        if len(buf) < k:
            self._refill()
            buf = self._buf
        if k == 1:
            return (buf.pop(),)
        return tuple(buf.pop() for _ in range(k))


class Arrivals:
    """Iterates (submit time, runtime or None, python text or None) for one replication.

    Poisson and deterministic arrivals stop at run.jobs or run.duration; traces stop at their end
    (or earlier at run.jobs / run.duration). Trace times are multiplied by workload.time_scale and
    shifted so the first job arrives at time 0.
    """

    def __init__(self, scenario: Scenario, rng: random.Random):
        self.scenario = scenario
        self.rng = rng
        self.trace_stats = traces.TraceStats()

    def __iter__(self) -> Iterator[tuple[float, float | None, str | None]]:
        w, run = self.scenario.workload, self.scenario.run
        limit = run.jobs if run.jobs is not None else math.inf
        horizon = run.duration if run.duration is not None else math.inf
        if w.arrivals in ("poisson", "deterministic"):
            gap = 1.0 / w.rate
            expo = self.rng.expovariate
            t = 0.0
            for n in itertools.count():
                if n >= limit:
                    return
                t += expo(w.rate) if w.arrivals == "poisson" else gap
                if t >= horizon:
                    return
                yield t, None, None
        else:
            origin = None
            for n, job in enumerate(traces.read_trace(w.arrivals, w.trace, self.trace_stats)):
                if n >= limit:
                    return
                if origin is None:
                    origin = job.submit
                t = (job.submit - origin) * w.time_scale
                if t >= horizon:
                    return
                yield t, job.runtime * w.time_scale, job.python


def expected_span(scenario: Scenario) -> float:
    """A guess of the simulated time span, for the default sampling interval."""
    w, run = scenario.workload, scenario.run
    if run.duration is not None:
        return run.duration
    if w.rate:
        return run.jobs / w.rate + (w.runtime.mean if w.runtime else 0.0)  # type: ignore[operator]
    first = last = None
    for n, job in enumerate(traces.read_trace(w.arrivals, w.trace)):
        if run.jobs is not None and n >= run.jobs:
            break
        first = job.submit if first is None else first
        last = job.submit + job.runtime
    if first is None:
        return 1.0
    return max(1.0, (last - first) * w.time_scale)
