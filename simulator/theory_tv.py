"""Exact checks of time-varying load: M(t)/G/infinity occupancy and Erlang C in a slowly varying day."""
from __future__ import annotations

import math
from statistics import NormalDist

from simulator import analytic
from simulator.api import run
from simulator.profiles import RateProfile
from simulator.scenario import Scenario
from simulator.theory import Check


def sinusoid_points(mean: float, amplitude: float, period: float, n: int = 48) -> list[list[float]]:
    """A sinusoidal day as n linear pieces: the profile simulated (and integrated below) exactly."""
    return [[period * k / n, mean + amplitude * math.sin(2 * math.pi * k / n)] for k in range(n)]


def occupancy_mean(profile: RateProfile, survival, t: float, steps: int = 20000) -> float:
    """m(t) = integral over [0, t] of rate(u) * P(runtime > t - u) du (composite Simpson)."""
    if t <= 0:
        return 0.0
    steps += steps % 2
    h = t / steps
    total = 0.0
    for i in range(steps + 1):
        u = i * h
        w = 1 if i in (0, steps) else (4 if i % 2 else 2)
        total += w * profile.rate(u) * survival(t - u)
    return total * h / 3


def _t_quantile(p: float, df: int) -> float:
    z = NormalDist().inv_cdf(p)
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df * df)


def mtginf_checks(*, mean_rate: float = 5.0, amplitude: float = 4.0, period: float = 400.0, mean_runtime: float = 20.0,
                  points: int = 8, replications: int = 30, seed: int = 1, workers: int = 1) -> list[Check]:
    """M(t)/G/infinity over two sinusoidal 'days': the number of jobs in RUN at t, averaged over
    replications, against m(t). Each point's interval is Bonferroni-adjusted over the `points`
    checked (family-wise 95 %), so one check in twenty families fails by chance, not one in three."""
    pts = sinusoid_points(mean_rate, amplitude, period)
    sc = Scenario.from_dict({
        "agents": [{"count": 1, "slots": 1_000_000}],
        "workload": {"profile": {"points": pts, "repeat": period},
                     "runtime": {"dist": "exponential", "mean": mean_runtime}},
        "clients": {"poll_interval": 0},
        "run": {"duration": 2 * period + period / (2 * points), "drain": False, "seed": seed, "replications": replications,
                "sample_interval": 2 * period / points, "bin": False},
    })
    res = run(sc, workers=workers)
    profile = sc.workload.profile
    def survival(s: float) -> float:
        return math.exp(-s / mean_runtime)
    q = _t_quantile(1 - 0.05 / (2 * points), replications - 1)
    checks = []
    for k in range(1, points + 1):
        t = k * 2 * period / points
        counts = []
        for rep in res.replications:
            col = rep.sample_columns.index("run")
            at = [row[col] for row in rep.samples if abs(row[0] - t) < 1e-6 * max(1.0, t)]
            counts.append(at[0] if at else math.nan)
        n = len(counts)
        mean = sum(counts) / n
        sd = math.sqrt(sum((c - mean) ** 2 for c in counts) / (n - 1))
        half = q * sd / math.sqrt(n)
        checks.append(Check(f"M(t)/M/inf t={t:g}s", "one_agent", "jobs in RUN = m(t)",
                            occupancy_mean(profile, survival, t), mean, mean - half, mean + half))
    return checks


def stationary_limit_checks(*, low: float = 6.0, high: float = 9.0, c: int = 10, plateau: float = 1500.0,
                            ramp: float = 100.0, bins_per_plateau: int = 5, replications: int = 4, seed: int = 1,
                            workers: int = 1) -> list[Check]:
    """A day of two long plateaus (rate `low`, then `high`) with short linear ramps over c
    exponential servers (mean 1 s): the mean wait of jobs submitted well inside each plateau
    (the first bin after a ramp is skipped) approaches Erlang C at that plateau's rate."""
    period = 2 * (plateau + ramp)
    pts = [[0, low], [plateau, low], [plateau + ramp, high], [2 * plateau + ramp, high]]
    width = plateau / bins_per_plateau
    sc = Scenario.from_dict({
        "agents": [{"count": 1, "slots": c}],
        "workload": {"profile": {"points": pts, "repeat": period}, "runtime": {"dist": "exponential", "mean": 1.0}},
        "clients": {"poll_interval": 0},
        "run": {"duration": period, "drain": True, "seed": seed, "replications": replications,
                "bin": width, "bin_period": period},
    })
    res = run(sc, workers=workers)
    checks = []
    for name, lam, start in (("low", low, 0.0), ("high", high, plateau + ramp)):
        first = int(math.ceil(start / width - 1e-9)) + 1     # skip the bin right after the change
        last = int((start + plateau) / width) - 1
        per_rep = []
        for rep in res.replications:
            vals = [rep.metrics.get(f"bin.{i:03d}.wait_mean", math.nan) for i in range(first, last + 1)]
            per_rep.append(sum(vals) / len(vals))
        from simulator.stats import confidence_interval
        ci = confidence_interval(per_rep, positive=True)
        checks.append(Check(f"plateau {name} rate={lam:g}", "one_agent", "Wq (Erlang C)",
                            analytic.mmc_wait(lam, 1.0, c), ci["mean"], ci["low"], ci["high"]))
    return checks
