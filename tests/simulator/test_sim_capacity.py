"""Capacity answers: the binding resource in cases built so the answer is known, plans that say why."""
from __future__ import annotations


import pytest

from simulator import bottleneck
from simulator.api import run
from simulator.scenario import Scenario
from simulator.sweep import non_monotone, parse_target, plan


def verdict_of(data: dict, replications: int = 1) -> tuple[bottleneck.Verdict, dict]:
    res = run(Scenario.from_dict(data), replications=replications)
    flat = bottleneck.means(res.metrics)
    return bottleneck.verdict(flat), flat


def staged(source, link, rate, agents=20, slots=8):
    """One 10 MB file per job from a catalog so large (and no cache) that every job transfers it."""
    return {
        "agents": [{"name": "w", "count": agents, "slots": slots}],
        "network": {"source_bandwidth": source, "link_bandwidth": link, "cache": False},
        "workload": {"rate": rate, "runtime": {"dist": "exponential", "mean": 1.0},
                     "files": {"count": 1, "catalog": 100000, "popularity": "uniform", "size": "10MB"}},
        "clients": {"poll_interval": 0, "policy": "least_loaded"},
        "run": {"duration": 400, "warmup": 50, "seed": 3},
    }


def test_source_bound():
    # 9 jobs/s x 10 MB = 90 MB/s through a 100 MB/s source; links (1 GB/s) and 160 slots idle
    v, m = verdict_of(staged("100MB/s", "1GB/s", 9.0))
    assert v.binding is not None and v.binding.kind == "source", v.text
    assert 0.85 < m["source_utilisation"] < 0.95 and m["source_saturated"] > 0.3
    assert v.part == "staging" and v.share > 0.9
    assert v.text.startswith("the file source is ") and "staging makes" in v.text


def test_link_bound():
    # one agent, 40 MB/s link, infinite source: 3.5 jobs/s x 10 MB = 35 MB/s on the one link
    v, m = verdict_of(staged("inf", "40MB/s", 3.5, agents=1, slots=64))
    assert v.binding is not None and v.binding.kind == "link", v.text
    assert 0.8 < m["link_utilisation.w"] < 0.95 and m["source_utilisation"] == 0.0
    assert "link" in v.text and "staging makes" in v.text


def test_slot_bound(base_scenario):
    # no network; 2 agents x 2 slots at rho = 0.9: the wait is WAIT on the agents
    base_scenario["workload"]["rate"] = 1.8
    base_scenario["run"] = {"jobs": 4000, "warmup_jobs": 400, "seed": 2}
    v, m = verdict_of(base_scenario)
    assert v.binding is not None and v.binding.key == "utilisation.workers", v.text
    assert v.part == "wait" and 0.85 < m["utilisation.workers"] < 0.95
    assert v.text.startswith("the slots of group workers are ")


def test_nothing_binds_when_nobody_waits(base_scenario):
    base_scenario["workload"]["rate"] = 0.05
    base_scenario["agents"][0]["count"] = 50
    v, _ = verdict_of(base_scenario)
    assert v.binding is None and "nothing binds" in v.text


def test_rpc_cpu_at_capacity_binds_whatever_the_wait():
    m = {"utilisation.g": 0.95, "rpc_load_max.g": 1.3, "wait_split.client_queue": 0.0,
         "wait_split.staging": 0.0, "wait_split.wait": 4.0}
    v = bottleneck.verdict(m)
    assert v.binding.kind == "rpc" and "130 %" in v.text and "also busy: the slots of group g 95 %" in v.text


def test_wait_split_adds_up_to_the_wait():
    _, m = verdict_of(staged("100MB/s", "1GB/s", 8.0))
    parts = m["wait_split.client_queue"] + m["wait_split.staging"] + m["wait_split.wait"]
    assert parts == pytest.approx(m["wait_mean"], rel=1e-9)


def test_plan_reports_a_non_monotone_response():
    """Each agent caches the files it fetched: more agents, more misses, the 20 MB/s source
    saturates and the wait grows. The plan stops after two values without improvement (not at
    the range's end), flags the step where the metric got worse and names the file source. The
    search starts at the first pass (Erlang C: 2 agents), not at the range's low end."""
    data = {
        "agents": [{"name": "w", "count": 1, "slots": 4}],
        "network": {"source_bandwidth": "20MB/s", "link_bandwidth": "1GB/s", "cache": True},
        "workload": {"rate": 3.0, "runtime": {"dist": "exponential", "mean": 1.0},
                     "files": {"count": 1, "catalog": 500, "popularity": "uniform", "size": "10MB"}},
        "clients": {"poll_interval": 0, "policy": "least_loaded"},
        "run": {"duration": 600, "warmup": 100, "seed": 1},
    }
    result = plan(Scenario.from_dict(data), "agents.count", parse_target("p95_wait<=0.5s"), low=1, high=1024,
                  criterion="mean", replications=2)
    assert result.value is None
    assert "stopped improving" in result.reason and [v for v, _, _ in result.evaluated] == [2, 3, 4]
    assert any(n.startswith("wait_p95 got worse from ") for n in result.notes), result.notes
    assert any(n.startswith("first pass: ") for n in result.notes)
    assert result.verdicts[4].startswith("the file source is ")


def test_non_monotone_detection_needs_disjoint_intervals():
    t = parse_target("wait_p95<=10")
    ci = lambda lo, hi: {"mean": (lo + hi) / 2, "low": lo, "high": hi}   # noqa: E731
    assert non_monotone(t, [(1, ci(5, 7), True), (2, ci(8, 9), True)]) == [
        "wait_p95 got worse from 1 (6) to 2 (8.5)"]
    assert non_monotone(t, [(1, ci(5, 7), True), (2, ci(6.5, 9), True)]) == []


