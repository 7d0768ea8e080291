"""Steady state, checked from the data: the wait as a time series, MSER truncation, a trend test on
the statistics window, and batch-means intervals for one long run.

The engine hands every started job's (submit time, wait) to a `WaitSeries` (warm-up included): the
jobs are grouped by submit time into at most `MAX_BINS` bins (pairs merge, the width doubles, when
a run is longer than expected), each with its count, sum of waits and a coarse log histogram of
the waits (5 % bins), so memory is constant and the cost per job is two list appends.

- **MSER** (White 1997; MSER-5 of White, Cobb and Spratt 2000 applies it to batch means of 5
  observations; here the batches are the time bins, weighted by their job counts): the warm-up
  is the truncation point d, searched over the first half of the series, minimising the weighted
  variance of the remaining batch means divided by the jobs they hold. A minimum at the end of
  that half means the run never settled (the rule's own limit).
- **Trend**: a weighted least-squares line through the window's bin means (grouped into
  `BATCHES` batches, so that neighbours' correlation does not inflate the t statistic); the run is flagged
  when the slope is significant (|t| > 3) and the line rises by more than 20 % of the mean over
  the window.
- **Batch means** (for one replication, or replications that are the same run): the window's bins
  merged into `BATCHES` batches of equal duration; the interval of the mean wait is Student's over
  the batch means, a quantile's over the batch quantiles around the whole window's quantile
  (sectioning).
"""
from __future__ import annotations

import math

import numpy as np

from simulator.stats import t975

MAX_BINS = 256
BATCHES = 20
_LOW, _RATIO = 1e-4, 1.05
_NH = int(math.ceil(math.log(1e7 / _LOW) / math.log(_RATIO))) + 2   # index 0: zero waits (< LOW)


