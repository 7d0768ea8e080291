"""What a run measures: flat per-job records, streaming statistics and the per-replication summary."""
from __future__ import annotations

import math
from typing import NamedTuple

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

    `spread` is O(1): the partial first and last bins get their share directly, the bins in
    between through a difference array that `values()` sums up. At most `max_bins` bins: when
    time runs past them, neighbours are merged pairwise and the width doubles, so memory stays
    bounded however long the run.
    """

    def __init__(self, width: float, max_bins: int = 1024):
        self.width = width
        self.max_bins = max_bins
        self._direct: list[float] = []
        self._delta: list[float] = []

    @property
    def bins(self) -> list[float]:
        out, acc = [], 0.0
        for d, x in zip(self._delta, self._direct):
            acc += d
            out.append(x + acc)
        return out

    def _merge(self) -> None:
        b = self.bins
        b += [0.0] * (len(b) % 2)
        self._direct = [b[k] + b[k + 1] for k in range(0, len(b), 2)]
        self._delta = [0.0] * len(self._direct)
        self.width *= 2

    def _grow(self, i: int) -> int:
        """Make bin i exist (coarsening first if needed); return its index at the current width."""
        while i >= self.max_bins:
            self._merge()
            i //= 2
        n = len(self._direct)
        if i >= n:
            self._direct.extend([0.0] * (i + 1 - n))
            self._delta.extend([0.0] * (i + 1 - n))
        return i

    def coarsen_to(self, width: float) -> None:
        """Merge bins pairwise until this series is at least `width` wide (to align series)."""
        while self.width < width * (1 - 1e-9):
            self._merge()

    def point(self, t: float, value: float) -> None:
        i = int(t / self.width)
        if i >= len(self._direct):
            i = self._grow(i)
        self._direct[i] += value

    def spread(self, t0: float, t1: float, value: float) -> None:
        w = self.width
        i0, i1 = int(t0 / w), int(t1 / w)
        if t1 <= t0 or i0 == i1:   # the common case: one bin
            self.point(t0, value)
            return
        if i1 >= len(self._direct):
            self._grow(i1)
            w = self.width
            i0, i1 = int(t0 / w), int(t1 / w)
            if i0 == i1:
                self._direct[i0] += value
                return
        rate = value / (t1 - t0)
        self._direct[i0] += rate * ((i0 + 1) * w - t0)
        self._direct[i1] += rate * (t1 - i1 * w)
        if i1 > i0 + 1:
            self._delta[i0 + 1] += rate * w
            self._delta[i1] -= rate * w


class Collector:
    """Accumulates statistics of one replication in memory independent of the number of done jobs.

    Wait, queue wait and turnaround go to log histograms; per-job records go only to the
    engine's optional sink (a CSV writer or a list), so a million-job run keeps nothing per done job.
    """

    def __init__(self) -> None:
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
        # where the wait goes (started attempts): client queue, StageInFiles + RunJob, agent WAIT
        self.split_client = self.split_staging = self.split_agent = 0.0
        self.bins: "TimeBins | None" = None   # per time-of-day statistics, when asked
        self.by_class: "ClassStats | None" = None   # per job class, with several classes
        self.series = None   # a warmup.WaitSeries: every started job's wait by submit time, warm-up included
        self._n = 0

    def record(self, job, outcome: str, final: bool) -> None:
        """Count one finished attempt (an engine Job: submit, start, end, seen, polls, bytes, ...)."""
        series = self.series
        if series is not None and job.start == job.start:
            series.t_add(job.submit)                 # two bound appends; binned every 4096 jobs
            series.w_add(job.start - job.submit)
        if not job.warm:
            if series is not None and len(series._t) >= series.FLUSH:
                series.flush()
            return
        if outcome == "rejected":
            self.rejected += 1
            return
        start = job.start
        if start == start:  # not NaN: it ran
            self.started += 1
            self.wait.add(start - job.submit)
            qw = (job.stage_start - job.submit) + (start - job.run_submit)   # client queue + agent WAIT
            self.queue_wait.add(qw)
            if qw > 1e-12:
                self.waited += 1
            self.split_client += job.stage_start - job.submit
            self.split_staging += job.run_submit - job.stage_start
            self.split_agent += start - job.run_submit
            if self.bins is not None:
                self.bins.add(job.submit, start - job.submit)
            if self.by_class is not None:
                self.by_class.add(job.cls, start - job.submit)
        self.sojourn_sum += job.end - job.submit
        self.sojourn_n += 1
        self.polls += job.polls
        if job.hits or job.misses:
            self.bytes_staged += job.bytes
            self.hits += job.hits
            self.misses += job.misses
        if outcome == "interrupted":
            self.interrupted += 1
            if not final:
                self.resubmitted += 1
        elif outcome == "failed":
            self.failed += 1
        if final:
            self.logical_done += 1
            self.completed += 1
            self.turnaround.add(job.seen - job.first_submit)
        self._n += 1
        if self._n & 0xFFF == 0:
            if series is not None:
                series.flush()
            self.wait.maybe_flush()
            self.queue_wait.maybe_flush()
            self.turnaround.maybe_flush()


class TimeBins:
    """Wait statistics by the submit time's bin (e.g. hour of day): a coarse log histogram each.

    Bin i covers [i w, (i+1) w) of (t mod period) when a period is given (24 h: hour of day),
    of t otherwise (at most `MAX` bins; later jobs go to the last). Memory is constant.
    """

    MAX = 400

    def __init__(self, width: float, period: float | None):
        self.width = width
        self.period = period
        n = int(math.ceil(period / width - 1e-9)) if period else self.MAX
        self.n = max(1, min(n, self.MAX))
        self.hists: list[LogHistogram | None] = [None] * self.n

    def add(self, t: float, wait: float) -> None:
        if self.period:
            t = t % self.period
        i = min(int(t / self.width), self.n - 1)
        h = self.hists[i]
        if h is None:
            h = self.hists[i] = LogHistogram(ratio=1.01)
        h.add(wait)
        if len(h._buf) >= h.BUFFER:
            h._flush()

    def metrics(self) -> dict[str, float]:
        out = {}
        for i, h in enumerate(self.hists):
            if h is not None and h.count():
                out[f"bin.{i:03d}.jobs"] = h.count()
                out[f"bin.{i:03d}.wait_mean"] = h.mean()
                out[f"bin.{i:03d}.wait_p95"] = h.quantile(0.95)
        p95 = [v for k, v in out.items() if k.endswith(".wait_p95")]
        if p95:
            out["wait_p95_worst_bin"] = max(p95)    # the peak hour's p95: what a target on the peak reads
        return out


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
    for part, total in (("client_queue", c.split_client), ("staging", c.split_staging), ("wait", c.split_agent)):
        out[f"wait_split.{part}"] = total / c.started if c.started else math.nan
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


class ClassStats:
    """Wait statistics per job class (several classes in one workload): a log histogram each."""

    def __init__(self, names: list[str]):
        self.names = names
        self.hists = [LogHistogram(ratio=1.01) for _ in names]

    def add(self, k: int, wait: float) -> None:
        h = self.hists[k]
        h.add(wait)
        if len(h._buf) >= h.BUFFER:
            h._flush()

    def metrics(self) -> dict[str, float]:
        out = {}
        for name, h in zip(self.names, self.hists):
            out[f"class.{name}.jobs"] = h.count()
            out[f"class.{name}.wait_mean"] = h.mean()
            out[f"class.{name}.wait_p95"] = h.quantile(0.95)
        return out
