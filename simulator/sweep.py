"""Sweeps over one scenario key, and the capacity plan: the smallest value that meets a target."""
from __future__ import annotations

import math
import operator
import re
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Callable

from simulator import units
from simulator.api import Results, _worker
from simulator.checks import ScenarioError
from simulator.scenario import Scenario

_RANGE_RE = re.compile(r"([^=]+)=(-?[0-9.eE+-]+)\.\.(-?[0-9.eE+-]+)(?::([0-9.eE+-]+))?")


class SweepError(ValueError):
    """A malformed --vary or --target value (the message names it)."""


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
    points = []
    for v in values:
        try:
            points.append(scenario.with_value(key, v))
        except ScenarioError as exc:
            raise ScenarioError(exc.key, exc.value, f"{exc.message} (from --vary {key}={v})") from None
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
    """The answer of `plan`: the smallest value meeting the target, and every point evaluated."""

    target: Target
    key: str
    value: int | None
    metric: dict | None
    evaluated: list[tuple[int, dict, bool]]


def plan(scenario: Scenario, key: str, target: Target, *, low: int = 1, high: int = 100_000,
         criterion: str = "ci", replications: int | None = None, workers: int = 1, executor=None,
         progress: Callable[[int, int], None] | None = None) -> Plan:
    """Smallest integer value of `key` in [low, high] whose metric meets the target.

    Assumes the metric improves monotonically with the value (more agents, less wait): doubling
    from `low` until the target is met, then bisection. With criterion 'ci' a value meets the
    target only if the whole 95 % CI does (the upper bound for <=, the lower bound for >=);
    with 'mean' the mean suffices. Every replication uses the same seeds at every value
    (common random numbers), which keeps the comparison between values sharp.
    """
    cache: dict[int, tuple[dict, bool]] = {}

    def evaluate(v: int) -> bool:
        if v not in cache:
            [(_, res)] = run_points(scenario, key, [v], replications=replications, workers=workers,
                                    executor=executor)
            if target.metric not in res.metrics:
                known = ", ".join(sorted(res.metrics))
                raise SweepError(f"--target: unknown metric {target.metric!r}; known: {known}")
            m = res.metrics[target.metric]
            x = m["mean"]
            if criterion == "ci" and m["half_width"] == m["half_width"]:
                x = m["high"] if target.op in ("<=", "<") else m["low"]
            cache[v] = (m, target.met_by(x))
            if progress:
                progress(len(cache), 0)
        return cache[v][1]

    lo, hi = low, low
    while not evaluate(hi):
        if hi >= high:
            return Plan(target, key, None, None, sorted((v, m, ok) for v, (m, ok) in cache.items()))
        lo, hi = hi + 1, min(high, hi * 2)
    while lo < hi:
        mid = (lo + hi) // 2
        if evaluate(mid):
            hi = mid
        else:
            lo = mid + 1
    return Plan(target, key, hi, cache[hi][0], sorted((v, m, ok) for v, (m, ok) in cache.items()))
