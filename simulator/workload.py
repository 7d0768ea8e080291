"""Job sources: arrival times, runtimes, input files by popularity and python requirements."""
from __future__ import annotations

import heapq
import math
import random
from typing import Iterator

import numpy as np

from simulator import traces
from simulator.arrivals import ARRIVALS
from simulator.scenario import Scenario


class FileCatalog:
    """The files jobs read: `catalog` files with sizes drawn once, picked by Zipf or uniformly.

    File k (0-based) has popularity proportional to 1/(k+1)^s under Zipf. Draws are made in
    numpy batches of 4096 from the Generator handed in, so a job costs a few list pops.
    """

    BATCH = 4096

    def __init__(self, scenario: Scenario, rng: random.Random, gen: np.random.Generator, files=None,
                 offset: int = 0):
        files = files or scenario.workload.files
        self.offset = offset     # a job class's files follow the previous classes' in one id space
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
        idx = np.searchsorted(self.cdf, u, side="right")
        self._buf = (idx + self.offset if self.offset else idx).tolist()
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
    """Iterates (submit time, runtime or None, python text or None, job class) for one replication.

    Poisson and deterministic arrivals stop at run.jobs or run.duration; traces stop at their end
    (or earlier at run.jobs / run.duration). Trace times are multiplied by workload.time_scale and
    shifted so the first job arrives at time 0. With a rate profile, arrivals are a Poisson process
    of that time-varying rate; with several job classes, their arrivals are merged in time order
    (class 0 draws from `rng`, class k from `class_rngs[k - 1]`).
    """

    def __init__(self, scenario: Scenario, rng: random.Random, class_rngs: list[random.Random] = ()):
        self.scenario = scenario
        self.rng = rng
        self.class_rngs = list(class_rngs)
        self.trace_stats = traces.TraceStats()

    def __iter__(self) -> Iterator[tuple[float, float | None, str | None, int]]:
        w, run = self.scenario.workload, self.scenario.run
        limit = run.jobs if run.jobs is not None else math.inf
        horizon = run.duration if run.duration is not None else math.inf
        classes = self.scenario.job_classes
        if len(classes) > 1:
            rngs = [self.rng] + self.class_rngs
            merged = heapq.merge(*(_tagged(_times(c, rngs[k]), k) for k, c in enumerate(classes)))
            for n, (t, k) in enumerate(merged):
                if n >= limit or t >= horizon:
                    return
                yield t, None, None, k
        elif not ARRIVALS[w.arrivals].from_trace:
            for n, t in enumerate(_times(w, self.rng)):
                if n >= limit or t >= horizon:
                    return
                yield t, None, None, 0
        else:
            origin = None
            for n, job in enumerate(ARRIVALS[w.arrivals].read(w.trace, self.trace_stats)):
                if n >= limit:
                    return
                if origin is None:
                    origin = job.submit
                t = (job.submit - origin) * w.time_scale
                if t >= horizon:
                    return
                yield t, job.runtime * w.time_scale, job.python, 0


def _tagged(times: Iterator[float], k: int) -> Iterator[tuple[float, int]]:
    for t in times:
        yield t, k


def _times(w, rng: random.Random) -> Iterator[float]:
    """Arrival times of one class: its rate profile, or its arrival process at its rate."""
    if w.profile is not None:
        return w.profile.arrivals(rng)
    return ARRIVALS[w.arrivals].times(w.rate, rng)


def expected_span(scenario: Scenario) -> float:
    """A guess of the simulated time span, for the default sampling interval."""
    w, run = scenario.workload, scenario.run
    if run.duration is not None:
        return run.duration
    if w.rate or w.profile is not None or len(scenario.job_classes) > 1:
        rate = sum(c.mean_rate for c in scenario.job_classes)
        return run.jobs / rate + max(c.runtime.mean for c in scenario.job_classes)  # type: ignore[operator]
    first = last = None
    for n, job in enumerate(ARRIVALS[w.arrivals].read(w.trace, None)):
        if run.jobs is not None and n >= run.jobs:
            break
        first = job.submit if first is None else first
        last = job.submit + job.runtime
    if first is None:
        return 1.0
    return max(1.0, (last - first) * w.time_scale)


class JobClasses:
    """Per job class of one replication: its runtime sampler, python mix, failure probability and
    file catalog, and the merged arrivals. Class 0 draws from the replication's own streams (so a
    one-class workload draws exactly as before classes existed), class k from `streams.for_class(k)`;
    class k's file ids follow the earlier classes' in one id space."""

    def __init__(self, sc: Scenario, st):
        classes = sc.job_classes
        extra = [st.for_class(k) for k in range(1, len(classes))]
        self.arrivals = Arrivals(sc, st.arrivals, [e[0] for e in extra])
        self.runtimes = [w.runtime.sampler(st.service) if w.runtime else None for w in classes]
        self.mixes = []
        for w in classes:
            texts = [t for t, _ in w.python]
            self.mixes.append((texts, list(np.cumsum([x for _, x in w.python]) / sum(x for _, x in w.python))))
        self.fail_ps = [w.fail_probability for w in classes]
        self.catalogs: list[FileCatalog] = []
        self.file_sizes: list[float] = []
        if sc.network.enabled:
            for k, w in enumerate(classes):
                rng, gen = (st.catalog or random.Random(0), st.files) if k == 0 else (extra[k - 1][1], extra[k - 1][2])
                cat = FileCatalog(sc, rng, gen, w.files, offset=len(self.file_sizes))
                self.file_sizes.extend(cat.sizes)
                self.catalogs.append(cat)
