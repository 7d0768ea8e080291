"""What a run's figures rest on, said in every run: offered load, steady state, replications that
split, one run counted as many, the worst hour and what bound it."""
from __future__ import annotations

import math

from simulator import bottleneck, stability
from simulator.api import Results
from simulator.search import WARM_TAUS, WINDOW_TAUS


def steady_lines(results: Results, a: stability.Analysis) -> list[str]:
    """Warnings on the steady state: instability, a run short for the relaxation time, MSER beyond
    the warm-up, a trend in the window, caches still filling after the warm-up."""
    sc, reps = results.scenario, results.replications
    out = []
    if a.unstable:
        out.append(f"no steady state: {a.verdict()}; the wait grows with run.duration, so every wait figure "
                   "here depends on the run's length")
    tau = a.relaxation_time
    run = sc.run
    if run.duration is not None and not a.unstable and not a.time_varying and math.isfinite(tau) and tau > 0:
        window = run.duration - run.warmup
        if run.warmup < WARM_TAUS * tau or window < WINDOW_TAUS * tau:
            out.append(f"too short for a steady state: the slots' relaxation time is about {_dur(tau)} "
                       f"(Odoni-Roth); this run's warm-up is {_dur(run.warmup)} and window {_dur(window)}: "
                       f"use run.warmup >= {_dur(WARM_TAUS * tau)} and run.duration >= "
                       f"{_dur((WARM_TAUS + WINDOW_TAUS) * tau)} (plan does this by itself)")
    cuts = [r.metrics.get("steady.mser_warmup") for r in reps if r.metrics.get("steady.mser_warmup") is not None]
    short = sum(1 for r in reps if r.metrics.get("steady.warmup_short"))
    if cuts:
        line = (f"steady state: MSER puts the end of the transient at {_dur(min(cuts))}"
                + (f" to {_dur(max(cuts))}" if max(cuts) > min(cuts) else "") + f" (run.warmup {_dur(run.warmup)})")
        if short:
            line += f"; after the warm-up in {short} of {len(reps)} replications: lengthen run.warmup"
        out.append(line)
    trend = [r for r in reps if r.metrics.get("steady.trending")]
    if trend:
        rise = max(r.metrics["steady.trend"] for r in trend)
        out.append(f"trend: the wait rises by up to {100 * rise:.0f} % over the window in {len(trend)} of "
                   f"{len(reps)} replications: not a steady state")
    if a.fill_time > run.warmup and sc.network.enabled and sc.network.cache and not run.warm_cache:
        out.append(f"the caches take about {_dur(a.fill_time)} to fill from a cold start, longer than the warm-up "
                   f"({_dur(run.warmup)}): the window measures part of the cold start (run.warm_cache = true "
                   "starts them filled)")
    return out


def split_line(results: Results) -> str | None:
    """Replications whose own verdicts name different binding resources (never averaged away)."""
    text = bottleneck.split_text(results.replications)
    return text or None


def same_run_line(results: Results) -> str | None:
    if results.same_run:
        return (f"the {len(results.replications)} replications are the same run (a trace draws nothing of its "
                "own): their spread says nothing; the waits' intervals are batch means over the one run")
    return None


def worst_bin(results: Results) -> dict | None:
    """The worst time bin's p95 wait and the slot utilisation in that bin (from the state samples)."""
    m = results.metrics
    keys = [k for k in m if k.startswith("bin.") and k.endswith(".wait_p95")]
    if not keys:
        return None
    worst = max(keys, key=lambda k: m[k]["mean"])
    i = int(worst.split(".")[1])
    run = results.scenario.run
    width, period = run.bin or 1.0, run.bin_period
    busy = cap = 0.0
    for rep in results.replications:
        cols = rep.sample_columns
        scaled = {c: results.scenario.agents[[g.name for g in results.scenario.agents].index(c[7:])].slots
                  for c in cols if c.startswith("agents.")}
        fixed = sum(g.count * g.slots for g in results.scenario.agents if not g.autoscale)
        for row in rep.samples:
            t = row[0] % period if period else row[0]
            if int(t / width) != i:
                continue
            busy += row[cols.index("run")]
            cap += fixed + sum(row[cols.index(c)] * s for c, s in scaled.items())
    start = i * width
    label = f"{int(start // 3600):02d}:{int(start % 3600 // 60):02d}" if period == 86400 else f"from {start:g} s"
    return {"bin": worst, "start": start, "label": label, "wait_p95": m[worst]["mean"],
            "slot_utilisation": busy / cap if cap else math.nan}


def worst_bin_line(results: Results) -> str | None:
    w = worst_bin(results)
    if w is None:
        return None
    util = w["slot_utilisation"]
    busy = f"; the slots are {100 * util:.0f} % busy in that bin" if util == util else ""
    return f"worst bin {w['label']} ({w['bin']}): p95 wait {w['wait_p95']:.4g} s{busy}"


def summary(results: Results, a: stability.Analysis) -> dict:
    """The parts of summary.json this module adds."""
    return {"offered_load": a.to_dict(), "steady_state": steady_lines(results, a),
            "replications_split": split_line(results), "same_run": results.same_run,
            "worst_bin": worst_bin(results)}


def _dur(s: float) -> str:
    if s >= 2 * 3600:
        return f"{s / 3600:.3g} h"
    if s >= 120:
        return f"{s / 60:.3g} min"
    return f"{s:.3g} s"
