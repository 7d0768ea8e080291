"""Offered load of every modelled resource, computed from the scenario alone (no simulation).

A resource whose offered load reaches its capacity has no steady state: the queue in front of it
grows for as long as the run lasts, so no waiting-time target can be met there (the point is
"unstable"). The figures here are the first pass of a plan and a line of every run:

- slots: work offered = sum over job classes of rate x mean runtime, against the slots of every
  group times their speed (and availability, with failures);
- the file source and the agent links: bytes per second of cache misses, the per-agent miss ratio
  from Che's approximation of an LRU cache under independent requests with the scenario's
  popularity (jobs spread evenly over agents: cache_affinity does better), 1 without a cache;
  at a cold start every request misses (`cold_bytes`) until the caches fill (`fill_time`);
- RPC CPU per agent: StageInFiles, RunJob and the polls of a job of mean runtime.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from simulator import analytic
from simulator.polling import PollSchedule


@dataclass(frozen=True)
class Load:
    """The offered load of one resource: `offered` and `capacity` in `unit` (busy slots, B/s, CPU s/s)."""

    key: str
    label: str
    kind: str          # slots, source, link, rpc
    offered: float
    capacity: float
    unit: str
    setting: str       # the scenario key that sets the capacity
    cold: float | None = None   # offered at a cold start (every cache empty), when it differs

    @property
    def rho_cold(self) -> float:
        """The offered load while the caches are empty (the same as rho for what caches do not change)."""
        if self.cold is None:
            return self.rho
        return 0.0 if self.capacity == math.inf else self.cold / self.capacity if self.capacity > 0 else math.inf

    @property
    def rho(self) -> float:
        if self.capacity == math.inf:
            return 0.0
        if self.capacity <= 0:
            return math.inf
        return self.offered / self.capacity

    @property
    def stable(self) -> bool:
        return self.rho < 1.0


@dataclass
class Analysis:
    """The offered loads of a scenario, with what the slots' queue and the caches imply."""

    loads: list[Load]
    rate: float                       # jobs/s (mean over a profile)
    mean_runtime: float               # seconds (rate-weighted over classes)
    runtime_scv: float                # squared coefficient of variation of the runtime
    arrival_scv: float                # 1 for Poisson, 0 deterministic, measured for a trace
    slots: float                      # slots x speed x availability, every group
    time_varying: bool = False
    cold_bytes: float = 0.0           # bytes/s the source must deliver while every cache is empty
    steady_bytes: float = 0.0         # bytes/s of misses once the caches hold what they keep
    fill_time: float = 0.0            # seconds until 90 % of the cold-start excess misses are gone
    notes: list[str] = field(default_factory=list)

    @property
    def unstable(self) -> list[Load]:
        return [ld for ld in self.loads if not ld.stable]

    @property
    def slot_load(self) -> Load | None:
        return next((ld for ld in self.loads if ld.kind == "slots"), None)

    @property
    def relaxation_time(self) -> float:
        """Odoni-Roth relaxation time of the slots' queue (inf when unstable; 0 without slots)."""
        sl = self.slot_load
        if sl is None or self.mean_runtime <= 0:
            return 0.0
        return analytic.relaxation_time(self.slots / self.mean_runtime, sl.rho, self.arrival_scv + self.runtime_scv)

    def verdict(self) -> str:
        """'stable (...)' or 'unstable: the slots of group workers get 100 % ...' naming the resource."""
        bad = self.unstable
        if bad:
            return "unstable: " + "; ".join(f"{ld.label} {'are' if ld.kind == 'slots' else 'is'} offered "
                                            f"{_pct(ld.rho)} of capacity" for ld in bad)
        top = max(self.loads, key=lambda ld: ld.rho, default=None)
        return "stable" + (f" (the most loaded: {top.label} at {_pct(top.rho)})" if top else "")

    def lines(self) -> list[str]:
        """A table: each resource's offered load against its capacity, then the notes."""
        out = []
        for ld in self.loads:
            cap = "unlimited" if ld.capacity == math.inf else _fmt(ld.capacity, ld.unit)
            out.append(f"  {ld.label:<40} offered {_fmt(ld.offered, ld.unit):>14} of {cap:<14} {_pct(ld.rho):>6}")
        return out + [f"  note: {n}" for n in self.notes]

    def to_dict(self) -> dict:
        return {"verdict": self.verdict(), "relaxation_time": self.relaxation_time, "fill_time": self.fill_time,
                "cold_bytes_per_s": self.cold_bytes, "steady_bytes_per_s": self.steady_bytes,
                "resources": [{"key": ld.key, "label": ld.label, "offered": ld.offered, "capacity": ld.capacity,
                               "unit": ld.unit, "rho": ld.rho, "setting": ld.setting} for ld in self.loads],
                "notes": self.notes}


