"""Replications until a relative precision is reached (a sequential procedure with a cap)."""
from __future__ import annotations

import math
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Callable

from simulator.api import Replication, Results, _worker
from simulator.scenario import Scenario

MIN_REPLICATIONS = 3


@dataclass(frozen=True)
class Precision:
    """Stop when the 95 % interval of `metric` lies within +-rel of its mean (the larger side, for
    an asymmetric interval), after at least MIN_REPLICATIONS and at most `cap` replications."""

    rel: float
    metric: str = "wait_p95"
    cap: int = 50

    def reached(self, results: Results) -> bool:
        m = results.metrics.get(self.metric)
        if m is None:
            raise KeyError(f"--precision: unknown metric {self.metric!r}; known: {', '.join(sorted(results.metrics))}")
        return relative_error(m) <= self.rel

    def describe(self, results: Results) -> str:
        m = results.metrics[self.metric]
        err = relative_error(m)
        state = "reached" if err <= self.rel else f"NOT reached (cap of {self.cap} replications)"
        return (f"precision {state}: {self.metric} within +-{100 * err:.1f} % "
                f"(asked {100 * self.rel:.1f} %) after {len(results.replications)} replications")


def relative_error(m: dict) -> float:
    mean, low, high = m["mean"], m["low"], m["high"]
    if not (low == low and high == high) or mean != mean:
        return math.inf
    if mean == 0:
        return 0.0 if high == low == 0 else math.inf
    return max(high - mean, mean - low) / abs(mean)


def run_batches(tasks: list[tuple], workers: int, executor=None) -> list[Replication]:
    if executor is not None:
        return [f.result() for f in [executor.submit(_worker, t) for t in tasks]]
    if workers > 1 and len(tasks) > 1:
        with ProcessPoolExecutor(max_workers=min(workers, len(tasks))) as pool:
            return list(pool.map(_worker, tasks))
    return [_worker(t) for t in tasks]


def run_until(scenario: Scenario, precision: Precision, *, start: int | None = None, workers: int = 1,
              executor=None, out=None, progress: Callable[[int, int], None] | None = None) -> Results:
    """Replications 0, 1, ... in batches of `workers` until the precision is reached or the cap is.
    Replication r always draws from (seed, r), so the result is the same whatever the batch size
    up to where it stops (it may stop one batch later with more workers)."""
    n = max(MIN_REPLICATIONS, start or scenario.run.replications)
    n = min(n, precision.cap)
    reps = run_batches([(scenario, i, out, False) for i in range(n)], workers, executor)
    while True:
        results = Results(scenario, sorted(reps, key=lambda r: r.index))
        if progress:
            progress(len(reps), precision.cap)
        if precision.reached(results) or len(reps) >= precision.cap:
            return results
        more = min(max(1, workers), precision.cap - len(reps))
        reps += run_batches([(scenario, len(reps) + i, out, False) for i in range(more)], workers, executor)
