"""Input sanity before a run: refuse a model that cannot fit in memory, warn on values that cap the
run or make one resource binding by orders of magnitude (a unit slip, like 10 for 10MB/s)."""
from __future__ import annotations

import math

from simulator import stability
from simulator.checks import ScenarioError

AGENT_BYTES = 1600.0        # one agent of the model, measured (tracemalloc, 100,000 agents: 1.53 kB)
JOB_BYTES = 1500.0          # one job in flight with its state machine and events
CACHE_ENTRY_BYTES = 100.0   # one file in one agent's cache
HEADROOM = 0.8              # of the memory available


def available_memory() -> float:
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    return math.inf


def memory_estimate(sc) -> tuple[float, str, object]:
    """(bytes, the key that drives it, its value): agents, their caches, the jobs in flight."""
    best = (0.0, "", None)
    total = 0.0
    for i, g in enumerate(sc.agents):
        n = g.autoscale.maximum if g.autoscale else g.count
        files = 0.0
        if sc.network.enabled and sc.network.cache:
            for c in sc.job_classes:
                per = sc.network.cache_capacity / max(c.files.size.mean, 1.0)
                files += min(c.files.catalog, per)
        b = n * (AGENT_BYTES + files * CACHE_ENTRY_BYTES)
        total += b
        key = f"agents[{i}].autoscale.max" if g.autoscale else f"agents[{i}].count"
        if b > best[0]:
            best = (b, key, n)
    a = stability.analyse(sc) if sc.workload.trace is None else None
    if a is not None and a.slot_load is not None and a.mean_runtime > 0:
        inflight = a.slot_load.offered if a.slot_load.stable else a.rate * (sc.run.duration or 3600.0)
        jb = inflight * JOB_BYTES
        total += jb
        if jb > best[0]:
            best = (jb, "workload.rate", a.rate)
    return total, best[1], best[2]


def refuse_if_too_big(sc) -> None:
    """ScenarioError naming the key when the model would not fit in the memory available."""
    need, key, value = memory_estimate(sc)
    have = available_memory()
    if need > HEADROOM * have:
        raise ScenarioError(key, value, f"the model would need about {_bytes(need)} of memory, more than "
                                        f"{100 * HEADROOM:.0f} % of the {_bytes(have)} available")


def warnings(sc) -> list[str]:
    """Values that cap the run or make one resource binding by orders of magnitude."""
    out = []
    run, w = sc.run, sc.workload
    if run.jobs is not None and run.duration is not None and w.trace is None:
        rate = sum(c.mean_rate or 0.0 for c in sc.job_classes)
        expected = rate * run.duration
        if expected < run.jobs:
            out.append(f"run.jobs = {run.jobs} is capped by run.duration = {run.duration:g} s: about "
                       f"{expected:.0f} jobs arrive in that time (raise run.duration to {run.jobs / rate:.0f} s "
                       "for them all)")
    if w.trace is not None:
        return out
    a = stability.analyse(sc)
    loads = [ld for ld in a.loads if ld.rho_cold > 0 and math.isfinite(ld.rho_cold)]
    if len(loads) >= 2:     # judged at a cold start: a slip in a bandwidth shows before the caches fill
        top = max(loads, key=lambda ld: ld.rho_cold)
        rest = max((ld.rho_cold for ld in loads if ld is not top), default=0.0)
        if top.rho_cold >= 10 and top.rho_cold / max(rest, 1e-12) >= 1000:
            out.append(f"{top.setting} makes {top.label} binding by orders of magnitude: offered "
                       f"{top.rho_cold:.3g} times its capacity ({_unit_hint(top)}); a unit slip?")
    return out


def _unit_hint(ld) -> str:
    if ld.unit == "B/s":
        return f"{ld.capacity:g} B/s; bandwidths are bytes/s unless written with units, like '10MB/s' or '1Gbit/s'"
    return f"{ld.capacity:g} {ld.unit}"


def _bytes(b: float) -> str:
    if b == math.inf:
        return "unlimited"
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if b >= size:
            return f"{b / size:.3g} {unit}"
    return f"{b:.0f} B"
