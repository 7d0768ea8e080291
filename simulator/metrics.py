"""What a run measures: flat per-job records, streaming statistics and the per-replication summary."""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

from simulator.stats import LogHistogram


class JobRecord(NamedTuple):
    """One attempt of one job, as written to jobs.csv (times in simulated seconds)."""

    job: int             # attempt id, unique in the run
    logical: int         # the client's job (a resubmission gets a new attempt id, same logical)
    attempt: int
    group: str
    agent: int
    python: str
    submit: float        # this attempt's submission (client side)
    first_submit: float  # the logical job's first submission (turnaround counts from here)
    stage_start: float
    stage_end: float
    run_submit: float    # RunJob accepted by the agent: the job is WAIT from here
    start: float         # RUN from here (NaN if it never started)
    end: float           # DONE from here
    done_seen: float     # the client's first poll that saw DONE
    polls: int
    bytes_staged: float  # bytes read from the source for this job (cache misses)
    cache_hits: int
    cache_misses: int
    outcome: str         # succeeded, failed, interrupted, rejected
    warmup: bool         # submitted during the warm-up (excluded from statistics)

    @property
    def wait(self) -> float:
        return self.start - self.submit

    @property
    def turnaround(self) -> float:
        return self.done_seen - self.first_submit


class Binned:
    """Values added at instants or spread evenly over intervals, summed in time bins.

    At most `max_bins` bins: when time runs past them, neighbours are merged pairwise and the
    width doubles, so memory stays bounded however long the run.
    """

    def __init__(self, width: float, max_bins: int = 1024):
        self.width = width
        self.max_bins = max_bins
        self.bins: list[float] = []

    def _grow(self, i: int) -> int:
        """Make bin i exist (coarsening first if needed); return its index at the current width."""
        while i >= self.max_bins:
            b = self.bins + [0.0] * (len(self.bins) % 2)
            self.bins = [b[k] + b[k + 1] for k in range(0, len(b), 2)]
            self.width *= 2
            i //= 2
        if i >= len(self.bins):
            self.bins.extend([0.0] * (i + 1 - len(self.bins)))
        return i

    def coarsen_to(self, width: float) -> None:
        """Merge bins pairwise until this series is at least `width` wide (to align series)."""
        while self.width < width * (1 - 1e-9):
            b = self.bins + [0.0] * (len(self.bins) % 2)
            self.bins = [b[k] + b[k + 1] for k in range(0, len(b), 2)]
            self.width *= 2

    def point(self, t: float, value: float) -> None:
        i = self._grow(int(t / self.width))
        self.bins[i] += value

    def spread(self, t0: float, t1: float, value: float) -> None:
        if t1 <= t0:
            self.point(t0, value)
            return
        self._grow(int(t1 / self.width))
        w, rate = self.width, value / (t1 - t0)
        i, last = int(t0 / w), min(int(t1 / w), len(self.bins) - 1)
        while i <= last:
            lo, hi = max(t0, i * w), min(t1, (i + 1) * w)
            if hi > lo:
                self.bins[i] += rate * (hi - lo)
            i += 1


class Collector:
    """Accumulates statistics of one replication in memory independent of the number of done jobs.

    Wait, queue wait and turnaround go to log histograms; records go to `sink` (a CSV writer or
    a list) only if one is given, so a million-job run keeps nothing per done job.
    """

    def __init__(self, sink: Callable[[JobRecord], None] | None):
        self.sink = sink
        self.wait = LogHistogram()
        self.queue_wait = LogHistogram()
        self.turnaround = LogHistogram()
        self.completed = 0          # final attempts that ended, in the window
        self.started = 0
        self.waited = 0             # attempts whose queue wait was > 0
        self.interrupted = 0
        self.resubmitted = 0
        self.rejected = 0
        self.failed = 0
        self.polls = 0
        self.logical_done = 0
        self.bytes_staged = 0.0
        self.bytes_requested = 0.0
        self.hits = 0
        self.misses = 0
        self.sojourn_sum = 0.0      # Little's law: sum of (end - submit) over window attempts
        self.sojourn_n = 0
        self._n = 0

    def record(self, r: JobRecord, final: bool) -> None:
        if self.sink is not None:
            self.sink(r)
        if r.warmup:
            return
        if r.outcome == "rejected":
            self.rejected += 1
            return
        if r.start == r.start:  # not NaN: it ran
            self.started += 1
            self.wait.add(r.start - r.submit)
            qw = (r.stage_start - r.submit) + (r.start - r.run_submit)   # client queue + agent WAIT
            self.queue_wait.add(qw)
            if qw > 1e-12:
                self.waited += 1
        self.sojourn_sum += r.end - r.submit
        self.sojourn_n += 1
        self.polls += r.polls
        self.bytes_staged += r.bytes_staged
        self.hits += r.cache_hits
        self.misses += r.cache_misses
        if r.outcome == "interrupted":
            self.interrupted += 1
            if not final:
                self.resubmitted += 1
        elif r.outcome == "failed":
            self.failed += 1
        if final:
            self.logical_done += 1
            self.completed += 1
            self.turnaround.add(r.done_seen - r.first_submit)
        self._n += 1
        if self._n & 0xFFF == 0:
            self.wait.maybe_flush()
            self.queue_wait.maybe_flush()
            self.turnaround.maybe_flush()


def summarize(c: Collector, *, window: tuple[float, float], arrivals_in_window: int, ended_in_window: int,
              in_system_area: float,
              group_busy: dict[str, float], group_capacity: dict[str, int], group_rpc: dict[str, float],
              group_count: dict[str, int], unfinished: int, bytes_requested: float) -> dict:
    """The flat metrics of one replication (every value a number, keyed by a dotted name)."""
    t0, t1 = window
    span = max(t1 - t0, 1e-12)
    out: dict[str, float] = {}
    for name, h in (("wait", c.wait), ("queue_wait", c.queue_wait), ("turnaround", c.turnaround)):
        out[f"{name}_mean"] = h.mean()
        for q in (50, 95, 99):
            out[f"{name}_p{q}"] = h.quantile(q / 100)
    out["p_wait"] = c.waited / c.started if c.started else math.nan
    out["throughput"] = ended_in_window / span   # jobs reaching DONE per second inside the window
    out["jobs_completed"] = c.completed
    out["jobs_started"] = c.started
    out["jobs_interrupted"] = c.interrupted
    out["jobs_resubmitted"] = c.resubmitted
    out["jobs_failed"] = c.failed
    out["jobs_rejected"] = c.rejected
    out["jobs_unfinished"] = unfinished
    out["polls_per_job"] = c.polls / c.logical_done if c.logical_done else math.nan
    out["bytes_staged"] = c.bytes_staged
    out["bytes_requested"] = bytes_requested
    lookups = c.hits + c.misses
    out["cache_hit_ratio"] = c.hits / lookups if lookups else math.nan
    for g, busy in group_busy.items():
        out[f"utilisation.{g}"] = busy / (group_capacity[g] * span)
        out[f"rpc_load.{g}"] = group_rpc[g] / (group_count[g] * span)
    lam = arrivals_in_window / span
    L = in_system_area / span
    W = c.sojourn_sum / c.sojourn_n if c.sojourn_n else math.nan
    out["little_L"] = L
    out["little_lambda_W"] = lam * W
    out["little_rel_error"] = abs(L - lam * W) / L if L > 0 else 0.0
    out["window_start"], out["window_end"] = t0, t1
    return out
