"""The Python API: run a scenario's replications (in parallel if asked) and get plain results."""
from __future__ import annotations

import csv
import math
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from simulator import sanity, warmup
from simulator.engine import Simulation
from simulator.metrics import JobRecord
from simulator.scenario import Scenario
from simulator.stats import clip_interval, confidence_interval, is_fraction_metric, is_positive_metric
from simulator.workload import expected_span

STATE_COLUMNS = ("time", "staging", "client_queue", "wait", "run", "done")


@dataclass
class Replication:
    """One replication's plain results: flat metrics, state counts over time, RPC load bins."""

    index: int
    metrics: dict[str, float]
    samples: list[tuple]
    sample_columns: tuple[str, ...]
    rpc_bins: dict[str, list[float]]
    bin_width: float
    wait_cdf: tuple[list[float], list[float]]
    records: list[JobRecord] | None = None
    links: list[tuple] = field(default_factory=list)   # (agent, group, bytes, utilisation) per agent link
    series: dict | None = None      # the wait by submit time (warmup.WaitSeries.frozen()), warm-up included


@dataclass
class Results:
    """All replications and, for every metric, its mean with a 95 % confidence interval."""

    scenario: Scenario
    replications: list[Replication]
    metrics: dict[str, dict] = field(default_factory=dict)
    same_run: bool = False      # every replication gave the same figures (a trace): one run, not n

    def __post_init__(self) -> None:
        names: list[str] = []
        for r in self.replications:
            names += [k for k in r.metrics if k not in names]
        self.metrics = {k: confidence_interval([r.metrics.get(k, math.nan) for r in self.replications],
                                               positive=is_positive_metric(k)) for k in names}
        for k in names:
            if is_fraction_metric(k):
                self.metrics[k] = clip_interval(self.metrics[k])
        self.same_run = len(self.replications) > 1 and _identical(self.replications)
        if self.same_run:       # no zero-width interval: the replications are one run, said so
            for k, ci in self.metrics.items():
                if len(set(ci.get("values", []))) == 1:
                    self.metrics[k] = dict(ci, low=math.nan, high=math.nan, half_width=math.nan, method="same-run")
        if len(self.replications) == 1 or self.same_run:
            self._batch_means()

    def _batch_means(self) -> None:
        """One run (or replications that are the same run): batch-means intervals for the waits."""
        rep = self.replications[0]
        if rep.series is None:
            return
        window = (rep.metrics.get("window_start", 0.0), rep.metrics.get("window_end", 0.0))
        for k in ("wait_mean", "wait_p50", "wait_p95", "wait_p99"):
            if k in self.metrics and self.metrics[k]["mean"] == self.metrics[k]["mean"]:
                ci = warmup.batch_means(rep.series, *window, k, self.metrics[k]["mean"])
                if ci is not None:
                    self.metrics[k] = dict(ci, n=len(self.replications), values=self.metrics[k]["values"])

    def mean(self, name: str) -> float:
        return self.metrics[name]["mean"]

    def ci(self, name: str) -> tuple[float, float]:
        m = self.metrics[name]
        return (m["low"], m["high"])

    @property
    def records(self) -> list[JobRecord]:
        """Per-job records of every replication that kept them (run(..., keep_records=True))."""
        return [rec for r in self.replications for rec in (r.records or [])]

    def to_dict(self) -> dict:
        return {
            "replications": len(self.replications),
            "seed": self.scenario.run.seed,
            "metrics": self.metrics,
        }


def _identical(reps: list[Replication]) -> bool:
    """Replications that drew nothing of their own (a trace without random files): the same run."""
    keys = ("wait_mean", "wait_p95", "throughput", "jobs_completed")
    first = reps[0].metrics
    return all(r.metrics.get(k) == first.get(k) for r in reps[1:] for k in keys) and first.get("jobs_completed", 0) > 0


