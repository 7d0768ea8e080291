"""Client policies: built-ins behave as documented, python requirements restrict agents, user hooks."""
from __future__ import annotations

from collections import Counter

import pytest

from simulator.api import run
from simulator.scenario import Scenario


def scenario(policy, *, count=4, jobs=8, rate=100.0, runtime=1000.0, extra_groups=(), python=None, network=None,
             dispatch="on_arrival"):
    data = {
        "agents": [{"name": "a", "count": count, "slots": 1, "python": ["3.11.9"]}, *extra_groups],
        "workload": {"arrivals": "deterministic", "rate": rate, "runtime": runtime},
        "clients": {"policy": policy, "poll_interval": 0, "dispatch": dispatch},
        "run": {"jobs": jobs, "seed": 3},
    }
    if python is not None:
        data["workload"]["python"] = python
    if network is not None:
        data["network"] = network
    return Scenario.from_dict(data)


def agents_in_order(res):
    return [r.agent for r in sorted(res.records, key=lambda r: r.job)]


def test_round_robin_cycles():
    assert agents_in_order(run(scenario("round_robin"), keep_records=True)) == [0, 1, 2, 3, 0, 1, 2, 3]


def test_least_loaded_breaks_ties_by_lowest_index():
    # long jobs: each arrival finds the agents before it busy; 4 agents, 8 jobs -> 0,1,2,3 then 0,1,2,3
    assert agents_in_order(run(scenario("least_loaded"), keep_records=True)) == [0, 1, 2, 3, 0, 1, 2, 3]


def test_random_and_power_of_two_use_every_agent_and_are_seeded():
    for policy in ("random", "power_of_two"):
        a = agents_in_order(run(scenario(policy, count=5, jobs=200), keep_records=True))
        b = agents_in_order(run(scenario(policy, count=5, jobs=200), keep_records=True))
        assert a == b and set(a) == set(range(5))
    # power of two keeps queues shorter than random with long jobs
    spread = {p: max(Counter(agents_in_order(run(scenario(p, count=5, jobs=200), keep_records=True))).values())
              for p in ("random", "power_of_two")}
    assert spread["power_of_two"] < spread["random"]


def test_python_requirements_restrict_agents():
    b = {"name": "b", "count": 2, "slots": 1, "python": ["3.12.4"]}
    res = run(scenario("least_loaded", extra_groups=[b], jobs=40, python=[">=3.12", "==3.11.*"]), keep_records=True)
    for r in res.records:
        assert r.group == ("b" if r.python == ">=3.12" else "a"), r


def test_cache_affinity_follows_the_file():
    net = {"link_bandwidth": 1e9}
    files = {"catalog": 1, "count": 1, "size": 1000}
    sc = scenario("cache_affinity", count=4, jobs=20, rate=1.0, runtime=0.1, network=net)
    sc = sc.with_value("workload.files", files)
    res = run(sc, keep_records=True)
    assert set(agents_in_order(res)) == {0}          # everyone goes where the one file is cached
    assert res.mean("cache_hit_ratio") == pytest.approx(19 / 20)


def pick_last(job, agents, rng):
    """A user policy for the tests: always the last eligible agent."""
    return agents[-1]


def test_user_policy_as_callable_and_as_module_path():
    assert set(agents_in_order(run(scenario(pick_last), keep_records=True))) == {3}
    assert set(agents_in_order(run(scenario("test_sim_policies:pick_last"), keep_records=True))) == {3}


def test_user_policy_returning_junk_is_reported():
    with pytest.raises(ValueError, match="returned index 99"):
        run(scenario(lambda job, agents, rng: 99))
    with pytest.raises(ValueError, match="not one of the eligible agents"):
        run(scenario(lambda job, agents, rng: "agent 0"))
    with pytest.raises(ValueError, match="cannot load it"):
        run(scenario("no_such_module_xyz:policy"))


def test_when_free_holds_jobs_at_the_client():
    res = run(scenario("least_loaded", count=2, jobs=4, dispatch="when_free"), keep_records=True)
    recs = sorted(res.records, key=lambda r: r.job)
    # jobs 2 and 3 wait at the client (not at an agent) and are staged only when a slot frees
    assert recs[2].stage_start == recs[0].end and recs[2].run_submit == recs[2].start


def test_cache_affinity_does_not_overload_the_holder():
    """Long jobs all needing the one file: once its holder's slot is taken, jobs go elsewhere
    (pure affinity would queue them all behind agent 0 while three agents idle)."""
    net = {"link_bandwidth": 1e9}
    sc = scenario("cache_affinity", count=4, jobs=4, rate=100.0, runtime=1000.0, network=net)
    sc = sc.with_value("workload.files", {"catalog": 1, "count": 1, "size": 1000})
    res = run(sc, keep_records=True)
    assert sorted(agents_in_order(res)) == [0, 1, 2, 3]
    assert res.mean("wait_p95") < 1.0
