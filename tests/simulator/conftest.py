"""Shared helpers of the simulator tests: tiny scenarios and the Little's-law check every run gets."""
from __future__ import annotations

import copy

import pytest

BASE = {
    "agents": [{"name": "workers", "count": 2, "slots": 2}],
    "workload": {"arrivals": "poisson", "rate": 1.0, "runtime": {"dist": "exponential", "mean": 2.0}},
    "clients": {"poll_interval": 0},
    "run": {"jobs": 2000, "seed": 1},
}


# The small scenario of the command-line tests (run, sweep, --set): 2 agents of 2 slots, 1 job/s.
SMALL_TOML = """
[[agents]]
name = "w"
count = 2
slots = 2
[workload]
rate = 1.0
runtime = {{ dist = "exponential", mean = 2.0 }}
[clients]
poll_interval = 0
[run]
jobs = {jobs}
seed = 1
replications = 2
"""


@pytest.fixture
def small_toml():
    """small_toml(jobs=400) -> the small scenario's TOML text (edit it with str.replace)."""
    return lambda jobs=400: SMALL_TOML.format(jobs=jobs)


def little_ok(metrics: dict, tolerance: float = 0.05) -> bool:
    """Little's law: exactly as an identity over the whole run, and L = lambda W over the
    statistics window within `tolerance` (the window's edges make that form approximate)."""
    return metrics["little_identity_error"] <= 1e-9 and metrics["little_rel_error"] <= tolerance


@pytest.fixture
def base_scenario():
    """A fresh dict of a small valid scenario, to modify per test."""
    return copy.deepcopy(BASE)


@pytest.fixture
def check_little():
    def check(results_or_metrics, tolerance: float = 0.05):
        reps = getattr(results_or_metrics, "replications", None)
        metrics = [r.metrics for r in reps] if reps is not None else [results_or_metrics]
        for m in metrics:
            assert little_ok(m, tolerance), (
                f"Little's law: L={m['little_L']:.6g} vs lambda*W={m['little_lambda_W']:.6g} "
                f"(rel error {m['little_rel_error']:.3%} > {tolerance:.0%})")
    return check
