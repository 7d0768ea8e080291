"""Issue 20: plans a planner can sign. One test (or more) per item of "What was seen"; each failed
before: the plan answered a value at offered load 1, searched from 1 through values arithmetic
rules out, averaged split replications into "not saturated", had no cost per day, claimed
zero-width intervals over one trace, and let bad input through."""
from __future__ import annotations

import json
import math

import pytest

from simulator import analytic, bottleneck, stability, warmup
from simulator.api import Replication, Results, run
from simulator.cli import main
from simulator.scenario import Scenario
from simulator.sweep import parse_target, plan


def _scenario(**run_keys) -> dict:
    return {
        "agents": [{"name": "w", "count": 1, "slots": 1, "price_per_hour": 1.0}],
        "workload": {"rate": 2.0, "runtime": {"dist": "exponential", "mean": 2.0}},
        "clients": {"poll_interval": 0, "dispatch": "when_free"},
        "run": {"duration": 400, "warmup": 50, "seed": 1, **run_keys},
    }


# --- 1. the plan answered an unstable fleet ------------------------------------------------------
def test_a_value_at_offered_load_one_is_unstable_never_simulated_never_the_answer():
    """2 jobs/s of 2 s: 4 busy slots offered. At 4 agents a short run meets a loose target (the
    queue has not grown yet); the plan must call 4 unstable, not simulate it, and answer >= 5."""
    sc = Scenario.from_dict(_scenario())
    a = stability.analyse(sc.with_value("agents.count", 4))
    assert a.unstable and a.unstable[0].kind == "slots" and "offered 100 %" in a.verdict()
    result = plan(sc, "agents.count", parse_target("p95_wait<=1000s"), low=1, high=16, replications=2)
    assert result.value is not None and result.value >= 5
    p4 = result.points[4]
    assert p4.status == "unstable" and p4.results is None
    assert all(p.status == "unstable" for v, p in result.points.items() if v <= 4)


def test_run_shows_the_offered_load_and_says_unstable(tmp_path, capsys):
    path = tmp_path / "s.toml"
    path.write_text("""
[[agents]]
name = "w"
count = 4
[workload]
rate = 2.0
runtime = { dist = "exponential", mean = 2.0 }
[clients]
poll_interval = 0
[run]
duration = 300
""")
    assert main(["run", str(path), "--out", str(tmp_path / "o"), "--quiet", "--no-plots", "--no-jobs-csv"]) == 0
    out = capsys.readouterr().out
    assert "offered load (analytic): unstable: the slots of group w are offered 100 % of capacity" in out
    assert "warning: no steady state" in out
    saved = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert saved["offered_load"]["resources"][0]["rho"] == pytest.approx(1.0)


# --- 2. search through noise -----------------------------------------------------------------------
def test_the_search_starts_at_the_first_pass_and_never_simulates_what_arithmetic_rules_out():
    """9 jobs/s of 1 s over one-slot agents fed from a shared queue (M/M/c): Erlang C says 13 for a
    p95 wait under 0.5 s; the old search simulated 1, 2, 4, 8 first. With 4 replications at most,
    what the plan cannot separate from the target is named."""
    data = _scenario(duration=300)
    data["workload"] = {"rate": 9.0, "runtime": {"dist": "exponential", "mean": 1.0}}
    sc = Scenario.from_dict(data)
    result = plan(sc, "agents.count", parse_target("p95_wait<=0.5s"), low=1, high=128, replications=2,
                  max_replications=4)
    simulated = [v for v, p in result.points.items() if p.results is not None]
    assert min(simulated) >= 10 and len(simulated) <= 5, result.points
    assert any(n.startswith("first pass: offered load a = 9 busy slots; Erlang C") for n in result.notes)
    assert result.value is not None and 13 <= result.value <= 16
    if result.value > 13:
        assert any(n.startswith("could not separate 13..") for n in result.notes), result.notes


def test_decisions_need_significance_and_replications_are_added_near_the_target():
    from simulator.search import decide
    t = parse_target("wait_p95<=30")
    assert decide(t, {"mean": 20, "low": 15, "high": 25}, "ci") == "meets"
    assert decide(t, {"mean": 40, "low": 35, "high": 45}, "ci") == "fails"
    assert decide(t, {"mean": 28, "low": 20, "high": 36}, "ci") == "unsure"


