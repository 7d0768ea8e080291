"""Scenario validation: every malformed key is refused with its dotted name and its bad value."""
from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from simulator.checks import ScenarioError
from simulator.scenario import Scenario
from protos.units import UnitError, bandwidth, duration, size

ROOT = Path(__file__).resolve().parents[2]


def mutate(base: dict, path: str, value):
    data = copy.deepcopy(base)
    node = data
    parts = path.split(".")
    for p in parts[:-1]:
        if p.isdigit():
            node = node[int(p)]
        else:
            node = node.setdefault(p, {})
    if value is DELETE:
        node.pop(parts[-1], None)
    else:
        node[parts[-1]] = value
    return data


DELETE = object()

BAD = [
    ("agents.0.slots", 0, "agents[0].slots", "0"),
    ("agents.0.count", -3, "agents[0].count", "-3"),
    ("agents.0.count", 2.5, "agents[0].count", "2.5"),
    ("agents.0.count", True, "agents[0].count", "True"),
    ("agents.0.slots", "four", "agents[0].slots", "'four'"),
    ("agents.0.python", ["3.13.0rc1"], "agents[0].python", "'3.13.0rc1'"),
    ("agents.0.python", ["3.11"], "agents[0].python", "'3.11'"),
    ("agents.0.speed", 0, "agents[0].speed", "0"),
    ("agents.0.sloots", 3, "agents[0].sloots", "did you mean 'slots'"),
    ("agents.0.failures", {"time_to_failure": 100}, "agents[0].failures.time_to_repair", "is required"),
    ("agents.0.failures", {"time_to_failure": {"dist": "weibull"}, "time_to_repair": 1},
     "agents[0].failures.time_to_failure.dist", "'weibull'"),
    ("workload.rate", "fast", "workload.rate", "'fast'"),
    ("workload.rate", -1.0, "workload.rate", "-1.0"),
    ("workload.rate", math.nan, "workload.rate", "nan"),
    ("workload.arrivals", "bursty", "workload.arrivals", "'bursty'"),
    ("workload.runtime", {"dist": "exponential"}, "workload.runtime.mean", "(missing)"),
    ("workload.runtime", {"dist": "exponential", "mean": -2}, "workload.runtime.mean", "-2"),
    ("workload.runtime", {"dist": "uniform", "low": 5, "high": 1}, "workload.runtime.high", "1"),
    ("workload.runtime", {"dist": "exponential", "mean": 1, "sd": 2}, "workload.runtime.sd", "2"),
    ("workload.runtime", "10 parsecs", "workload.runtime", "'10 parsecs'"),
    ("workload.python", [">=3.x"], "workload.python[0]", "'>=3.x'"),
    ("workload.python", ["==2.7"], "workload.python", "'==2.7'"),
    ("workload.python", 3.11, "workload.python", "3.11"),
    ("workload.files", {"size": "10XB"}, "workload.files.size", "'10XB'"),
    ("workload.files", {"catalog": 0}, "workload.files.catalog", "0"),
    ("workload.files", {"popularity": "pareto"}, "workload.files.popularity", "'pareto'"),
    ("workload.trace", "x.swf", "workload.trace", "'x.swf'"),
    ("workload.fail_probability", 1.5, "workload.fail_probability", "1.5"),
    ("clients.policy", "bogus", "clients.policy", "'bogus'"),
    ("clients.dispatch", "later", "clients.dispatch", "'later'"),
    ("clients.poll_backoff", 0.5, "clients.poll_backoff", "0.5"),
    ("clients.poll_interval", "5 s", "clients.poll_max_interval", None),
    ("clients.rpc_latency", "-1ms", "clients.rpc_latency", "'-1ms'"),
    ("network.source_bandwidth", 0, "network.source_bandwidth", "0"),
    ("network.link_bandwidth", "1GBs", "network.link_bandwidth", "'1GBs'"),
    ("network.enabled", "yes", "network.enabled", "'yes'"),
    ("run.jobs", DELETE, "run", None),
    ("run.jobs", 0, "run.jobs", "0"),
    ("run.replications", 0, "run.replications", "0"),
    ("run.seed", -1, "run.seed", "-1"),
    ("run.warmup_jobs", 5000, "run.warmup_jobs", "5000"),
    ("run.duration", "1h", "run.warmup", None),
    ("runn", {}, "runn", "did you mean 'run'"),
]


