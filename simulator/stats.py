"""Streaming statistics in constant memory (log histogram quantiles) and confidence intervals."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

# Student t 0.975 quantiles for 1..30 degrees of freedom.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
         2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
         2.052, 2.048, 2.045, 2.042)


def t975(df: int) -> float:
    """The 0.975 quantile of Student's t (table to 30 df, Cornish-Fisher expansion beyond)."""
    if df < 1:
        return math.nan
    if df <= 30:
        return _T975[df - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df * df)


def confidence_interval(values: Sequence[float], positive: bool = False) -> dict:
    """Mean and 95 % interval of replication values (half_width is NaN for one replication).

    Default: Student t. With `positive` (a wait, a turnaround: never negative, skewed, one slow
    replication can dominate) the interval is Cox's for the mean of a log-normal sample:
    exp(ybar + s^2/2 +- t * sqrt(s^2/n + s^4/(2(n-1)))) over y = log(value); it is never below zero
    and widens to the right with the spread. If some value is 0 (no log), it is the t interval
    with its low end clipped at 0 (`method` says which). half_width is (high - low) / 2.
    """
    vals = [float(v) for v in values]
    n = len(vals)
    finite = [v for v in vals if math.isfinite(v)]
    if len(finite) != n or n == 0:
        mean = sum(finite) / len(finite) if finite else math.nan
        return {"mean": mean, "low": math.nan, "high": math.nan, "half_width": math.nan, "n": n, "values": vals}
    mean = sum(vals) / n
    if n < 2:
        return {"mean": mean, "low": math.nan, "high": math.nan, "half_width": math.nan, "n": n, "values": vals}
    var = sum((v - mean) ** 2 for v in vals) / (n - 1)
    half = t975(n - 1) * math.sqrt(var / n)
    low, high, method = mean - half, mean + half, "t"
    if positive and min(vals) > 0 and var > 0:
        ys = [math.log(v) for v in vals]
        ybar = sum(ys) / n
        s2 = sum((y - ybar) ** 2 for y in ys) / (n - 1)
        se = math.sqrt(s2 / n + s2 * s2 / (2 * (n - 1)))
        centre = ybar + s2 / 2
        low, high, method = _exp(centre - t975(n - 1) * se), _exp(centre + t975(n - 1) * se), "cox-log"
        half = (high - low) / 2
    elif positive and low < 0:
        low, method = 0.0, "t-clipped"
        half = (high - low) / 2
    return {"mean": mean, "low": low, "high": high, "half_width": half, "n": n, "values": vals, "method": method}


def _exp(x: float) -> float:
    return math.exp(x) if x < 709.0 else math.inf   # a spread too wide for a float: unbounded above


POSITIVE_PREFIXES = ("wait_", "queue_wait_", "turnaround_", "wait_split.")   # wait_p95_worst_bin too


def is_positive_metric(name: str) -> bool:
    """Times that are never negative and skewed: their interval is Cox's log-normal one."""
    return name.startswith(POSITIVE_PREFIXES) or (name.startswith(("bin.", "class.")) and ".wait_" in name)


FRACTIONS = ("utilisation.", "source_utilisation", "source_saturated", "link_utilisation", "cache_hit_ratio",
             "p_wait", "steady.settled", "steady.warmup_short", "steady.trending")


def is_fraction_metric(name: str) -> bool:
    """Shares of time or capacity, which lie in [0, 1] (rpc_load may exceed 1: it is not one)."""
    return name.startswith(FRACTIONS)


def clip_interval(ci: dict, low: float = 0.0, high: float = 1.0) -> dict:
    """The interval cut to the metric's own range [low, high] (method gets '-clipped' when cut)."""
    lo, hi = ci.get("low"), ci.get("high")
    if lo is None or lo != lo:
        return ci
    if lo >= low and hi <= high:
        return ci
    out = dict(ci, low=max(lo, low), high=min(hi, high))
    out["half_width"] = (out["high"] - out["low"]) / 2
    out["method"] = ci.get("method", "t") + "-clipped"
    return out


def disagree(ci: dict) -> bool:
    """Replication values worth showing: positive values whose largest is over twice the smallest,
    or (three or more replications) an interval wider than the mean itself."""
    vals = sorted(v for v in ci.get("values", []) if v == v)
    if len(vals) < 2:
        return False
    mean = ci.get("mean")
    wide = len(vals) >= 3 and mean and ci.get("high") == ci.get("high") and (ci["high"] - ci["low"]) > abs(mean)
    return bool(wide) or (vals[0] > 0 and vals[-1] > 2 * vals[0])


class LogHistogram:
    """Counts of non-negative values in log-spaced bins 0.1 % wide, plus an exact zero bin.

    Memory is constant whatever the number of values. `quantile(q)` returns the nearest-rank
    quantile to within 0.1 % relative error (exactly 0 when it falls on zeros); the mean is exact.
    Values are buffered and binned in numpy batches, so `add` costs one list append.
    """

    LOW, HIGH, RATIO = 1e-9, 1e12, 1.001
    BUFFER = 4096   # values held before binning: bounds memory, amortises numpy's per-call cost

    def __init__(self, ratio: float | None = None) -> None:
        self.RATIO = ratio or self.RATIO
        self._log_ratio = math.log(self.RATIO)
        self.nbins = int(math.ceil(math.log(self.HIGH / self.LOW) / self._log_ratio)) + 1
        self.counts = np.zeros(self.nbins, dtype=np.int64)
        self.zeros = 0
        self.n = 0
        self.total = 0.0
        self.maximum = 0.0
        self._buf: list[float] = []
        self.add = self._buf.append   # the hot path: a bound list append

    def _flush(self) -> None:
        if not self._buf:
            return
        arr = np.asarray(self._buf, dtype=np.float64)
        self._buf.clear()
        self.n += arr.size
        self.total += float(arr.sum())
        self.maximum = max(self.maximum, float(arr.max()))
        pos = arr[arr > 0]
        self.zeros += arr.size - pos.size
        idx = np.floor(np.log(pos / self.LOW) / self._log_ratio).astype(np.int64)
        np.clip(idx, 0, self.nbins - 1, out=idx)
        self.counts += np.bincount(idx, minlength=self.nbins)

    def maybe_flush(self) -> None:
        if len(self._buf) >= self.BUFFER:
            self._flush()

    def count(self) -> int:
        self._flush()
        return self.n

    def mean(self) -> float:
        self._flush()
        return self.total / self.n if self.n else math.nan

    def _bin_value(self, i: int) -> float:
        return self.LOW * self.RATIO ** (i + 0.5)

    def quantile(self, q: float) -> float:
        self._flush()
        if self.n == 0:
            return math.nan
        rank = max(1, math.ceil(q * self.n))
        if rank <= self.zeros:
            return 0.0
        cum = np.cumsum(self.counts)
        i = int(np.searchsorted(cum, rank - self.zeros))
        return min(self._bin_value(i), self.maximum)

    def cdf(self) -> tuple[np.ndarray, np.ndarray]:
        """(values, cumulative fraction) at the occupied bins, for plotting."""
        self._flush()
        nz = np.nonzero(self.counts)[0]
        values = np.concatenate(([0.0], self.LOW * self.RATIO ** (nz + 1.0)))
        cum = np.concatenate(([self.zeros], self.zeros + np.cumsum(self.counts[nz])))
        return values, cum / max(self.n, 1)