def _pct(x: float) -> str:
    return f"{100 * x:.0f} %" if math.isfinite(x) else "inf"


def _fmt(x: float, unit: str) -> str:
    if unit == "B/s":
        return f"{x * 8 / 1e9:.3g} Gbit/s" if x >= 1e8 else f"{x / 1e6:.3g} MB/s" if x >= 1e4 else f"{x:.3g} B/s"
    return f"{x:.4g} {unit}"


def runtime_scv(dist) -> float:
    """Squared coefficient of variation of a distribution (inf when its variance is)."""
    k, p = dist.kind, dict(dist.params)
    if k == "fixed":
        return 0.0
    if k == "exponential":
        return 1.0
    if k == "uniform":
        m = (p["low"] + p["high"]) / 2
        return ((p["high"] - p["low"]) ** 2 / 12) / (m * m) if m else 0.0
    if k == "lognormal":
        return math.expm1(p["sigma"] ** 2)
    if k == "gamma":
        return 1.0 / p["shape"]
    a = p["alpha"]
    return 1.0 / (a * (a - 2)) if a > 2 else math.inf


def _classes(sc) -> list[tuple[float, float, float, float, object]]:
    """(rate, mean runtime, runtime scv, arrival scv, files) per job class; a trace's from its jobs."""
    w = sc.workload
    if w.trace is not None:
        from simulator.arrivals import ARRIVALS
        subs, runs = [], []
        for n, job in enumerate(ARRIVALS[w.arrivals].read(w.trace, None)):
            if sc.run.jobs is not None and n >= sc.run.jobs:
                break
            subs.append(job.submit * w.time_scale)
            runs.append(job.runtime)
        if len(subs) < 2:
            return []
        gaps = np.diff(np.asarray(subs))
        r = np.asarray(runs, dtype=float)
        span = max(subs[-1] - subs[0], 1e-9)
        rt = r if w.runtime is None else np.full(1, w.runtime.mean)
        scv_a = float(gaps.var() / gaps.mean() ** 2) if gaps.mean() > 0 else 0.0
        scv_s = float(rt.var() / rt.mean() ** 2) if rt.mean() > 0 else 0.0
        return [((len(subs) - 1) / span, float(rt.mean()), scv_s, scv_a, w.files)]
    out = []
    for c in sc.job_classes:
        rate = c.mean_rate or 0.0
        scv_a = 0.0 if c.arrivals == "deterministic" else 1.0
        out.append((rate, c.runtime.mean, runtime_scv(c.runtime), scv_a, c.files))
    return out


def _availability(g) -> float:
    f = g.failures
    if f is None:
        return 1.0
    up, down = f.time_to_failure.mean, f.time_to_repair.mean
    return up / (up + down) if up + down > 0 else 1.0


def analyse(sc) -> Analysis:
    """The offered load of every resource of scenario `sc` (see the module's docstring)."""
    classes = _classes(sc)
    rate = sum(c[0] for c in classes)
    work = sum(c[0] * c[1] for c in classes)
    mean_rt = work / rate if rate else 0.0
    scv_s = sum(c[0] * c[2] for c in classes) / rate if rate else 0.0
    scv_a = sum(c[0] * c[3] for c in classes) / rate if rate else 1.0
    agents = [(g, g.autoscale.maximum if g.autoscale else g.count) for g in sc.agents]
    slots = sum(n * g.slots * g.speed * _availability(g) for g, n in agents)
    names = ", ".join(g.name for g in sc.agents)
    key = f"slots.{sc.agents[0].name}" if len(sc.agents) == 1 else "slots"
    label = f"the slots of group {names}" if len(sc.agents) == 1 else f"the slots of groups {names}"
    setting = "agents.count" if len(sc.agents) == 1 else "agents[*].count"
    a = Analysis([Load(key, label, "slots", work, slots, "busy slots", setting)], rate, mean_rt, scv_s, scv_a, slots,
                 time_varying=any(c.profile is not None for c in sc.job_classes))
    if a.time_varying:
        a.notes.append("time-varying rate: the offered load is the mean over a period; the peak may exceed it")
    if any(g.autoscale for g, _ in agents):
        a.notes.append("autoscaled groups counted at their maximum")
    n_agents = sum(n for _, n in agents)
    if sc.network.enabled and n_agents and rate:
        _network(sc, a, classes, n_agents)
    _rpc(sc, a, rate, mean_rt, agents, n_agents)
    return a


