"""What-if without editing files (--set), honest intervals for waits, and runs to a precision."""
from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings, strategies as st

from simulator.api import run
from simulator.checks import ScenarioError
from simulator.cli import main
from simulator.keys import parse_set, parse_value
from simulator.scenario import Scenario
from simulator.sequential import Precision, relative_error, run_until
from simulator.stats import confidence_interval, disagree


@pytest.fixture
def small(tmp_path, small_toml):
    path = tmp_path / "s.toml"
    path.write_text(small_toml())
    return path


# --- --set ----------------------------------------------------------------------------------------

def test_set_changes_keys_like_the_file_would(small, tmp_path, small_toml):
    edited = tmp_path / "e.toml"
    edited.write_text(small_toml().replace("rate = 1.0", "rate = 1.5").replace("count = 2", "count = 3"))
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["run", str(small), "--out", str(a), "--quiet", "--no-plots", "--workers", "1",
                 "--set", "workload.rate=1.5", "--set", "agents.count=3"]) == 0
    assert main(["run", str(edited), "--out", str(b), "--quiet", "--no-plots", "--workers", "1"]) == 0
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (a, b))
    assert sa["metrics"] == sb["metrics"] and sa["scenario"]["workload"]["rate"] == 1.5


def test_set_values_are_toml_or_text():
    assert parse_value("40") == 40 and parse_value("2.5") == 2.5 and parse_value("true") is True
    assert parse_value("[1, 2]") == [1, 2] and parse_value('{dist = "fixed", value = 3}') == {"dist": "fixed", "value": 3}
    assert parse_value("40Gbit/s") == "40Gbit/s" and parse_value("least_loaded") == "least_loaded"
    assert parse_set("agents[gpu].count = 4") == ("agents[gpu].count", 4)


@pytest.mark.parametrize("spec, message", [
    ("workload.rate", "expected KEY=VALUE"),
    ("=3", "expected KEY=VALUE"),
    ("workload.rate=", "expected KEY=VALUE"),
    ("work load.rate=3", "malformed key part 'work load'"),
])
def test_set_malformed_specs(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_set(spec)


@pytest.mark.parametrize("spec, shown", [
    ("workload.rat=3", "scenario key workload.rat = 3: unknown key (did you mean 'rate'?)"),
    ("wrokload.rate=3", "scenario key wrokload = {'rate': 3}: unknown key (did you mean 'workload'?)"),
    ("agents.count=0", "scenario key agents[0].count = 0: must be an integer >= 1 (from --set)"),
    ("workload.rate=fast", "scenario key workload.rate = 'fast': must be a number (from --set)"),
    ("network.source_bandwidth=10Gbits", "network.source_bandwidth = '10Gbits': '10Gbits' is not a bandwidth"),
    ("agents[gpu].count=3", "no agent group named 'gpu' (known: w)"),
])
def test_set_errors_name_the_key_and_value(small, tmp_path, capsys, spec, shown):
    with pytest.raises(SystemExit) as exc:
        main(["run", str(small), "--out", str(tmp_path / "o"), "--quiet", "--set", spec])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and shown in err
    assert not (tmp_path / "o").exists()          # nothing written


def test_set_on_sweep_and_plan(small, tmp_path, capsys):
    assert main(["sweep", str(small), "--vary", "agents.count=2,3", "--out", str(tmp_path / "s"), "--quiet",
                 "--workers", "1", "--set", "workload.rate=0.2"]) == 0
    rows = json.loads((tmp_path / "s" / "sweep.json").read_text())["points"]
    assert all(r["metrics"]["throughput"]["mean"] < 0.4 for r in rows)
    assert main(["plan", str(small), "--target", "wait_mean<=1s", "--vary", "agents.count", "--range", "1..8",
                 "--quiet", "--workers", "1", "--set", "workload.rate=0.2", "--criterion", "mean"]) == 0
    assert "agents.count = 1:" in capsys.readouterr().out     # at 0.2 jobs/s one agent does


# --- intervals --------------------------------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.floats(0, 1e6), st.floats(1e-6, 1e-3)), min_size=2, max_size=12))
def test_wait_intervals_never_go_below_zero(values):
    ci = confidence_interval(values, positive=True)
    assert ci["low"] >= 0 and ci["high"] >= ci["low"]
    assert ci["method"] in ("cox-log", "t-clipped", "t")
    if min(values) > 0 and len(set(values)) > 1:
        assert ci["method"] == "cox-log"


def test_the_issues_outlier_case():
    """Three quiet replications and one outlier: the t interval went below zero ('24.77 +- 77.6');
    the log-normal interval is positive, contains the mean and is wide to the right."""
    vals = [4.0, 5.0, 6.0, 84.1]
    t = confidence_interval(vals)
    assert t["low"] < 0
    ci = confidence_interval(vals, positive=True)
    assert 0 < ci["low"] < ci["mean"] < ci["high"] and ci["high"] - ci["mean"] > ci["mean"] - ci["low"]
    assert disagree(ci) and not disagree(confidence_interval([5.0, 5.5, 6.0], positive=True))


def test_cox_interval_covers_the_lognormal_mean():
    """Coverage of the true mean of a log-normal over 400 samples of 5 replications: about 95 %."""
    import random
    rng = random.Random(4)
    mu, sigma = 1.0, 0.8
    true = math.exp(mu + sigma * sigma / 2)
    hits = 0
    for _ in range(400):
        ci = confidence_interval([rng.lognormvariate(mu, sigma) for _ in range(5)], positive=True)
        hits += ci["low"] <= true <= ci["high"]
    assert 0.90 <= hits / 400 <= 0.995


def test_run_output_shows_disagreeing_replications(small, tmp_path, capsys):
    assert main(["run", str(small), "--out", str(tmp_path / "o"), "--quiet", "--no-plots", "--workers", "1",
                 "--set", "run.replications=4", "--set", "workload.rate=1.9"]) == 0
    out = capsys.readouterr().out
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    wait = summary["metrics"]["wait_p95"]
    assert wait["low"] >= 0 and wait["method"] in ("cox-log", "t-clipped")
    line = [x for x in out.splitlines() if x.strip().startswith("wait_p95")][0]
    assert ("replications disagree: " in line) == disagree(wait)
    assert ("verdict: " in out or "verdict (on the means" in out) and summary["verdict"] and summary["wait_split"]


# --- sequential replications ---------------------------------------------------------------------

def test_precision_adds_replications_until_reached(small):
    sc = Scenario.from_toml(small)
    res = run_until(sc, Precision(0.10, "wait_mean", cap=40))
    n = len(res.replications)
    assert 3 <= n <= 40
    if n < 40:
        assert relative_error(res.metrics["wait_mean"]) <= 0.10
        # one replication fewer had not reached it: the procedure stops at the first n that does
        fewer = run(sc, replications=n - 1)
        assert n == 3 or relative_error(fewer.metrics["wait_mean"]) > 0.10
    # replication r is the same whatever the batch: the first 3 equal a plain run of 3
    assert [r.metrics for r in res.replications[:3]] == [r.metrics for r in run(sc, replications=3).replications]


def test_precision_stops_at_the_cap(small):
    res = run_until(Scenario.from_toml(small), Precision(0.0001, "wait_p95", cap=4))
    assert len(res.replications) == 4
    assert "NOT reached" in Precision(0.0001, "wait_p95", cap=4).describe(res)


def test_precision_cli(small, tmp_path, capsys):
    assert main(["run", str(small), "--out", str(tmp_path / "o"), "--quiet", "--no-plots", "--workers", "1",
                 "--precision", "0.2", "--precision-metric", "wait_mean", "--max-replications", "6"]) == 0
    assert "precision " in capsys.readouterr().out
    for bad, message in (("0", "must be a fraction in (0, 1)"), ("x", "is not a number")):
        with pytest.raises(SystemExit):
            main(["run", str(small), "--out", str(tmp_path / "p"), "--precision", bad])
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["run", str(small), "--out", str(tmp_path / "q"), "--quiet", "--precision", "0.1",
              "--precision-metric", "nope", "--max-replications", "3"])
    assert "unknown metric 'nope'" in capsys.readouterr().err


