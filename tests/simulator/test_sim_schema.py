"""The scenario schema is declared once: parsing, defaults, unknown keys and the docs' key table
all come from it; model parts come from one registry per kind."""
from __future__ import annotations

import copy
import itertools
import math
import random
from pathlib import Path

import pytest

from simulator import arrivals, distributions, keydocs, schema
from simulator.api import run
from simulator.arrivals import ARRIVALS, ArrivalProcess
from simulator.autoscale import AUTOSCALERS, Autoscale
from simulator.checks import ScenarioError
from simulator.distributions import KINDS, DistKind
from simulator.policies import BUILTIN
from simulator.registry import Registry, UnknownName
from simulator.scenario import SECTIONS, AgentGroup, Clients, Files, Network, RunControl, Scenario, Workload

ROOT = Path(__file__).resolve().parents[2]


def test_docs_key_table_is_the_schema():
    text = (ROOT / "docs" / "SIMULATOR.md").read_text(encoding="utf-8")
    assert keydocs.replace(text) == text, (
        "docs/SIMULATOR.md's scenario key table differs from the schema: run "
        "`python -m simulator.keydocs --write docs/SIMULATOR.md`")


def test_every_declared_key_has_a_row_and_a_meaning():
    table = keydocs.table()
    for cls in (AgentGroup, Network, Workload, Files, Clients, RunControl, Autoscale):
        for name, spec in schema.keys_of(cls):
            label = f".{spec.toml or name}]`" if spec.kind in ("table", "tables") else f"`{spec.toml or name}`"
            assert label in table, (cls.__name__, name)
            assert schema.meaning(spec), (cls.__name__, name)
    for reg in (ARRIVALS, BUILTIN, AUTOSCALERS):
        for name in reg:
            assert f"`{name}`" in table
    for name in KINDS:
        assert f'dist = "{name}"' in table


def _explicit_defaults(cls):
    """(toml key, default) of the keys whose default is a plain value."""
    for name, spec in schema.keys_of(cls):
        d = spec.default
        if spec.read is None and spec.kind not in ("table", "tables") and d is not schema.REQUIRED \
                and d is not None and not isinstance(d, schema.Derived):
            yield spec.toml or name, d


@pytest.mark.parametrize("section,cls", [("clients", Clients), ("network", Network), ("run", RunControl),
                                         ("agents.0", AgentGroup), ("workload.files", Files)])
def test_a_key_set_to_its_declared_default_changes_nothing(base_scenario, section, cls):
    """The documented default is the one applied: writing it out gives the same scenario."""
    base_scenario["network"] = {}
    plain = Scenario.from_dict(base_scenario)
    for name, default in _explicit_defaults(cls):
        data = copy.deepcopy(base_scenario)
        node = data
        for part in section.split("."):
            node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
        if name in node:
            continue      # the base scenario sets it
        node[name] = default
        assert Scenario.from_dict(data) == plain, f"{section}.{name} = {default!r}"


@pytest.mark.parametrize("path,value,key,shown", [
    (("workload", "arrivals"), "poison", "workload.arrivals", "did you mean 'poisson'"),
    (("clients", "pol_interval"), 2, "clients.pol_interval", "did you mean 'poll_interval'"),
    (("clients", "dispatch"), "when-free", "clients.dispatch", "did you mean 'when_free'"),
    (("workload", "name"), "x", "workload.name", "only a job class"),
    (("workload", "trace"), "x.swf", "workload.trace", "does not read a trace"),
    (("workload", "runtime"), {"dist": "weibul", "mean": 1}, "workload.runtime.dist", "'weibul'"),
])
def test_schema_errors_name_the_key(base_scenario, path, value, key, shown):
    base_scenario[path[0]][path[1]] = value
    with pytest.raises(ScenarioError) as info:
        Scenario.from_dict(base_scenario)
    assert info.value.key == key and shown in str(info.value), str(info.value)


def test_unknown_key_lists_the_declared_keys(base_scenario):
    base_scenario["run"]["jbos"] = 3
    with pytest.raises(ScenarioError) as info:
        Scenario.from_dict(base_scenario)
    declared = sorted(spec.toml or name for name, spec in schema.keys_of(RunControl))
    assert f"known keys: {', '.join(declared)}" in str(info.value)


def test_a_rate_given_to_a_trace_is_refused(base_scenario):
    base_scenario["workload"] = {"arrivals": "swf", "trace": str(ROOT / "tests/simulator/data/nasa-ipsc-1993-excerpt.swf"),
                                 "runtime": "trace", "rate": 3}
    with pytest.raises(ScenarioError, match=r"workload.rate = 3: arrivals = 'swf' takes its times from the trace"):
        Scenario.from_dict(base_scenario)