class WaitSeries:
    """(submit time, wait) of every started job, in time bins with constant memory."""

    FLUSH = 4096

    def __init__(self, span: float):
        self.width = max(span, 1e-9) / (MAX_BINS // 2)
        self.count = np.zeros(MAX_BINS, dtype=np.int64)
        self.total = np.zeros(MAX_BINS)
        self.hist = np.zeros((MAX_BINS, _NH), dtype=np.int32)
        self._t: list[float] = []
        self._w: list[float] = []
        self.t_add, self.w_add = self._t.append, self._w.append

    def add(self, t: float, wait: float) -> None:
        self._t.append(t)
        self._w.append(wait)
        if len(self._t) >= self.FLUSH:
            self.flush()

    def flush(self) -> None:
        if not self._t:
            return
        t = np.asarray(self._t)
        w = np.asarray(self._w)
        self._t.clear()
        self._w.clear()
        idx = (t / self.width).astype(np.int64)
        while idx.max() >= MAX_BINS:
            self._merge()
            idx //= 2
        np.add.at(self.count, idx, 1)
        np.add.at(self.total, idx, w)
        h = np.where(w < _LOW, 0, np.floor(np.log(np.maximum(w, _LOW) / _LOW) / math.log(_RATIO)).astype(np.int64) + 1)
        np.clip(h, 0, _NH - 1, out=h)
        np.add.at(self.hist, (idx, h), 1)

    def _merge(self) -> None:
        half = MAX_BINS // 2
        for arr in (self.count, self.total, self.hist):
            merged = arr[0::2] + arr[1::2]
            arr[:half] = merged
            arr[half:] = 0
        self.width *= 2

    def frozen(self) -> dict:
        """Plain arrays of the occupied bins (for the replication's results)."""
        self.flush()
        n = int(np.nonzero(self.count)[0].max()) + 1 if self.count.any() else 0
        return {"width": self.width, "count": self.count[:n].tolist(), "total": self.total[:n].tolist(),
                "hist": self.hist[:n].copy()}


def _means(series: dict, start: float = 0.0, end: float = math.inf) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(bin start times, counts, mean waits) of the non-empty bins within [start, end)."""
    w = series["width"]
    c = np.asarray(series["count"], dtype=float)
    s = np.asarray(series["total"], dtype=float)
    t = np.arange(len(c)) * w
    keep = (c > 0) & (t >= start - 1e-9) & (t + w <= end + 1e-9)
    return t[keep], c[keep], s[keep] / np.maximum(c[keep], 1)


def mser(series: dict, end: float) -> tuple[float, bool]:
    """(truncation time, settled): MSER over the bins before `end`; settled is False when the
    minimum falls in the second half of the series (the run is too short to show a steady state)."""
    t, c, y = _means(series, 0.0, end)
    n = len(y)
    if n < 4:
        return 0.0, False
    best, arg = math.inf, 0
    for d in range(n // 2 + 1):
        cc, yy = c[d:], y[d:]
        m = float(np.sum(cc * yy) / cc.sum())
        score = float(np.sum(cc * (yy - m) ** 2)) / cc.sum() ** 2
        if score < best:
            best, arg = score, d
    return float(t[arg]), arg < n // 2


def trend(series: dict, start: float, end: float) -> tuple[float, float]:
    """(relative rise of the mean wait over the window by a weighted line, its t statistic)."""
    t, c, y = _means(series, start, end)
    if len(y) < 5 or c.sum() == 0:
        return 0.0, 0.0
    if len(y) > BATCHES:     # batches of neighbouring bins: their means are nearly independent
        parts = np.array_split(np.arange(len(y)), BATCHES)
        t = np.array([float(np.sum(c[g] * t[g]) / c[g].sum()) for g in parts])
        y = np.array([float(np.sum(c[g] * y[g]) / c[g].sum()) for g in parts])
        c = np.array([float(c[g].sum()) for g in parts])
    wts = c / c.sum()
    tm, ym = float(np.sum(wts * t)), float(np.sum(wts * y))
    sxx = float(np.sum(wts * (t - tm) ** 2))
    if sxx <= 0 or ym <= 0:
        return 0.0, 0.0
    slope = float(np.sum(wts * (t - tm) * (y - ym))) / sxx
    resid = y - (ym + slope * (t - tm))
    var = float(np.sum(wts * resid ** 2)) * len(y) / (len(y) - 2)
    se = math.sqrt(var / (sxx * len(y))) if var > 0 else 0.0
    tstat = slope / se if se > 0 else (math.inf if slope else 0.0)
    return slope * (end - start) / ym, tstat


def trending(rise: float, tstat: float) -> bool:
    return rise > 0.2 and tstat > 3.0


def _quantile(hist: np.ndarray, q: float) -> float:
    n = int(hist.sum())
    if n == 0:
        return math.nan
    i = int(np.searchsorted(np.cumsum(hist), max(1, math.ceil(q * n))))
    return 0.0 if i == 0 else _LOW * _RATIO ** (i - 0.5)


def batch_means(series: dict, start: float, end: float, metric: str, estimate: float) -> dict | None:
    """A batch-means interval for `metric` (wait_mean or wait_pNN) over the window, or None."""
    w = series["width"]
    c = np.asarray(series["count"], dtype=float)
    if not len(c):
        return None
    t = np.arange(len(c)) * w
    inside = np.nonzero((t >= start - 1e-9) & (t + w <= end + 1e-9))[0]
    if len(inside) < BATCHES:
        return None
    groups = np.array_split(inside, BATCHES)
    total = np.asarray(series["total"], dtype=float)
    vals = []
    for g in groups:
        n = c[g].sum()
        if n == 0:
            continue
        if metric == "wait_mean":
            vals.append(total[g].sum() / n)
        else:
            vals.append(_quantile(series["hist"][g].sum(axis=0), int(metric[6:]) / 100))
    k = len(vals)
    if k < 5:
        return None
    arr = np.asarray(vals)
    half = t975(k - 1) * float(arr.std(ddof=1)) / math.sqrt(k)
    return {"mean": estimate, "low": max(0.0, estimate - half), "high": estimate + half, "half_width": half,
            "n": 1, "batches": k, "method": "batch-means", "values": [estimate]}


def steady_metrics(series: dict, window: tuple[float, float], warmup: float) -> dict[str, float]:
    """Per replication: the MSER truncation time, whether it settled, the window's trend."""
    start, end = window
    cut, settled = mser(series, end)
    rise, tstat = trend(series, start, end)
    return {"steady.mser_warmup": cut, "steady.settled": 1.0 if settled else 0.0,
            "steady.warmup_short": 1.0 if cut > max(warmup, start) + series["width"] else 0.0,
            "steady.trend": rise, "steady.trend_t": tstat,
            "steady.trending": 1.0 if trending(rise, tstat) else 0.0}