def test_progress_lines_off_a_terminal(small, tmp_path, capsys, monkeypatch):
    """Off a terminal a heartbeat prints a line every LINE_EVERY seconds, also in the middle of a
    replication (here every 10 ms, over a run made long enough to see several)."""
    from simulator.commands import _common
    monkeypatch.setattr(_common, "LINE_EVERY", 0.01)
    assert main(["run", str(small), "--out", str(tmp_path / "o"), "--no-plots", "--workers", "1",
                 "--set", "run.jobs=20000"]) == 0
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.startswith("replication ")]
    assert len(lines) >= 2 and all(x.endswith(" s elapsed") for x in lines)
    assert any("replication 1/2 (simulated s): " in x for x in lines)
    assert main(["run", str(small), "--out", str(tmp_path / "q"), "--no-plots", "--workers", "1", "--quiet",
                 "--set", "run.jobs=20000"]) == 0
    assert capsys.readouterr().err == ""


def test_scenario_error_from_set_leaves_the_scenario_alone(small):
    sc = Scenario.from_toml(small)
    with pytest.raises(ScenarioError):
        sc.with_values({"agents.count": -1})
    assert sc.agents[0].count == 2


def test_plan_with_precision_runs_each_point_to_it(small, capsys):
    assert main(["plan", str(small), "--target", "wait_mean<=1s", "--vary", "agents.count", "--range", "2..4",
                 "--quiet", "--workers", "1", "--criterion", "mean", "--precision", "0.5",
                 "--max-replications", "5"]) == 0
    out = capsys.readouterr().out
    assert out.strip().splitlines()[-1].startswith("agents.count = 2:")


@pytest.mark.parametrize("argv, message", [
    (["--minimise", "cost"], "--minimise needs --values"),
    (["--values", "1,2"], "--values is for --minimise"),
    (["--minimise", "cost", "--values", "5..1"], "--values 'agents.count=5..1': the range end 1 is below its start 5"),
    (["--minimise", "nope", "--values", "2,3"], "--minimise: unknown metric 'nope'"),
])
def test_plan_minimise_usage_errors(small, capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        main(["plan", str(small), "--target", "wait_mean<=1s", "--vary", "agents.count", "--quiet",
              "--workers", "1"] + argv)
    assert exc.value.code == 2 and message in capsys.readouterr().err
