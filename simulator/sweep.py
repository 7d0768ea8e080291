"""Sweeps over one scenario key, and the capacity plan: the smallest value that meets a target."""
from __future__ import annotations

import math
import operator
import re
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

from protos import units
from simulator import bottleneck
from simulator.api import Results, _worker
from simulator.checks import ScenarioError
from simulator.scenario import Scenario
from simulator.search import SweepError, unknown_metric  # noqa: F401  (re-exported)

_RANGE_RE = re.compile(r"([^=]+)=(-?[0-9.eE+-]+)\.\.(-?[0-9.eE+-]+)(?::([0-9.eE+-]+))?")


def _num(text: str, what: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        try:
            v = float(text)
        except ValueError:
            raise SweepError(f"{what}: {text!r} is not a number") from None
        if not math.isfinite(v):
            raise SweepError(f"{what}: {text!r} is not a finite number")
        return v


def parse_vary(spec: str) -> tuple[str, list]:
    """'agents.count=50..200:10' (inclusive range) or 'clients.policy=random,least_loaded'."""
    m = _RANGE_RE.fullmatch(spec.strip())
    if m:
        key, lo, hi, step = m.group(1).strip(), _num(m.group(2), spec), _num(m.group(3), spec), m.group(4)
        step = _num(step, spec) if step else 1
        if step <= 0:
            raise SweepError(f"--vary {spec!r}: step must be > 0")
        if hi < lo:
            raise SweepError(f"--vary {spec!r}: the range end {hi} is below its start {lo}")
        n = int(math.floor((hi - lo) / step + 1e-9)) + 1
        if n > 10_000:
            raise SweepError(f"--vary {spec!r}: {n} points is too many (at most 10000)")
        values = [lo + i * step for i in range(n)]
        if all(isinstance(v, int) for v in (lo, hi, step)):
            values = [int(v) for v in values]
        return key, values
    key, sep, rest = spec.partition("=")
    if not sep or not key.strip() or not rest.strip():
        raise SweepError(f"--vary {spec!r}: expected KEY=LOW..HIGH[:STEP] or KEY=V1,V2,...")
    values = []
    for part in rest.split(","):
        part = part.strip()
        try:
            values.append(_num(part, spec))
        except SweepError:
            values.append(part)
    return key.strip(), values


_TARGET_RE = re.compile(r"\s*([A-Za-z_][\w.]*)\s*(<=|>=|<|>)\s*(\S+)\s*")
_OPS = {"<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt}


@dataclass(frozen=True)
class Target:
    """A condition on one summary metric, e.g. wait_p95 <= 30."""

    metric: str
    op: str
    value: float

    def met_by(self, x: float) -> bool:
        return x == x and _OPS[self.op](x, self.value)

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.value:g}"


def parse_target(text: str) -> Target:
    """'p95_wait<=30s', 'mean_turnaround<2min', 'utilisation.workers>=0.6' (aliases pNN_X, mean_X)."""
    m = _TARGET_RE.fullmatch(text)
    if not m:
        raise SweepError(f"--target {text!r}: expected METRIC<=VALUE, like 'p95_wait<=30s'")
    name, op, raw = m.groups()
    alias = re.fullmatch(r"(p\d+|mean)_(\w+)", name)
    if alias:
        name = f"{alias.group(2)}_{alias.group(1)}"
    try:
        value = units.duration(raw)
    except units.UnitError:
        raise SweepError(f"--target {text!r}: {raw!r} is not a number or a duration like 30s") from None
    return Target(name, op, value)


def run_points(scenario: Scenario, key: str, values: list, *, replications: int | None = None, workers: int = 1,
               executor=None, progress: Callable[[int, int], None] | None = None) -> list[tuple[object, Results]]:
    """Every (value, replication) pair as one task, in processes or on a Dask cluster."""
    combos = [{key: v} for v in values]
    done = run_grid(scenario, combos, replications=replications, workers=workers, executor=executor, progress=progress)
    return [(v, res) for v, (_, res) in zip(values, done)]


def grid(varies: list[tuple[str, list]]) -> list[dict]:
    """Every combination of the varied keys' values (the first key varies slowest)."""
    combos: list[dict] = [{}]
    for key, values in varies:
        combos = [{**c, key: v} for c in combos for v in values]
    if len(combos) > 10_000:
        raise SweepError(f"--vary: {len(combos)} combinations is too many (at most 10000)")
    return combos


def run_grid(scenario: Scenario, combos: list[dict], *, replications: int | None = None, workers: int = 1,
             executor=None, progress: Callable[[int, int], None] | None = None) -> list[tuple[dict, Results]]:
    """Every (combination, replication) pair as one task, in processes or on a Dask cluster."""
    points = []
    for combo in combos:
        try:
            points.append(scenario.with_values(combo))
        except ScenarioError as exc:
            shown = " ".join(f"{k}={v}" for k, v in combo.items())
            raise ScenarioError(exc.key, exc.value, f"{exc.message} (from --vary {shown})") from None
    from simulator import sanity
    for p in points:
        sanity.refuse_if_too_big(p)
    values = combos
    n = replications or scenario.run.replications
    tasks = [(p, r, None, False) for p in points for r in range(n)]
    reps: list = []
    if executor is not None:
        futures = [executor.submit(_worker, t) for t in tasks]
        for f in futures:
            reps.append(f.result())
            if progress:
                progress(len(reps), len(tasks))
    elif workers > 1 and len(tasks) > 1:
        with ProcessPoolExecutor(max_workers=min(workers, len(tasks))) as pool:
            for rep in pool.map(_worker, tasks):
                reps.append(rep)
                if progress:
                    progress(len(reps), len(tasks))
    else:
        for t in tasks:
            reps.append(_worker(t))
            if progress:
                progress(len(reps), len(tasks))
    return [(v, Results(p, reps[i * n:(i + 1) * n])) for i, (v, p) in enumerate(zip(values, points))]


@dataclass
class Plan:
    """The answer of `plan`: the value chosen (None if none met the target), every point evaluated
    as (value, metric CI, met), each point's verdict, and why the search ended as it did."""

    target: Target
    key: str
    value: int | None
    metric: dict | None
    evaluated: list[tuple[int, dict, bool]]
    verdicts: dict = field(default_factory=dict)
    reason: str = ""
    notes: list[str] = field(default_factory=list)
    costs: dict = field(default_factory=dict)
    points: dict = field(default_factory=dict)      # value -> search.Point (status, analysis, notes)

    @property
    def headroom(self) -> float | None:
        """How far the chosen point's judged bound is from the target, relative to the target."""
        if self.metric is None or not self.target.value:
            return None
        m, t = self.metric, self.target
        bound = m["high"] if t.op in ("<=", "<") and m["high"] == m["high"] else m["mean"]
        if t.op in (">=", ">"):
            bound = m["low"] if m["low"] == m["low"] else m["mean"]
            return (bound - t.value) / abs(t.value)
        return (t.value - bound) / abs(t.value)


def _better(target: Target, a: float, b: float) -> bool:
    """a is better than b for this target (lower for <=, higher for >=)."""
    return a < b if target.op in ("<=", "<") else a > b


def non_monotone(target: Target, evaluated: list[tuple[int, dict, bool]]) -> list[str]:
    """Steps where a larger value gave a clearly worse metric (the intervals do not overlap)."""
    notes = []
    pts = sorted(evaluated, key=lambda e: e[0])
    for (v0, m0, _), (v1, m1, _) in zip(pts, pts[1:]):
        lo0, hi0 = (m0["low"], m0["high"]) if m0["low"] == m0["low"] else (m0["mean"], m0["mean"])
        lo1, hi1 = (m1["low"], m1["high"]) if m1["low"] == m1["low"] else (m1["mean"], m1["mean"])
        worse = lo1 > hi0 if target.op in ("<=", "<") else hi1 < lo0
        if worse:
            notes.append(f"{target.metric} got worse from {v0} ({m0['mean']:.4g}) to {v1} ({m1['mean']:.4g})")
    return notes


def plan(scenario: Scenario, key: str, target: Target, *, low: int = 1, high: int = 100_000,
         criterion: str = "ci", replications: int | None = None, workers: int = 1, executor=None,
         progress: Callable[[int, int], None] | None = None, precision=None, minimise: str | None = None,
         values: list | None = None, resolution: float | None = None, max_replications: int = 12) -> Plan:
    """Smallest value of `key` in [low, high] whose metric meets the target (integers, or steps of
    `resolution` for a continuous key): the search of simulator/search.py (stability first, an
    analytic first pass, replications added until each decision is significant, up to
    `max_replications`). With criterion 'ci' a value meets the target only if the whole 95 % CI
    does; with 'mean' the mean suffices. Every value uses the same seeds (common random numbers).
    With `minimise` (a metric such as cost) every value of `values` is evaluated and the cheapest
    stable value meeting the target is the answer.
    """
    from simulator.search import check_metric
    check_metric(scenario, "--target", target.metric)
    cache: dict[int, tuple[dict, bool]] = {}
    verdicts: dict = {}
    costs: dict = {}

    def evaluate(v: int) -> bool:
        if v not in cache:
            from simulator import stability
            from simulator.search import scenario_at
            a = stability.analyse(scenario_at(scenario, key, v))
            if a.unstable:      # never simulated, never an answer
                cache[v] = ({"mean": math.nan, "low": math.nan, "high": math.nan, "half_width": math.nan}, False)
                verdicts[v] = a.verdict()
                return False
            sc = scenario.with_value(key, v) if precision is not None else scenario
            if precision is not None:
                from simulator.sequential import run_until
                try:
                    res = run_until(sc, precision, start=replications, workers=workers, executor=executor)
                except ScenarioError as exc:
                    raise ScenarioError(exc.key, exc.value, f"{exc.message} (from --vary {key}={v})") from None
            else:
                [(_, res)] = run_points(scenario, key, [v], replications=replications, workers=workers,
                                        executor=executor)
            if target.metric not in res.metrics:
                raise unknown_metric("--target", target.metric, res.metrics)
            m = res.metrics[target.metric]
            x = m["mean"]
            if criterion == "ci" and m["half_width"] == m["half_width"]:
                x = m["high"] if target.op in ("<=", "<") else m["low"]
            cache[v] = (m, target.met_by(x))
            flat = bottleneck.means(res.metrics)
            verdicts[v] = bottleneck.verdict(flat).text
            if minimise is not None:
                if minimise not in flat:
                    raise unknown_metric("--minimise", minimise, flat)
                costs[v] = flat[minimise]
            if progress:
                progress(len(cache), 0)
        return cache[v][1]

    def result(value, reason, notes=()):
        ev = sorted((v, m, ok) for v, (m, ok) in cache.items())
        extra = list(notes) + [n for n in non_monotone(target, ev) if n not in notes]
        return Plan(target, key, value, cache[value][0] if value is not None else None, ev, verdicts, reason,
                    extra, costs)

    if minimise is not None:
        for v in values or []:
            evaluate(v)
        met = [v for v, (_, ok) in cache.items() if ok]
        if not met:
            return result(None, f"no value tried meets {target}")
        best = min(met, key=lambda v: (costs[v], v))
        return result(best, f"the lowest {minimise} among the {len(met)} values meeting {target}")

    return _search(scenario, key, target, low, high, criterion=criterion, replications=replications,
                   workers=workers, executor=executor, progress=progress, precision=precision,
                   resolution=resolution, max_replications=max_replications)


def _search(scenario, key, target, low, high, *, criterion, replications, workers, executor, progress, precision,
            resolution, max_replications) -> Plan:
    """The search of simulator/search.py; the Plan with every point's status, verdict and notes."""
    from simulator.planner import Planner
    cap = precision.cap if precision is not None else max_replications
    pl = Planner(scenario, key, target, criterion=criterion, replications=replications, max_replications=cap,
                 workers=workers, executor=executor, resolution=resolution, progress=progress)
    try:
        value, reason, notes = pl.search(low, high)
    finally:
        pl.close()
    pts = pl.points
    ev = sorted((v, p.metric, p.met) for v, p in pts.items() if p.metric is not None)
    extra = list(notes) + [n for n in non_monotone(target, ev) if n not in notes]
    return Plan(target, key, value, pts[value].metric if value is not None else None, ev,
                {v: p.verdict for v, p in pts.items()}, reason, extra, points=pts)