def test_registry_names_and_errors():
    reg: Registry[int] = Registry("widget", user_spec=True)
    reg.register("alpha", 1, "the first")
    with pytest.raises(ValueError, match="already registered"):
        reg.register("alpha", 2)
    assert reg["alpha"] == 1 and "alpha" in reg and reg.names() == ["alpha"] and reg.doc("alpha") == "the first"
    with pytest.raises(UnknownName, match=r"unknown widget 'alpah' \(did you mean 'alpha'\?\); known: alpha"):
        reg["alpah"]
    assert reg.resolve("math:sqrt") is math.sqrt          # pkgutil.resolve_name
    with pytest.raises(ValueError, match="cannot load it"):
        reg.resolve("no_such_module_xyz:f")
    with pytest.raises(ValueError, match="not callable"):
        reg.resolve("math:pi")
    assert not Registry("thing").is_spec("math:sqrt") and reg.is_spec("math:sqrt")


def _every_other(rate: float, rng: random.Random):
    """Gaps alternating 0.5/rate and 1.5/rate (mean 1/rate), no draw."""
    t = 0.0
    for k in itertools.count():
        t += (0.5 if k % 2 == 0 else 1.5) / rate
        yield t


def test_a_new_arrival_process_is_one_registration(base_scenario):
    """Registering a process is all it takes: validation, engine, docs follow."""
    ARRIVALS.register("every_other", ArrivalProcess(times=_every_other), "alternating gaps (test)")
    try:
        base_scenario["workload"].update({"arrivals": "every_other", "rate": 2.0})
        base_scenario["run"] = {"jobs": 6, "seed": 1}
        res = run(Scenario.from_dict(base_scenario), keep_records=True)
        submits = sorted(r.submit for r in res.records)
        assert submits == pytest.approx([0.25, 1.0, 1.25, 2.0, 2.25, 3.0])
        assert "`every_other`: alternating gaps (test)" in keydocs.table()
        base_scenario["workload"]["profile"] = {"points": [[0, 1]]}
        del base_scenario["workload"]["rate"]
        with pytest.raises(ScenarioError, match="a rate profile needs arrivals = 'poisson'"):
            Scenario.from_dict(base_scenario)
    finally:
        ARRIVALS.unregister("every_other")
    assert "every_other" not in keydocs.table()


def test_a_new_distribution_is_one_registration(base_scenario):
    KINDS.register("triangular", DistKind(("low", "high"), lambda p: (p["low"] + p["high"]) / 2,
                                          lambda p, rng: lambda: rng.triangular(p["low"], p["high"]),
                                          example="low = 1, high = 3"), "triangular (test)")
    try:
        base_scenario["workload"]["runtime"] = {"dist": "triangular", "low": 1, "high": "3s"}
        sc = Scenario.from_dict(base_scenario)
        assert sc.workload.runtime.mean == 2.0
        draws = [sc.workload.runtime.sampler(random.Random(4))() for _ in range(50)]
        assert all(1 <= d <= 3 for d in draws)
        with pytest.raises(ScenarioError, match=r"workload.runtime.mode = 2: unknown parameter for triangular"):
            Scenario.from_dict({**base_scenario, "workload": {**base_scenario["workload"],
                                                               "runtime": {"dist": "triangular", "low": 1, "high": 3, "mode": 2}}})
    finally:
        KINDS.unregister("triangular")


def test_arrival_processes_draw_as_documented():
    rng = random.Random(9)
    got = list(itertools.islice(arrivals.poisson(2.0, rng), 5))
    rng = random.Random(9)
    t, want = 0.0, []
    for _ in range(5):
        t += rng.expovariate(2.0)
        want.append(t)
    assert got == want
    assert list(itertools.islice(arrivals.deterministic(4.0, random.Random(0)), 3)) == [0.25, 0.5, 0.75]


def test_distribution_means_are_exact():
    means = {"fixed": ({"value": 3}, 3), "exponential": ({"mean": 5}, 5), "uniform": ({"low": 1, "high": 4}, 2.5),
             "lognormal": ({"mean": 7, "sigma": 1}, 7), "gamma": ({"shape": 2, "mean": 9}, 9),
             "pareto": ({"alpha": 3, "minimum": 2}, 3.0)}
    assert set(means) == set(KINDS)
    for name, (params, mean) in means.items():
        assert distributions.parse({"dist": name, **params}).mean == mean
    assert distributions.parse({"dist": "pareto", "alpha": 1, "minimum": 2}).mean == math.inf


def test_sections_cover_the_file():
    headers = [h for h, _ in SECTIONS]
    assert headers == ["[[agents]]", "[network]", "[workload]", "[[workload.classes]]", "[clients]", "[run]"]