@pytest.mark.parametrize("path,value,key,shown", BAD, ids=[b[0] + "=" + repr(b[1])[:20] for b in BAD])
def test_malformed_scenario_names_key_and_value(base_scenario, path, value, key, shown):
    data = mutate(base_scenario, path, value)
    if path == "clients.poll_interval":   # an interval above the default max: max must follow
        data["clients"]["poll_max_interval"] = 1
    if path == "run.duration":
        data["run"]["warmup"] = "2h"
    with pytest.raises(ScenarioError) as info:
        Scenario.from_dict(data)
    text = str(info.value)
    assert info.value.key == key, text
    assert f"scenario key {key} =" in text
    if shown:
        assert shown in text, text


def test_agents_must_be_a_nonempty_list(base_scenario):
    for bad in ([], "many", 3):
        data = mutate(base_scenario, "agents", bad)
        with pytest.raises(ScenarioError, match=r"scenario key agents = "):
            Scenario.from_dict(data)


def test_duplicate_group_names_refused(base_scenario):
    base_scenario["agents"].append(dict(base_scenario["agents"][0]))
    with pytest.raises(ScenarioError, match=r"agents\[1\].name = 'workers': duplicate"):
        Scenario.from_dict(base_scenario)


def test_bad_toml_file_and_missing_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[run\njobs = 3\n")
    with pytest.raises(ScenarioError, match="not valid TOML"):
        Scenario.from_toml(bad)
    with pytest.raises(ScenarioError, match="cannot read"):
        Scenario.from_toml(tmp_path / "absent.toml")


@pytest.mark.parametrize("name", ["demo.toml", "cluster.toml", "trace.toml", "day.toml", "watch.toml"])
def test_example_scenarios_validate(name):
    sc = Scenario.from_toml(ROOT / "examples" / name)
    assert sc.total_slots > 0


def test_units():
    assert duration("250ms") == 0.25 and duration("5min") == 300 and duration(3) == 3.0
    assert size("1.5KiB") == 1536 and size("8bit") == 1 and size("10MB") == 1e7
    assert bandwidth("1Gbit/s") == 1.25e8 and bandwidth("inf") == math.inf
    for f, bad in ((duration, "5 minutes"), (size, "10XB"), (bandwidth, "1GB"), (duration, True)):
        with pytest.raises(UnitError):
            f(bad)


def test_with_value_changes_one_key_and_revalidates(base_scenario):
    sc = Scenario.from_dict(base_scenario)
    assert sc.with_value("agents.count", 7).agents[0].count == 7
    assert sc.with_value("agents[workers].slots", 3).agents[0].slots == 3
    assert sc.with_value("workload.rate", 2.5).workload.rate == 2.5
    assert sc.agents[0].count == 2   # the original is untouched
    with pytest.raises(ScenarioError, match=r"agents\[0\].count = 0"):
        sc.with_value("agents.count", 0)
    with pytest.raises(ScenarioError, match="no agent group named 'gpu'"):
        sc.with_value("agents[gpu].count", 1)
    base_scenario["agents"].append({"name": "b"})
    two = Scenario.from_dict(base_scenario)
    with pytest.raises(ScenarioError, match="name one"):
        two.with_value("agents.count", 3)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10**6) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6)

KEYS = ["agents.0.count", "agents.0.slots", "agents.0.python", "agents.0.speed", "agents.0.failures",
        "workload.rate", "workload.runtime", "workload.python", "workload.files", "clients.policy",
        "clients.poll_interval", "clients.poll_backoff", "network", "run.jobs", "run.warmup", "run.seed"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(KEYS), value=json_values)
def test_any_value_is_accepted_or_refused_cleanly(base_scenario, key, value):
    data = mutate(base_scenario, key, value)
    try:
        Scenario.from_dict(data)
    except ScenarioError as exc:
        assert str(exc).startswith("scenario key ")
