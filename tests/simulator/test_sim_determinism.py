"""Same seed, same results (serial or parallel); streams are explicit, never a global seed."""
from __future__ import annotations

import copy
import random

import numpy as np

from simulator.api import run
from simulator.engine import Streams
from simulator.scenario import Scenario
from pathlib import Path

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo.toml"


def small_demo(seed=7):
    sc = Scenario.from_toml(DEMO).with_value("run.duration", 300).with_value("run.warmup", 30)
    return sc.with_value("run.seed", seed).with_value("run.replications", 2)


def test_same_seed_same_results_and_records(check_little):
    a = run(small_demo(), keep_records=True)
    random.seed(12345)            # a global seed must not matter
    np.random.seed(54321)
    b = run(small_demo(), keep_records=True)
    assert a.records == b.records and len(a.records) > 100
    assert a.metrics == b.metrics
    # the exact identity only: with a 30 s warm-up and a 270 s window for 20 s lognormal jobs
    # with failures, the windowed L = lambda W is off by its edges (10 to 15 %); the windowed
    # form is asserted on steady-state runs in test_sim_queueing.py
    check_little(a, tolerance=1.0)


def test_parallel_replications_equal_serial():
    a = run(small_demo(), workers=1)
    b = run(small_demo(), workers=2)
    assert a.metrics == b.metrics


def test_other_seed_other_results():
    assert run(small_demo(7)).metrics["wait_mean"] != run(small_demo(8)).metrics["wait_mean"]


def test_streams_are_independent_per_replication():
    s0, s1 = Streams.from_seed(1, 0), Streams.from_seed(1, 1)
    assert s0.arrivals.random() != s1.arrivals.random()
    again = Streams.from_seed(1, 0)
    assert again.service.random() == Streams.from_seed(1, 0).service.random()


def test_job_attributes_do_not_depend_on_the_system():
    """Common random numbers: arrivals, runtimes, python requirements and failures are the same
    whatever the agent count, policy or network (they are drawn at arrival from their own streams)."""
    data = copy.deepcopy(small_demo().data)
    data["agents"][1].pop("failures")       # agent failures would turn some failures into interrupts
    base = Scenario.from_dict(data, DEMO.parent).with_values({"workload.fail_probability": 0.2,
                                                              "run.replications": 1})
    variants = [base, base.with_value("agents[small].count", 40), base.with_value("clients.policy", "random"),
                base.with_value("network.enabled", False)]
    seen = []
    for sc in variants:
        recs = [r for r in run(sc, keep_records=True).records if r.attempt == 0]
        by_logical = {r.logical: r for r in recs}
        seen.append([(by_logical[i].submit, by_logical[i].python, by_logical[i].outcome == "failed")
                     for i in sorted(by_logical)])
    assert all(s == seen[0] for s in seen[1:]) and any(f for *_, f in seen[0])
