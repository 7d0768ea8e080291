"""Time-varying arrival rates: a piecewise-linear profile (optionally daily), bursts, and its arrivals."""
from __future__ import annotations

import bisect
import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from protos import units
from simulator.checks import ScenarioError, Table


@dataclass(frozen=True)
class Burst:
    """`rate` extra jobs/s from `start` for `duration` seconds (absolute simulated time)."""

    start: float
    duration: float
    rate: float


@dataclass(frozen=True)
class RateProfile:
    """Rate(t) through the (time, rate) points, linear in between; constant after the last point,
    or repeating with period `repeat` (the points then span [0, repeat]; rate(repeat) = rate(0)).
    Bursts are added on top as steps."""

    points: tuple[tuple[float, float], ...]
    repeat: float | None = None
    bursts: tuple[Burst, ...] = ()

    def base(self, t: float) -> float:
        pts = self.points
        if self.repeat:
            t = t % self.repeat
        if t <= pts[0][0]:
            return pts[0][1]
        i = bisect.bisect_right(self._times, t)      # pts[i - 1][0] <= t < pts[i][0]
        if i < len(pts):
            (t0, r0), (t1, r1) = pts[i - 1], pts[i]
            return r0 + (r1 - r0) * (t - t0) / (t1 - t0)
        if self.repeat:   # between the last point and the period's end: back towards rate(0)
            (t0, r0), t1, r1 = pts[-1], self.repeat, pts[0][1]
            return r0 + (r1 - r0) * (t - t0) / (t1 - t0) if t1 > t0 else r0
        return pts[-1][1]

    @property
    def _times(self) -> list[float]:
        times = self.__dict__.get("_times_cache")
        if times is None:
            times = [t for t, _ in self.points]
            object.__setattr__(self, "_times_cache", times)
        return times

    def rate(self, t: float) -> float:
        return self.base(t) + sum(b.rate for b in self.bursts if b.start <= t < b.start + b.duration)

    def breakpoints(self, start: float) -> Iterator[float]:
        """Every time >= start where the rate's slope or level may change, in order, forever."""
        own = [t for t, _ in self.points]
        marks = sorted({b.start for b in self.bursts} | {b.start + b.duration for b in self.bursts})
        def base_marks() -> Iterator[float]:
            if not self.repeat:
                yield from own
                return
            k = 0
            while True:
                for t in own + [self.repeat]:
                    yield k * self.repeat + t
                k += 1
        merged = _merge(base_marks(), iter(marks))
        last = -math.inf
        for t in merged:
            if t > start and t > last:
                last = t
                yield t

    def mean(self, span: float) -> float:
        """The mean rate over [0, span] (trapezoids between breakpoints)."""
        total, t = 0.0, 0.0
        for t1 in self.breakpoints(0.0):
            t1 = min(t1, span)
            total += self.rate((t + t1) / 2) * (t1 - t)    # linear on (t, t1): the midpoint's rate
            t = t1
            if t >= span:
                break
        if t < span:
            total += self.rate(t) * (span - t)
        return total / span if span > 0 else self.rate(0.0)

    def arrivals(self, rng) -> Iterator[float]:
        """Poisson arrival times with this rate, by inverting the integrated rate on each linear piece:
        one exponential draw per arrival (so a profile of constant rate r gives the same times as
        a homogeneous Poisson process of rate r drawn with the same stream)."""
        t = 0.0
        need = rng.expovariate(1.0)
        bps = self.breakpoints(0.0)
        t1 = next(bps, math.inf)
        while True:
            # one linear piece [t, t1): its rate at t and slope k, computed once for all its arrivals
            seg, r_seg = t, self.rate(t)
            if t1 < math.inf:
                k = 2 * (self.rate(t + (t1 - t) / 2) - r_seg) / (t1 - t)
            else:
                k = 0.0
            while True:
                r0 = r_seg + k * (t - seg) if k else r_seg
                span = t1 - t
                if span < math.inf:
                    area = (r0 + k * span / 2) * span
                else:
                    area = math.inf if r0 > 0 else 0.0
                if area < need:
                    break
                # k/2 s^2 + r0 s = need, in the form that is stable for k -> 0 and exact for k = 0
                s = 2 * need / (r0 + math.sqrt(max(0.0, r0 * r0 + 2 * k * need)))
                t = min(t + s, t1)
                yield t
                need = rng.expovariate(1.0)
            if t1 == math.inf:
                return                        # the rate stays 0 for ever
            need -= area
            t = t1
            t1 = next(bps, math.inf)


def _merge(a: Iterator[float], b: Iterator[float]) -> Iterator[float]:
    import heapq
    return heapq.merge(a, b)