def _network(sc, a: Analysis, classes, n_agents: int) -> None:
    net = sc.network
    cold = steady = 0.0
    fill = 0.0
    for rate, mean_rt, _, _, files in classes:
        per_job = max(1.0, files.count.mean) * files.size.mean
        cold += rate * per_job
        miss, t_fill = _miss_ratio(sc, rate * max(1.0, files.count.mean) / n_agents, files)
        steady += rate * per_job * miss
        fill = max(fill, t_fill)
    a.cold_bytes, a.steady_bytes, a.fill_time = cold, steady, fill
    a.loads.append(Load("source", "the file source", "source", steady, net.source_bandwidth, "B/s",
                        "network.source_bandwidth", cold))
    for i, g in enumerate(sc.agents):
        link = g.link_bandwidth or net.link_bandwidth
        setting = f"agents[{i}].link_bandwidth" if g.link_bandwidth else "network.link_bandwidth"
        a.loads.append(Load(f"link.{g.name}", f"each agent link of {g.name}", "link", steady / n_agents, link, "B/s",
                            setting, cold / n_agents))
    if net.source_bandwidth == math.inf:
        a.notes.append(f"the source is unlimited: it must deliver {_fmt(steady, 'B/s')} once the caches are warm "
                       f"and {_fmt(cold, 'B/s')} at a cold start")
    elif cold >= net.source_bandwidth > steady:
        a.notes.append(f"a cold start asks {_fmt(cold, 'B/s')} of a {_fmt(net.source_bandwidth, 'B/s')} source "
                       f"until the caches fill (about {fill:.0f} s): the start is overloaded even though the "
                       "steady state is not (run.warm_cache starts with the caches filled)")


def _miss_ratio(sc, per_agent: float, files) -> tuple[float, float]:
    """(steady miss ratio per file request, cold-start fill time) for one agent's cache."""
    net = sc.network
    if not net.cache:
        return 1.0, 0.0
    n = files.catalog
    p = 1.0 / np.arange(1, n + 1, dtype=float) ** files.zipf_s if files.popularity == "zipf" else np.ones(n)
    p /= p.sum()
    size = max(files.size.mean, 1e-12)
    k = net.cache_capacity / size
    if k >= n:
        miss = 0.0
    else:
        lo, hi = 1e-9, 1e15     # Che's characteristic time T: sum(1 - exp(-r p T)) = K
        for _ in range(200):
            mid = math.sqrt(lo * hi)
            if float(np.sum(-np.expm1(-per_agent * p * mid))) < k:
                lo = mid
            else:
                hi = mid
        miss = float(np.sum(p * np.exp(-per_agent * p * hi)))
    goal = miss + 0.1 * (1 - miss)
    lo, hi = 0.0, 1e12
    if float(np.sum(p * np.exp(-per_agent * p * hi))) > goal:
        return miss, math.inf
    for _ in range(200):
        mid = (lo + hi) / 2
        if float(np.sum(p * np.exp(-per_agent * p * mid))) > goal:
            lo = mid
        else:
            hi = mid
    return miss, hi


def _rpc(sc, a: Analysis, rate: float, mean_rt: float, agents, n_agents: int) -> None:
    c = sc.clients
    if not n_agents or not (c.rpc_cost_poll or c.rpc_cost_stage or c.rpc_cost_run):
        return
    polls = 0
    if c.poll_interval > 0:
        polls = PollSchedule(c.poll_interval, c.poll_backoff, c.poll_max_interval).first_at_or_after(0.0, mean_rt)[1]
    per_job = c.rpc_cost_stage + c.rpc_cost_run + polls * c.rpc_cost_poll
    a.loads.append(Load("rpc", "the RPC CPU of each agent", "rpc", rate / n_agents * per_job, 1.0, "CPU s/s",
                        "clients.rpc_cost_*"))