def test_plan_answer_prints_headroom_and_binding(tmp_path, capsys):
    from simulator.cli import main
    path = tmp_path / "s.toml"
    path.write_text("""
[[agents]]
name = "w"
count = 1
slots = 1
[workload]
rate = 1.0
runtime = { dist = "exponential", mean = 1.0 }
[clients]
poll_interval = 0
dispatch = "when_free"
[run]
jobs = 3000
warmup_jobs = 300
seed = 1
replications = 2
""")
    assert main(["plan", str(path), "--target", "p95_wait<=2s", "--vary", "agents.count", "--range", "1..16",
                 "--quiet", "--workers", "1", "--plot", str(tmp_path / "p")]) == 0
    out = capsys.readouterr().out
    assert "agents.count = " in out and "headroom: " in out and "at this point" in out
    import json
    saved = json.loads((tmp_path / "p" / "plan.json").read_text())
    assert f"agents.count = {saved['answer']}:" in out and saved["target"] == "wait_p95 <= 2"
    assert (tmp_path / "p" / "plan-wait_p95.png").stat().st_size > 1000


def test_minimise_cost_picks_the_cheapest_value_meeting_the_target(base_scenario):
    base_scenario["agents"][0]["price_per_hour"] = 2.0
    base_scenario["workload"]["rate"] = 1.5
    base_scenario["run"] = {"jobs": 1500, "seed": 1}
    sc = Scenario.from_dict(base_scenario)
    result = plan(sc, "agents.slots", parse_target("wait_mean<=0.5"), criterion="mean", minimise="cost",
                  values=[2, 3, 4, 6], replications=1)
    met = [v for v, _, ok in result.evaluated if ok]
    assert result.value == min(met, key=lambda v: (result.costs[v], v))
    # a fixed fleet's cost is its agent-hours times the price, whatever the slots
    res = run(sc.with_value("agents.slots", 3))
    assert res.mean("cost") == pytest.approx(2.0 * res.mean("agent_hours"))
    assert res.mean("agent_hours") == pytest.approx(2 * res.replications[0].samples[-1][0] / 3600, rel=0.05)


def test_grid_sweep_one_table_one_plot_per_metric(tmp_path, capsys, small_toml):
    import csv
    from simulator.cli import main
    path = tmp_path / "s.toml"
    path.write_text(small_toml(jobs=300))
    out = tmp_path / "g"
    assert main(["sweep", str(path), "--vary", "agents.count=1..3", "--vary", "workload.rate=0.5,1.5",
                 "--out", str(out), "--quiet", "--workers", "1"]) == 0
    rows = list(csv.DictReader(open(out / "sweep.csv")))
    assert [(r["agents.count"], r["workload.rate"]) for r in rows] == [
        (c, r) for c in ("1", "2", "3") for r in ("0.5", "1.5")]
    assert all(r["verdict"] for r in rows)
    # one plot per metric, x the first key, a line per rate
    assert (out / "sweep-wait_p95.png").exists() and (out / "sweep-throughput.png").exists()
    text = capsys.readouterr().out
    assert "agents.count=3, workload.rate=1.5: wait_p95" in text
    assert main(["sweep", str(path), "--vary", "agents.count=1..3", "--out", str(tmp_path / "t"), "--quiet",
                 "--workers", "1", "--target", "mean_wait<=1s"]) == 0
    marked = [x for x in capsys.readouterr().out.splitlines() if x.startswith("  agents.count=")]
    assert all(x.split(": ")[1].startswith("wait_mean ") for x in marked) and any(x.endswith("meets") for x in marked)
    assert (tmp_path / "t" / "sweep-wait_mean.png").exists()
    # the busier point (1 agent, rate 1.5 > 2 slots / 2 s) is slot-bound
    one = [r for r in rows if r["agents.count"] == "1" and r["workload.rate"] == "1.5"][0]
    assert one["verdict"].startswith("the slots of group w are")


@pytest.mark.parametrize("argv, message", [
    (["--vary", "agents.count=1,2", "--vary", "agents.count=3"], "a key is given twice"),
    (["--vary", "agents.count=1..3", "--vary", "workload.rate"], "expected KEY=LOW..HIGH"),
])
def test_grid_sweep_bad_vary(tmp_path, capsys, argv, message, small_toml):
    from simulator.cli import main
    path = tmp_path / "s.toml"
    path.write_text(small_toml(jobs=300))
    with pytest.raises(SystemExit) as exc:
        main(["sweep", str(path), "--out", str(tmp_path / "o"), "--quiet"] + argv)
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_every_agent_link_is_reported(tmp_path):
    """Per agent: the bytes its link carried in the window and its utilisation (links-rN.csv);
    the group's mean and busiest in the summary are those rows' mean and maximum."""
    import csv
    from simulator import output
    data = staged("inf", "40MB/s", 3.0, agents=3, slots=8)
    res = run(Scenario.from_dict(data))
    rows = res.replications[0].links
    assert [r[0] for r in rows] == [0, 1, 2] and all(r[1] == "w" for r in rows)
    utils = [r[3] for r in rows]
    m = res.replications[0].metrics
    assert m["link_utilisation_max.w"] == max(utils) and m["link_utilisation.w"] == pytest.approx(sum(utils) / 3)
    # 3 jobs/s x 10 MB over three 40 MB/s links: a quarter of their capacity in all
    assert sum(utils) / 3 == pytest.approx(0.25, rel=0.15)
    output.write(res, tmp_path, plots=False)
    saved = list(csv.DictReader(open(tmp_path / "links-r0.csv")))
    assert [float(r["utilisation"]) for r in saved] == pytest.approx(utils)
