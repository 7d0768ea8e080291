"""Exact queueing results the simulator is checked against: Erlang C (M/M/c) and M/M/1."""
from __future__ import annotations


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
