"""The plan's search loop over one key (see simulator/search.py for how a plan decides)."""
from __future__ import annotations

import math
from concurrent.futures import ProcessPoolExecutor
from typing import Callable

from simulator import bottleneck, sanity, stability
from simulator.api import Results, _worker
from simulator.search import (MAX_DURATION, Point, decide, first_pass, replication_split, run_length, scenario_at,
                              steady_problem, unknown_metric)


class Planner:
    """Evaluates values of `key` (cached) and searches for the smallest one meeting `target`."""

    def __init__(self, scenario, key: str, target, *, criterion: str = "ci", replications: int | None = None,
                 max_replications: int = 12, workers: int = 1, executor=None, resolution: float | None = None,
                 progress: Callable[[int, int], None] | None = None):
        self.sc, self.key, self.target, self.criterion = scenario, key, target, criterion
        n0 = replications or max(scenario.run.replications, 3 if criterion == "ci" else 1)
        if not replications and workers > 1:
            n0 = -(-n0 // workers) * workers     # a whole number of waves: idle workers cost as much
        self.n0 = n0
        self.max_reps = max(max_replications, self.n0)
        self.workers, self.executor, self.progress = workers, executor, progress
        self.resolution = resolution
        self.points: dict = {}
        self._pool = None

    # --- replications --------------------------------------------------------------------------
    def _run(self, sc, first: int, n: int) -> list:
        tasks = [(sc, r, None, False) for r in range(first, first + n)]
        if self.executor is not None:
            return [f.result() for f in [self.executor.submit(_worker, t) for t in tasks]]
        if self.workers > 1 and n > 1:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(max_workers=self.workers)
            return list(self._pool.map(_worker, tasks))
        return [_worker(t) for t in tasks]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def analysis(self, v) -> stability.Analysis:
        return stability.analyse(scenario_at(self.sc, self.key, v))

    # --- one value -------------------------------------------------------------------------------
    def evaluate(self, v) -> Point:
        if v in self.points:
            return self.points[v]
        sc = scenario_at(self.sc, self.key, v)
        a = stability.analyse(sc)
        if a.unstable:
            p = self.points[v] = Point(v, "unstable", a, verdict=a.verdict())
            return p
        sanity.refuse_if_too_big(sc)
        sc, notes = run_length(sc, a)
        reps = self._run(sc, 0, self.n0)
        res = Results(sc, reps)
        problem = steady_problem(res)
        if problem and sc.run.duration is not None and sc.run.duration < MAX_DURATION:
            cut = max(r.metrics.get("steady.mser_warmup", 0.0) for r in reps)
            warm = min(max(sc.run.warmup, 1.5 * cut), sc.run.duration)
            sc = sc.with_values({"run.duration": sc.run.duration + warm, "run.warmup": warm})
            notes.append(f"{problem}: run again with warm-up {warm:.0f} s, duration {sc.run.duration:.0f} s")
            reps = self._run(sc, 0, self.n0)
            res = Results(sc, reps)
            problem = steady_problem(res)
        status = self._status(res)
        while status == "unsure" and len(reps) < self.max_reps and not problem:
            more = min(max(self.workers, 2), self.max_reps - len(reps))
            reps += self._run(sc, len(reps), more)
            res = Results(sc, reps)
            status = self._status(res)
        if problem:
            notes.append(f"unsettled: {problem}")
            status = "unsettled" if status == "meets" else status
        split = replication_split(self.target, res)
        if split:
            notes.append(split)
        flat = bottleneck.means(res.metrics)
        p = Point(v, status, a, res.metrics[self.target.metric], res, bottleneck.verdict(flat).text,
                  sc.run.duration, sc.run.warmup, notes)
        self.points[v] = p
        if self.progress:
            self.progress(len(self.points), 0)
        return p

    def _status(self, res: Results) -> str:
        if self.target.metric not in res.metrics:
            raise unknown_metric("--target", self.target.metric, res.metrics)
        return decide(self.target, res.metrics[self.target.metric], self.criterion)

    # --- the search --------------------------------------------------------------------------------
    def stable_min(self, low, high):
        """Smallest value in [low, high] whose analytic offered load is below every capacity (bisection;
        None when even `high` is unstable)."""
        if self.analysis(high).unstable:
            return None
        if not self.analysis(low).unstable:
            return low
        lo, hi = low, high
        while self._gap(lo, hi):
            mid = self._mid(lo, hi)
            if self.analysis(mid).unstable:
                lo = mid
            else:
                hi = mid
        return hi

    def estimate(self, low, high) -> tuple[object, dict | None]:
        """Smallest value in [low, high] whose first-pass prediction meets the target, with the figures."""
        fp = first_pass(self.analysis(high), self.target, None)
        if fp is None or not self.target.met_by(fp["value"]):
            return low, None
        lo, hi = low, high
        fp_lo = first_pass(self.analysis(lo), self.target, None)
        if fp_lo is not None and self.target.met_by(fp_lo["value"]):
            return lo, fp_lo
        while self._gap(lo, hi):
            mid = self._mid(lo, hi)
            f = first_pass(self.analysis(mid), self.target, None)
            if f is not None and self.target.met_by(f["value"]):
                hi, fp = mid, f
            else:
                lo = mid
        return hi, first_pass(self.analysis(hi), self.target, None)

    def _gap(self, lo, hi) -> bool:
        return hi - lo > (self.resolution or 1) * (1 + 1e-9)

    def _mid(self, lo, hi):
        if self.resolution is None:
            return (lo + hi) // 2
        return lo + math.floor((hi - lo) / self.resolution / 2) * self.resolution or (lo + hi) / 2

    def step(self, v, k: int):
        return v + (self.resolution or 1) * (2 ** k)

    def search(self, low, high) -> tuple[object, str, list[str]]:
        """(answer or None, reason, notes): the smallest value meeting the target (module docstring)."""
        notes: list[str] = []
        smin = self.stable_min(low, high)
        if smin is None:
            return None, f"every value of {self.key} in {low}..{high} is unstable ({self.evaluate(high).verdict})", notes
        if smin > low:
            below = self._prev(smin)
            self.evaluate(below)      # analytic only: unstable, never simulated
            notes.append(f"{self.key} <= {below:g}: {self.points[below].verdict}")
        start, fp = self.estimate(smin, high)
        if fp is not None:
            notes.append(first_pass_text(self.key, start, fp, self.target))
        v, k, lo, best, stale = start, 0, (self._prev(smin) if smin > low else None), None, 0
        while not self.evaluate(v).met:
            p = self.points[v]
            lo = v
            if p.metric is not None and p.metric["mean"] == p.metric["mean"]:
                if best is None or _better(self.target, p.metric["mean"], self.points[best].metric["mean"]):
                    best, stale = v, 0
                else:
                    stale += 1
            if stale >= 2:
                tried = ", ".join(f"{x:g}" for x in sorted(self.points) if x > best)
                return None, (f"{self.target.metric} stopped improving with {self.key}: best "
                              f"{self.points[best].metric['mean']:.4g} at {best:g}, no better at {tried}"), \
                    notes + [f"more {self.key} does not help: at {best:g}: {self.points[best].verdict}"]
            if v >= high:
                return None, f"no value of {self.key} in {low:g}..{high:g} meets {self.target}", notes
            v = min(high, self.step(start, k))
            k += 1
        hi = v
        lo = self._prev(low) if lo is None else lo
        while self._gap(lo, hi):
            mid = self._mid(lo, hi)
            if self.evaluate(mid).met:
                hi = mid
            else:
                lo = mid
        return hi, f"the smallest value meeting {self.target} at 95 % confidence", notes + self._checks(hi)

    def _prev(self, v):
        return v - (self.resolution or 1)

    def _checks(self, answer) -> list[str]:
        """What the search could not separate, and where the response was not monotone."""
        out = []
        pts = sorted(self.points.values(), key=lambda p: p.value)
        unsure = [p.value for p in pts if p.value < answer and p.status in ("unsure", "unsettled")]
        if unsure:
            out.append(f"could not separate {min(unsure):g}..{answer:g}: at {', '.join(f'{u:g}' for u in unsure)} "
                       f"the interval straddles the target after {self.max_reps} replications (the answer is "
                       f"{answer:g}; {min(unsure):g} may meet it too)")
        above = [p.value for p in pts if p.value > answer and p.status in ("fails", "unsure", "unsettled")]
        if above:
            out.append(f"not monotone: {', '.join(f'{u:g}' for u in above)} above the answer did not meet the target")
        return out


def _better(target, a: float, b: float) -> bool:
    return a < b if target.op in ("<=", "<") else a > b


def first_pass_text(key: str, start, fp: dict, target) -> str:
    return (f"first pass: offered load a = {fp['a']:.4g} busy slots; Erlang C (M/G/c, one shared queue) "
            f"predicts {target.metric} {fp['value']:.3g} with c = {fp['slots']} slots at {key} = {start:g} "
            f"(square-root staffing c = a + beta sqrt(a), beta = {fp['beta']:.2f}); the search starts there")