def test_a_continuous_key_is_searched_to_its_resolution_with_units(tmp_path, capsys):
    """A 10 MB file per job at 2 jobs/s, no cache: the source must carry 20 MB/s. The old search
    bisected to single bytes per second; --resolution stops it at 10 MB/s steps."""
    path = tmp_path / "s.toml"
    path.write_text("""
[[agents]]
name = "w"
count = 8
[network]
source_bandwidth = "1GB/s"
link_bandwidth = "1GB/s"
cache = false
[workload]
rate = 2.0
runtime = { dist = "exponential", mean = 1.0 }
  [workload.files]
  count = 1
  size = "10MB"
[clients]
poll_interval = 0
[run]
duration = 300
warmup = 30
seed = 1
replications = 2
""")
    code = main(["plan", str(path), "--target", "p95_wait<=2s", "--vary", "network.source_bandwidth",
                 "--range", "1MB/s..1GB/s", "--resolution", "10MB/s", "--quiet", "--workers", "1",
                 "--max-replications", "4"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "network.source_bandwidth <= " in out and "unstable: the file source" in out
    answer = float(out.strip().splitlines()[-1].split(" = ")[1].split(":")[0])
    assert 20e6 < answer <= 1e9
    tried = [float(line.split("=")[1].split(":")[0]) for line in out.splitlines()
             if line.startswith("  network.source_bandwidth=")]
    assert len(tried) <= 14 and all(abs(a - b) >= 10e6 * 0.999 for a in tried for b in tried if a != b)


@pytest.mark.parametrize("flag,value,message", [
    ("--resolution", "fast", "--resolution 'fast'"),
    ("--resolution", "0MB/s", "must be a finite step > 0"),
])
def test_bad_resolution_is_refused(tmp_path, capsys, flag, value, message):
    path = tmp_path / "s.toml"
    path.write_text('[[agents]]\ncount = 2\n[workload]\nrate = 1.0\nruntime = 1.0\n[run]\njobs = 10\n')
    with pytest.raises(SystemExit) as info:
        main(["plan", str(path), "--target", "p95_wait<=2s", "--vary", "network.source_bandwidth",
              "--range", "1MB/s..1GB/s", flag, value, "--quiet"])
    assert info.value.code == 2 and message in capsys.readouterr().err


# --- 3. replications that tip -------------------------------------------------------------------------
def _rep(i: int, metrics: dict) -> Replication:
    return Replication(i, metrics, [], ("time",), {}, 1.0, ([], []))


def test_replications_that_split_are_reported_per_replication_not_averaged():
    calm = {"wait_split.staging": 0.1, "wait_split.wait": 0.0, "wait_split.client_queue": 0.0,
            "source_utilisation": 0.19, "source_saturated": 0.0, "utilisation.w": 0.75}
    tipped = dict(calm, **{"wait_split.staging": 300.0, "source_utilisation": 1.0, "source_saturated": 1.0})
    reps = [_rep(0, calm), _rep(1, tipped), _rep(2, calm), _rep(3, tipped)]
    text = bottleneck.split_text(reps)
    assert text.startswith("replications disagree: 2 of 4 replications saturated ")
    assert "2 of 4 replications saturated the file source (the file source is 100 % busy" in text
    assert "2 of 4 replications saturated nothing (no resource is saturated" in text
    noise = [_rep(0, dict(calm, **{"utilisation.w": 0.68})), _rep(1, dict(calm, **{"utilisation.w": 0.71}))]
    assert bottleneck.split_text(noise) == ""
    # the mean over replications says "no resource is saturated"... the split is said beside it
    from simulator.search import replication_split
    sc = Scenario.from_dict(_scenario())
    res = Results(sc, reps)
    assert "the file source" in replication_split(parse_target("wait_p95<=30"), res)


def _cached_files(source: str, capacity: str, **run_keys) -> dict:
    """4 agents of 2 slots, one 10 MB file per job out of a catalogue of 100, the given source
    bandwidth and cache capacity (the scenarios of the two cache tests below)."""
    return {
        "agents": [{"name": "w", "count": 4, "slots": 2}],
        "network": {"source_bandwidth": source, "link_bandwidth": "1GB/s", "cache_capacity": capacity},
        "workload": {"rate": 4.0, "runtime": {"dist": "exponential", "mean": 1.0},
                     "files": {"count": 1, "catalog": 100, "size": "10MB"}},
        "clients": {"poll_interval": 0},
        "run": {"seed": 1, **run_keys},
    }


def test_a_cold_start_that_overloads_the_source_is_said_and_warm_caches_start_filled():
    sc = Scenario.from_dict(_cached_files("30MB/s", "200MB", duration=200, warmup=10))
    a = stability.analyse(sc)
    assert a.cold_bytes == pytest.approx(40e6) and a.steady_bytes < 30e6 and a.fill_time > 10
    assert any("a cold start asks" in n for n in a.notes)
    from simulator import diagnose
    res = run(sc)
    assert any(w.startswith("the caches take about") for w in diagnose.steady_lines(res, a))
    from simulator.engine import Simulation
    sim = Simulation(sc, 0)
    n = sim.staging.prefill(sim.agents, sim.catalogs, [1.0])
    assert n == 20      # 200 MB of 10 MB files: the 20 most popular
    assert all(set(ag.cache) == set(range(20)) and ag.cache_used == pytest.approx(200e6) for ag in sim.agents)


def test_run_warm_cache_starts_every_cache_filled():
    data = _cached_files("1GB/s", "500MB", duration=60)
    cold = run(Scenario.from_dict(data)).mean("cache_hit_ratio")
    data["run"]["warm_cache"] = True
    warm = run(Scenario.from_dict(data)).mean("cache_hit_ratio")
    assert warm > cold + 0.2, (cold, warm)


def test_sweep_points_say_unstable(tmp_path, capsys):
    path = tmp_path / "s.toml"
    path.write_text('[[agents]]\ncount = 1\n[workload]\nrate = 2.0\nruntime = 2.0\n[clients]\npoll_interval = 0\n'
                    '[run]\nduration = 100\n')
    assert main(["sweep", str(path), "--vary", "agents.count=4..5", "--out", str(tmp_path / "o"), "--quiet",
                 "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert out.count("unstable: the slots of group group0 offered 100 % of capacity") == 1


# --- 4. missing answers ------------------------------------------------------------------------------------
def test_cost_per_day_and_per_job_leave_the_drain_out():
    data = _scenario(drain=True)
    data["agents"][0]["count"] = 3
    res = run(Scenario.from_dict(data))
    m = res.replications[0].metrics
    assert m["cost_per_day"] == pytest.approx(3 * 24 * 1.0)
    assert m["cost_per_job"] == pytest.approx(72.0 / (m["throughput"] * 86400))
    assert m["cost"] > 3 * 400 / 3600       # the run's cost includes the drain


def test_an_unlimited_source_says_what_it_must_deliver():
    data = _scenario()
    data["network"] = {"link_bandwidth": "10GB/s", "cache": False}
    data["workload"]["files"] = {"count": 2, "size": "50MB"}
    a = stability.analyse(Scenario.from_dict(data))
    src = next(ld for ld in a.loads if ld.kind == "source")
    assert src.offered == pytest.approx(2.0 * 2 * 50e6)
    assert any("the source is unlimited: it must deliver 1.6 Gbit/s" in n for n in a.notes)


def test_run_prints_the_worst_bin_with_its_slot_utilisation(tmp_path, capsys):
    from simulator.commands.run import report_lines
    res = run(Scenario.from_dict(_scenario(bin=100)).with_value("agents.count", 5))
    lines = "\n".join(report_lines(res))
    assert "wait_p95_worst_bin" in lines and "worst bin from " in lines and "% busy in that bin" in lines


def test_plan_plot_has_a_cost_axis_and_marks_the_answer(tmp_path, capsys):
    path = tmp_path / "s.toml"
    path.write_text("""
[[agents]]
name = "w"
count = 3
price_per_hour = 2.0
[workload]
rate = 1.0
runtime = { dist = "exponential", mean = 1.0 }
[clients]
poll_interval = 0
[run]
duration = 300
seed = 1
replications = 2
""")
    assert main(["plan", str(path), "--target", "wait_mean<=1s", "--vary", "agents.count", "--minimise", "cost",
                 "--values", "1,2,3,4", "--criterion", "mean", "--quiet", "--workers", "1", "--plot", str(tmp_path / "p")]) == 0
    saved = json.loads((tmp_path / "p" / "plan.json").read_text())
    assert saved["answer"] in (2, 3, 4) and all(p["cost"] is not None for p in saved["points"])
    assert [p["status"] for p in saved["points"] if p["value"] == 1] == []   # 1 agent: unstable, not plotted
    assert (tmp_path / "p" / "plan-wait_mean.png").stat().st_size > 1000
    assert "agents.count=1: unstable" in capsys.readouterr().out


def test_plan_on_the_worst_bin_draws_the_answer_by_hour_with_the_target(tmp_path, capsys):
    path = tmp_path / "s.toml"
    path.write_text('[[agents]]\ncount = 1\n[workload]\nrate = 2.0\nruntime = { dist = "exponential", mean = 1.0 }\n'
                    '[clients]\npoll_interval = 0\n[run]\nduration = 300\nbin = 60\nseed = 1\nreplications = 2\n')
    assert main(["plan", str(path), "--target", "wait_p95_worst_bin<=100s", "--vary", "agents.count", "--range",
                 "1..8", "--quiet", "--workers", "1", "--plot", str(tmp_path / "p")]) == 0
    assert (tmp_path / "p" / "hourly-wait_p95.png").stat().st_size > 1000
    assert "agents.count=2: unstable" in capsys.readouterr().out


def test_agent_load_plot_only_with_rpc_costs(tmp_path):
    from simulator import output
    data = _scenario()
    data["agents"][0]["count"] = 3
    res = run(Scenario.from_dict(data))
    output.write(res, tmp_path / "a")
    assert not (tmp_path / "a" / "agent-load.png").exists() and (tmp_path / "a" / "states.png").exists()
    data["clients"]["rpc_cost_poll"] = "1ms"
    data["clients"]["poll_interval"] = 1
    output.write(run(Scenario.from_dict(data)), tmp_path / "b")
    assert (tmp_path / "b" / "agent-load.png").exists()


# --- 5. intervals that claim too much ------------------------------------------------------------------------
def test_replications_over_one_trace_are_one_run_with_batch_means(tmp_path, capsys):
    import random
    rng = random.Random(3)
    t, rows = 0.0, ["submit,runtime"]
    for _ in range(3000):
        t += rng.expovariate(1.6)
        rows.append(f"{t:.4f},{rng.expovariate(1.0):.4f}")
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    path = tmp_path / "s.toml"
    path.write_text('[[agents]]\ncount = 1\nslots = 2\n[workload]\narrivals = "csv"\ntrace = "t.csv"\n'
                    'runtime = "trace"\n[clients]\npoll_interval = 0\n[run]\nreplications = 3\n')
    assert main(["run", str(path), "--out", str(tmp_path / "o"), "--quiet", "--no-plots", "--no-jobs-csv",
                 "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "the 3 replications are the same run" in out
    saved = json.loads((tmp_path / "o" / "summary.json").read_text())
    w = saved["metrics"]["wait_mean"]
    assert w["method"] == "batch-means" and w["high"] > w["low"]
    assert saved["metrics"]["throughput"]["half_width"] is None      # no zero-width interval claimed


def test_shares_have_intervals_inside_zero_one():
    sc = Scenario.from_dict(_scenario())
    reps = [_rep(i, {"utilisation.w": v, "source_saturated": s}) for i, (v, s) in
            enumerate([(0.999, 0.0), (1.0, 0.01), (0.97, 0.0)])]
    m = Results(sc, reps).metrics
    assert m["utilisation.w"]["high"] <= 1.0 and m["source_saturated"]["low"] >= 0.0
    assert m["utilisation.w"]["method"].endswith("-clipped")


# --- 6. bad input ---------------------------------------------------------------------------------------------------
def _write(tmp_path, text: str):
    path = tmp_path / "s.toml"
    path.write_text(text)
    return path


def test_a_model_that_cannot_fit_in_memory_is_refused_with_the_estimate_and_the_key(tmp_path, capsys):
    path = _write(tmp_path, "[[agents]]\ncount = 1e9\n[workload]\nrate = 1.0\nruntime = 1.0\n[run]\njobs = 10\n")
    with pytest.raises(SystemExit) as info:
        main(["run", str(path), "--out", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "agents[0].count" in err and "would need about 1.6 TB of memory" in err


def test_jobs_capped_by_duration_and_a_unit_slip_are_warned(tmp_path, capsys):
    path = _write(tmp_path, """
[[agents]]
count = 4
[network]
link_bandwidth = 10
[workload]
rate = 1.0
runtime = 1.0
  [workload.files]
  size = "10MB"
[clients]
poll_interval = 0
[run]
duration = 60
jobs = 1000000
""")
    from simulator import sanity
    warns = sanity.warnings(Scenario.from_toml(path))
    assert any("run.jobs = 1000000 is capped by run.duration = 60 s" in w for w in warns)
    assert any(w.startswith("network.link_bandwidth makes each agent link of group0 binding by orders of magnitude")
               and "10 B/s" in w for w in warns), warns


def test_an_unsorted_profile_csv_names_the_file_and_line(tmp_path):
    from simulator.checks import ScenarioError
    (tmp_path / "day.csv").write_text("time,rate\n0,1\n100,2\n50,3\n")
    data = _scenario()
    data["workload"] = {"profile": {"file": "day.csv"}, "runtime": 1.0}
    with pytest.raises(ScenarioError) as info:
        Scenario.from_dict(data, base_dir=tmp_path)
    assert "day.csv:4: time 50 does not increase" in str(info.value)


def test_a_misspelt_target_metric_gets_a_did_you_mean(tmp_path, capsys):
    path = _write(tmp_path, "[[agents]]\ncount = 2\n[workload]\nrate = 1.0\nruntime = 1.0\n[run]\njobs = 50\n")
    with pytest.raises(SystemExit) as info:
        main(["plan", str(path), "--target", "p95_wiat<=30s", "--vary", "agents.count", "--quiet"])
    assert info.value.code == 2 and "did you mean 'wait_p95'" in capsys.readouterr().err


# --- steady state: MSER, trend, batch means ----------------------------------------------------------------------------
def test_mser_finds_an_initial_transient_and_the_trend_test_a_growing_queue():
    import random
    rng = random.Random(5)
    series = warmup.WaitSeries(1000.0)
    for i in range(20000):
        t = i * 0.05
        series.add(t, 50.0 * math.exp(-t / 50.0) + rng.expovariate(0.2))
    frozen = series.frozen()
    cut, settled = warmup.mser(frozen, 1000.0)
    assert settled and 100 <= cut <= 400, cut
    growing = warmup.WaitSeries(1000.0)
    for i in range(20000):
        growing.add(i * 0.05, i * 0.001 + (i % 5) * 0.1)
    rise, tstat = warmup.trend(growing.frozen(), 100.0, 1000.0)
    assert warmup.trending(rise, tstat)
    flat_rise, flat_t = warmup.trend(frozen, 500.0, 1000.0)
    assert not warmup.trending(flat_rise, flat_t)


def test_relaxation_time_and_the_run_length_of_a_point():
    from simulator.search import run_length
    assert analytic.relaxation_time(1.0, 0.81, 2.0) == pytest.approx(2.0 / (2.8 * 0.01))
    sc = Scenario.from_toml("examples/cluster.toml").with_value("agents.count", 76)
    longer, notes = run_length(sc, stability.analyse(sc))
    assert longer.run.duration > 3600 and notes[0].startswith("run extended to ")


def test_validate_rows_pollaczek_khinchine_gim1_and_a_plan_at_load_one():
    from simulator import theory
    rows = theory.mg1_checks(jobs=5000, replications=3) + theory.gim1_checks(jobs=5000, replications=3)
    rows.append(theory.unstable_plan_check())
    assert all(r.ok for r in rows), theory.table(rows)
    assert analytic.pollaczek_khinchine(0.5, 1.0, 1.0) == pytest.approx(analytic.mmc_wait(0.5, 1.0, 1))
    sigma = analytic.gim1_sigma(lambda x: 0.8 / (0.8 + x), 1.0)    # Poisson arrivals: M/M/1, sigma = rho
    assert sigma == pytest.approx(0.8)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_flagship_plan_answers_a_stable_fleet(seed, capsys):
    """examples/cluster.toml at 20 jobs/s: 75 agents is offered load 1; long runs confirm 76-79."""
    assert main(["plan", "examples/cluster.toml", "--target", "p95_wait<=30s", "--vary", "agents.count",
                 "--seed", str(seed), "--quiet", "--workers", "2"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert 76 <= int(last.split(" = ")[1].split(":")[0]) <= 79, last
