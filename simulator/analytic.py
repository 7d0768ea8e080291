"""Exact queueing results the simulator is checked against: Erlang C (M/M/c) and M/M/1."""
from __future__ import annotations

import math


def erlang_c(lam: float, mu: float, c: int) -> float:
    """Probability that an arriving job waits in an M/M/c queue (Erlang's C formula)."""
    a = lam / mu
    rho = a / c
    if not 0 < rho < 1:
        raise ValueError(f"M/M/c needs 0 < lambda/(c mu) < 1, got {rho:g}")
    # Erlang B by its stable recurrence, then C from B.
    b = 1.0
    for k in range(1, c + 1):
        b = a * b / (k + a * b)
    return b / (1 - rho + rho * b)


def mmc_wait(lam: float, mu: float, c: int) -> float:
    """Mean time in queue Wq of M/M/c."""
    return erlang_c(lam, mu, c) / (c * mu - lam)


def mm1_state_probability(lam: float, mu: float, n: int) -> float:
    """P(N = n) jobs in an M/M/1 system: (1 - rho) rho^n."""
    rho = lam / mu
    if not 0 < rho < 1:
        raise ValueError(f"M/M/1 needs 0 < lambda/mu < 1, got {rho:g}")
    return (1 - rho) * rho**n


# The checks the validate command runs and the tests assert: (name, lambda, mu, c, expected Wq).
ERLANG_CASES = (
    ("M/M/3 light", 0.2, 0.1, 3, 4.444),
    ("M/M/10 rho=0.9", 9.0, 1.0, 10, 0.6687),
    ("M/M/12 rho=0.75", 9.0, 1.0, 12, 0.0887),
    ("M/M/100 rho=0.9", 90.0, 1.0, 100, 0.0217),
)


def erlang_c_tail(lam: float, mu: float, c: int, t: float, scv: float = 1.0) -> float:
    """P(W > t) in M/M/c, C(c, a) exp(-(c mu - lambda) t); with `scv` = (ca^2 + cs^2) / 2 != 1 the
    Allen-Cunneen scaling of the queue for M/G/c and G/G/c (an approximation: the decay rate is
    divided by the squared coefficients' mean, so the mean wait scales by it)."""
    if lam / (c * mu) >= 1:
        return 1.0
    return erlang_c(lam, mu, c) * math.exp(-(c * mu - lam) * t / max(scv, 1e-9))


def mgc_wait_quantile(lam: float, mu: float, c: int, q: float, scv: float = 1.0) -> float:
    """The q-quantile of the wait in M/M/c (Allen-Cunneen scaled by `scv` for M/G/c); inf if unstable."""
    if lam / (c * mu) >= 1:
        return math.inf
    pw = erlang_c(lam, mu, c)
    if pw <= 1 - q:
        return 0.0
    return math.log(pw / (1 - q)) * max(scv, 1e-9) / (c * mu - lam)


def mgc_wait_mean(lam: float, mu: float, c: int, scv: float = 1.0) -> float:
    """Mean wait in queue, M/M/c times `scv` (Allen-Cunneen for M/G/c)."""
    if lam / (c * mu) >= 1:
        return math.inf
    return mmc_wait(lam, mu, c) * scv


def pollaczek_khinchine(lam: float, mean: float, scv: float) -> float:
    """Mean wait in queue of M/G/1 (Pollaczek-Khinchine): rho E[S] (1 + cs^2) / (2 (1 - rho))."""
    rho = lam * mean
    if not 0 < rho < 1:
        raise ValueError(f"M/G/1 needs 0 < rho < 1, got {rho:g}")
    return rho * mean * (1 + scv) / (2 * (1 - rho))


def gim1_sigma(laplace, mu: float) -> float:
    """GI/M/1: the root sigma in (0, 1) of sigma = A*(mu (1 - sigma)), A* the interarrival time's
    Laplace transform (fixed-point iteration, which converges from 0 for rho < 1). Mean wait in
    queue is sigma / (mu (1 - sigma)); P(wait) = sigma."""
    s = 0.0
    for _ in range(10_000):
        nxt = laplace(mu * (1 - s))
        if abs(nxt - s) < 1e-14:
            return nxt
        s = nxt
    return s


def relaxation_time(mu_total: float, rho: float, scv2: float = 2.0) -> float:
    """Odoni and Roth's (1983) empirical relaxation time of a queue started empty:
    (ca^2 + cs^2) / (2.8 mu (1 - sqrt(rho))^2), with mu the total service rate (c mu for c servers).
    The initial bias decays roughly as exp(-t / tau). inf when rho >= 1."""
    if rho >= 1:
        return math.inf
    if rho <= 0:
        return 0.0
    return max(scv2, 1e-3) / (2.8 * mu_total * (1 - math.sqrt(rho)) ** 2)
