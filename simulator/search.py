"""The capacity plan's search: stability first, an analytic first pass, replications added near the
target until each decision is significant, runs long enough for the queue's relaxation time.

How a plan decides (docs/SIMULATOR.md, "How a plan decides"):

1. **Stability.** Every value's offered load is computed analytically (`simulator.stability`); a
   value whose offered load reaches a resource's capacity is *unstable*: it is never simulated and
   never an answer. The smallest stable value is found by bisection on the analytic figures.
2. **First pass.** For waiting-time targets, Erlang C (M/G/c with Allen-Cunneen's correction, one
   shared queue: a lower bound for dispatch on arrival) gives the smallest value predicted to meet
   the target; the simulated search starts there.
3. **Run length.** A point whose relaxation time (Odoni-Roth) is long for its run gets a longer run
   (warm-up >= 2 relaxation times, window >= 4), up to `MAX_DURATION`; MSER then checks that the
   warm-up covered the transient and the window has no trend; if not, the run is doubled once,
   then the point is *unsettled* (not an answer).
4. **Significance.** A point *meets* when its 95 % interval lies on the target's side, *fails*
   when it lies on the other; otherwise replications are added (a batch at a time) up to
   `max_replications`, after which it stays *unsure*.
5. **The answer** is the smallest value that meets, every smaller value evaluated failing, unsure
   or unstable; unsure values just below it are the range the plan could not separate. The
   response is taken as monotone only between evaluated points, and every evaluated pair that
   contradicts it is reported.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from simulator import analytic, bottleneck, stability
from simulator.api import Results
from simulator.checks import ScenarioError


class SweepError(ValueError):
    """A malformed --vary or --target value (the message names it)."""


def unknown_metric(flag: str, name: str, known) -> SweepError:
    """An unknown metric name, with the closest known names."""
    import difflib
    names = sorted(k for k in known if not k.startswith(("bin.", "class.")))
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
    return SweepError(f"{flag}: unknown metric {name!r}{hint}; known: {', '.join(names)}")


MAX_DURATION = 4 * 3600.0   # a point's run is extended for its relaxation time up to this
WARM_TAUS, WINDOW_TAUS = 2.0, 4.0


@dataclass
class Point:
    """One value of the plan: its status (unstable, meets, fails, unsure, unsettled) and what showed it."""

    value: float
    status: str
    analysis: stability.Analysis
    metric: dict | None = None
    results: Results | None = None
    verdict: str = ""
    duration: float | None = None
    warmup: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def met(self) -> bool:
        return self.status == "meets"


def first_pass(analysis: stability.Analysis, target, slots_per_unit: float | None) -> dict | None:
    """The analytic estimate of the target metric at this point, by Erlang C (M/G/c) on the slots.

    Returns {"value": predicted metric, "slots": c, "a": offered, "beta": square-root staffing}
    for wait_pNN / wait_mean / queue_wait_* / p_wait targets; None for others."""
    sl = analysis.slot_load
    name = target.metric
    if sl is None or analysis.mean_runtime <= 0 or analysis.rate <= 0:
        return None
    import re
    if not (re.fullmatch(r"(queue_)?wait_p\d+", name) or name in ("wait_mean", "queue_wait_mean", "p_wait")):
        return None
    c = int(math.floor(sl.capacity + 1e-9))
    lam, mu = analysis.rate, 1.0 / analysis.mean_runtime * (sl.capacity / c if c else 1.0)
    scv = (analysis.arrival_scv + analysis.runtime_scv) / 2
    if c < 1:
        return None
    if name.endswith("_mean"):
        pred = analytic.mgc_wait_mean(lam, mu, c, scv)
    elif name == "p_wait":
        pred = analytic.erlang_c(lam, mu, c) if lam < c * mu else 1.0
    else:
        q = int(name.rsplit("_p", 1)[1]) / 100
        pred = analytic.mgc_wait_quantile(lam, mu, c, q, scv)
    a = sl.offered
    return {"value": pred, "slots": c, "a": a, "beta": (c - a) / math.sqrt(a) if a > 0 else math.nan}


def decide(target, m: dict, criterion: str) -> str:
    """meets / fails / unsure for a metric's interval (or its mean with criterion 'mean')."""
    lo, hi, mean = m.get("low"), m.get("high"), m["mean"]
    if mean != mean:
        return "unsure"
    if criterion == "mean" or lo is None or lo != lo:
        return "meets" if target.met_by(mean) else "fails"
    good_side = hi if target.op in ("<=", "<") else lo
    bad_side = lo if target.op in ("<=", "<") else hi
    if target.met_by(good_side):
        return "meets"
    if not target.met_by(bad_side):
        return "fails"
    return "unsure"