def run_replication(scenario: Scenario, index: int, out: str | Path | None = None, keep_records: bool = False,
                    progress: Callable[[float], None] | None = None) -> Replication:
    """Run replication `index` (its own seed stream). With `out`, jobs stream to jobs-r{index}.csv."""
    sanity.refuse_if_too_big(scenario)
    records: list[JobRecord] | None = [] if keep_records else None
    fh = writer = None
    sinks = []
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        fh = open(Path(out) / f"jobs-r{index}.csv", "w", newline="", encoding="utf-8")
        writer = csv.writer(fh)
        writer.writerow(JobRecord._fields)
        sinks.append(writer.writerow)
    if records is not None:
        sinks.append(records.append)
    sink = sinks[0] if len(sinks) == 1 else ((lambda r: [s(r) for s in sinks]) if sinks else None)
    try:
        sim = Simulation(scenario, index, sink=sink, progress=progress)
        sim.collector.series = warmup.WaitSeries(expected_span(scenario))
        metrics = sim.run()
    finally:
        if fh is not None:
            fh.close()
    columns = STATE_COLUMNS + tuple(f"run.{g}" for g in sim.group_names) + \
        tuple(f"agents.{sim.group_names[gi]}" for gi in sim.scalers)   # autoscaled groups' agents serving
    values, cum = sim.collector.wait.cdf()
    width = max(b.width for b in sim.rpc_bins)
    for b in sim.rpc_bins:
        b.coarsen_to(width)
    series = sim.collector.series.frozen()
    metrics.update(warmup.steady_metrics(series, (sim.window_start, sim.window_end), scenario.run.warmup))
    metrics.update(per_day(scenario, metrics))
    return Replication(index, metrics, sim.samples, columns,
                       {g: sim.rpc_bins[i].bins for i, g in enumerate(sim.group_names)}, width,
                       (values.tolist(), cum.tolist()), records, sim.staging.link_rows, series)


def per_day(scenario: Scenario, m: dict[str, float]) -> dict[str, float]:
    """Agent-hours and cost per day and per job at the statistics window's rate (no warm-up, no
    drain): a fixed group pays its count, an autoscaled one its mean agents serving in the window."""
    out: dict[str, float] = {}
    hours = cost = 0.0
    priced = False
    for g in scenario.agents:
        agents = m.get(f"agents_mean.{g.name}", g.count) if g.autoscale else g.count
        hours += agents * 24.0
        if g.price_per_hour is not None:
            cost += agents * 24.0 * g.price_per_hour
            priced = True
    out["agent_hours_per_day"] = hours
    jobs_per_day = m.get("throughput", math.nan) * 86400.0
    if priced:
        out["cost_per_day"] = cost
        out["cost_per_job"] = cost / jobs_per_day if jobs_per_day > 0 else math.nan
    return out


def _worker(args: tuple) -> Replication:
    return run_replication(*args)


def run(scenario: Scenario | str | Path, *, replications: int | None = None, out: str | Path | None = None,
        keep_records: bool = False, workers: int = 1, progress: Callable[[int, int], None] | None = None,
        executor=None) -> Results:
    """Run every replication of `scenario` and return Results (plain records and CIs).

    `workers` > 1 runs replications in that many processes; `executor` may be any
    concurrent.futures-style executor (a dask.distributed Client works too). `progress(done, total)`
    is called as replications finish. Results are identical whatever the parallelism: each
    replication's random streams come from (seed, replication index) only.
    """
    if not isinstance(scenario, Scenario):
        scenario = Scenario.from_toml(scenario)
    sanity.refuse_if_too_big(scenario)
    n = replications or scenario.run.replications
    jobs = [(scenario, i, out, keep_records) for i in range(n)]
    results: list[Replication] = []
    if executor is not None:
        futures = [executor.submit(_worker, j) for j in jobs]
        for f in futures:
            results.append(f.result())
            if progress:
                progress(len(results), n)
    elif workers > 1 and n > 1:
        with ProcessPoolExecutor(max_workers=min(workers, n)) as pool:
            for rep in pool.map(_worker, jobs):
                results.append(rep)
                if progress:
                    progress(len(results), n)
    else:
        for j in jobs:
            results.append(_worker(j))
            if progress:
                progress(len(results), n)
    results.sort(key=lambda r: r.index)
    return Results(scenario, results)


def default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 8))