def parse(t: Table, base_dir: Path, bursts: tuple[Burst, ...] = ()) -> RateProfile | None:
    """`profile = {points = [[t, rate], ...], repeat = "24h"}` or `{file = "day.csv", repeat}`,
    plus the `bursts` already read (`parse_bursts`); None when no profile is given."""
    pt = t.table("profile")
    if pt is None:
        if bursts:
            raise t.fail("bursts", "needs workload.profile (a constant rate is profile = {points = [[0, RATE]]})")
        return None
    if pt.has("file") and pt.has("points"):
        raise pt.fail("file", "give points or file, not both")
    if pt.has("file"):
        points = _csv_points(pt, base_dir)
    else:
        raw = pt.raw("points")
        if not isinstance(raw, list) or not raw:
            raise pt.fail("points", "must be a list of [time, rate] pairs, like [[0, 5], ['12h', 40]]")
        points = [_point(pt.key(f"points[{i}]"), p) for i, p in enumerate(raw)]
    repeat = pt.duration("repeat", None, positive=True) if pt.has("repeat") else pt.raw("repeat", None)
    pt.done()
    for i in range(1, len(points)):
        if points[i][0] <= points[i - 1][0]:
            raise ScenarioError(pt.key(f"points[{i}]"), list(points[i]), "times must increase")
    if points[0][0] != 0:
        raise ScenarioError(pt.key("points[0]"), list(points[0]), "the first point must be at time 0")
    if repeat is not None and points[-1][0] > repeat:
        raise pt.fail("repeat", f"is shorter than the last point's time ({points[-1][0]:g} s)")
    prof = RateProfile(tuple(points), repeat, tuple(bursts))
    if all(r == 0 for _, r in points) and not bursts:
        raise pt.fail("points", "every rate is 0: no job would arrive")
    return prof


def _point(key: str, p: object) -> tuple[float, float]:
    if not isinstance(p, list) or len(p) != 2:
        raise ScenarioError(key, p, "must be a [time, rate] pair")
    try:
        tm = units.duration(p[0])
    except units.UnitError as exc:
        raise ScenarioError(key, p, f"time: {exc}") from None
    rate = p[1]
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not math.isfinite(rate) or rate < 0:
        raise ScenarioError(key, p, "rate must be a finite number of jobs/s >= 0")
    if not math.isfinite(tm) or tm < 0:
        raise ScenarioError(key, p, "time must be finite and >= 0")
    return (tm, float(rate))


def _csv_points(pt: Table, base_dir: Path) -> list[tuple[float, float]]:
    raw = pt.string("file")
    path = Path(raw) if Path(raw).is_absolute() else base_dir / raw
    if not path.is_file():
        raise pt.fail("file", f"no such file: {path}")
    points = []
    with open(path, newline="", encoding="utf-8") as fh:
        rows = csv.reader(fh)
        header = [h.strip() for h in next(rows, [])]
        if header[:2] != ["time", "rate"]:
            raise ScenarioError(pt.key("file"), raw, f"{path}:1: expected the header 'time,rate', found {','.join(header)!r}")
        for n, row in enumerate(rows, start=2):
            if not row or not "".join(row).strip():
                continue
            if len(row) != 2:
                raise ScenarioError(pt.key("file"), raw, f"{path}:{n}: expected 2 fields, found {len(row)}")
            try:
                num = float(row[1])
            except ValueError:
                raise ScenarioError(pt.key("file"), raw, f"{path}:{n}: rate {row[1]!r} is not a number") from None
            points.append(_point(f"{pt.key('file')}:{n}", [row[0].strip(), num]))
            if len(points) > 1 and points[-1][0] <= points[-2][0]:   # name the file and line, not points[i]
                raise ScenarioError(pt.key("file"), raw, f"{path}:{n}: time {row[0].strip()} does not increase "
                                                         f"(the line before is at {points[-2][0]:g} s)")
    if not points:
        raise ScenarioError(pt.key("file"), raw, f"{path}: no points")
    return points


def parse_bursts(t: Table) -> tuple[Burst, ...]:
    """`bursts = [{start, duration, rate}, ...]` (absolute times), () when absent."""
    raw = t.raw("bursts", [])
    if not isinstance(raw, list):
        raise t.fail("bursts", "must be a list of {start, duration, rate} tables")
    out = []
    for i, item in enumerate(raw):
        bt = Table(item, t.key(f"bursts[{i}]"))
        out.append(Burst(bt.duration("start"), bt.duration("duration", positive=True), bt.number("rate", positive=True)))
        bt.done()
    return tuple(out)