def run_length(sc, analysis: stability.Analysis) -> tuple[object, list[str]]:
    """The scenario with run.duration and run.warmup long enough for the slots' relaxation time."""
    tau = analysis.relaxation_time
    run = sc.run
    if run.duration is None or analysis.time_varying or not math.isfinite(tau) or tau <= 0:
        return sc, []
    warm = max(run.warmup, WARM_TAUS * tau)
    window = max(run.duration - run.warmup, WINDOW_TAUS * tau)
    if warm + window <= run.duration * (1 + 1e-9) and warm <= run.warmup:
        return sc, []
    duration = min(MAX_DURATION, warm + window)
    warm = min(warm, duration / 2)
    notes = [f"run extended to {duration / 3600:.2g} h, warm-up {warm / 60:.3g} min (relaxation time "
             f"{tau / 60:.3g} min)"]
    if duration < WARM_TAUS * tau + WINDOW_TAUS * tau:
        notes.append(f"capped at {MAX_DURATION / 3600:g} h: shorter than {WARM_TAUS + WINDOW_TAUS:g} relaxation "
                     "times, so this point's figures are conditional on the run having settled")
    return sc.with_values({"run.duration": duration, "run.warmup": warm}), notes


def replication_split(target, res: Results) -> str | None:
    """'2 of 4 replications: ...' when replications disagree on the target or on the binding resource."""
    reps = res.replications
    if len(reps) < 2:
        return None
    by_target = [target.met_by(r.metrics.get(target.metric, math.nan)) for r in reps]
    parts = []
    if 0 < sum(by_target) < len(reps):
        parts.append(f"{sum(by_target)} of {len(reps)} replications meet {target}")
    split = bottleneck.split_text(reps)
    if split:
        parts.append(split)
    return "; ".join(parts) or None


def steady_problem(res: Results) -> str | None:
    """Why the replications do not show a steady state (MSER beyond the warm-up, a trend), or None."""
    reps = res.replications
    n = len(reps)
    short = [r for r in reps if r.metrics.get("steady.warmup_short")]
    trend = [r for r in reps if r.metrics.get("steady.trending")]
    if 2 * len(short) > n:
        cut = max(r.metrics["steady.mser_warmup"] for r in short)
        return f"MSER puts the end of the transient at {cut:.0f} s in {len(short)} of {n} replications, after the warm-up"
    if 2 * len(trend) > n:
        rise = max(r.metrics["steady.trend"] for r in trend)
        return f"the wait rises by {100 * rise:.0f} % over the window in {len(trend)} of {n} replications"
    return None


def unit_of(key: str) -> str:
    return "B/s" if "bandwidth" in key else ""


def scenario_at(scenario, key: str, value):
    try:
        return scenario.with_value(key, value)
    except ScenarioError as exc:
        raise ScenarioError(exc.key, exc.value, f"{exc.message} (from --vary {key}={value})") from None


def check_metric(scenario, flag: str, name: str) -> None:
    """Refuse an unknown metric name before any search (a few simulated seconds name them all)."""
    from simulator.api import run_replication
    run = scenario.run
    if run.duration is not None:
        small = {"run.duration": min(run.duration, 10.0), "run.warmup": 0, "run.warmup_jobs": 0}
    else:
        small = {"run.jobs": min(run.jobs or 10, 10), "run.warmup": 0, "run.warmup_jobs": 0}
    known = set(run_replication(scenario.with_values(small), 0).metrics)
    known |= {"wait_p95_worst_bin"} if run.bin else set()
    if name not in known and not name.startswith(("bin.", "class.")):
        raise unknown_metric(flag, name, known)
