"""Replay: the same 60-job plan run on four local reference agents and in the simulator must agree."""
from __future__ import annotations

import copy
import json
import math
import tomllib
from pathlib import Path

import pytest

from simulator.real import replay, replay_report
from simulator.real.calibrate import Calibration
from simulator.scenario import Scenario

# Moderate load (70 % of 8 slots on the scenario's runtimes), state-free dispatch (round robin) and
# one paired plan. Seed 15 draws arrivals whose span is the nominal one (16.1 s for 15.8 s), and
# 1.5 s jobs keep the per-job overhead (about 0.1 s, more on a loaded machine) a small share: in the
# simulator a 30 ms error of that overhead moves this plan's mean wait by 6 % and its p95 by 3 %,
# so the 25 % bound holds on a loaded 2-core machine. The slower starts of a loaded machine are in
# the calibration alongside the run; what fails it is a drift of the model's structure from the
# agent's (slots held beyond the measured turnover, starts out of FIFO order, a changed poll schedule).
SHORT = tomllib.loads((Path(replay.__file__).parent / "replay_60.toml").read_text())
BOUND = 0.25


def test_replay_60_jobs_real_and_simulated_agree(tmp_path):
    sc = Scenario.from_dict(SHORT)
    out = tmp_path / "out"
    report = replay.replay(sc, out, quick_calibration=True, work=tmp_path, progress=lambda m: None)
    client = report["client"]
    assert client["error_count"] == 0 and client["unfinished"] == 0, client
    assert report["real"]["jobs_done"] == report["sim"]["jobs_done"] == 60
    table = replay_report.markdown(report)
    # the model calibrated alongside the run (a probe agent sharing the machine's load at that time);
    # the table also shows the calibration before the run, whose figures drift with the machine's load
    side = report["alongside"]
    assert side.get("rel_error"), f"no turnover measured alongside the run: {side}"
    for name in ("wait_mean", "wait_p95", "throughput"):
        err = side["rel_error"][name]
        assert err <= BOUND, (f"{name}: real {report['real'][name]:.4f} vs simulated {side['sim'][name]:.4f}, "
                              f"relative error {err:.1%} > {BOUND:.0%}; machine load "
                              f"{report['machine']['load_average_after']}\n{table}")
    for name in ("comparison.md", "comparison.json", "states.png", "real-jobs.csv", "sim-jobs.csv",
                 "trace.csv", "calibrated.toml", "calibrated.json"):
        assert (out / name).stat().st_size > 0, name
    assert "not a prediction" in (out / "comparison.md").read_text()
    assert report["attribution"]["slot_overhead_s"] == pytest.approx(report["diagnostics"]["real_slot_overhead_mean_s"])
    saved = json.loads((out / "comparison.json").read_text())
    assert saved["rel_error"]["throughput"] == pytest.approx(report["rel_error"]["throughput"])
    # both sides ran the same plan: same agents, same submissions (to the client's lateness)
    real = {r["index"]: r for r in _rows(out / "real-jobs.csv")}
    sim = {r["index"]: r for r in _rows(out / "sim-jobs.csv")}
    assert set(real) == set(sim) == set(range(60))
    for i in range(60):
        assert real[i]["agent"] == sim[i]["agent"] == i % 4
        assert abs(real[i]["submit"] - sim[i]["submit"]) < 1.0
        assert real[i]["start"] <= real[i]["first"] <= real[i]["last"] <= real[i]["end"] <= real[i]["done_seen"]


def _rows(path):
    import csv
    with open(path, newline="") as fh:
        return [{k: (int(v) if k in ("index", "agent", "polls") else float(v)) for k, v in r.items()}
                for r in csv.DictReader(fh)]


# --- the comparison itself, on hand-made rows ------------------------------------------------------

def _row(i, submit, start, end, seen, polls=2, agent=0):
    return {"index": i, "agent": agent, "submit": submit, "run_submit": submit, "start": start, "end": end,
            "first": start, "last": end, "done_seen": seen, "polls": polls}


def test_metrics_definitions():
    rows = [_row(0, 0.0, 1.0, 2.0, 2.5, polls=3), _row(1, 1.0, 1.5, 3.0, 4.0, polls=1),
            _row(2, 2.0, 5.0, 6.0, 6.0, polls=2)]
    m = replay_report.metrics(rows)
    assert m["wait_mean"] == pytest.approx((1.0 + 0.5 + 3.0) / 3)
    assert m["wait_p50"] == pytest.approx(1.0)
    assert m["turnaround_mean"] == pytest.approx((2.5 + 3.0 + 4.0) / 3)
    assert m["throughput"] == pytest.approx(3 / 6.0)
    assert m["polls_per_job"] == pytest.approx(2.0)
    warm = replay_report.metrics(rows, warmup_jobs=1)
    assert warm["wait_mean"] == pytest.approx((0.5 + 3.0) / 2)
    assert warm["throughput"] == pytest.approx(m["throughput"])   # throughput counts every job


def test_compare_relative_error_and_unfinished_jobs():
    real = [_row(0, 0.0, 1.0, 2.0, 2.0), _row(1, 0.0, 2.0, 3.0, 3.0)]
    sim = [_row(0, 0.0, 1.1, 2.0, 2.0), _row(1, 0.0, 2.2, 3.0, 3.0)]
    rep = replay_report.compare(real, sim)
    assert rep["rel_error"]["wait_mean"] == pytest.approx(0.1)
    assert rep["rel_error"]["throughput"] == pytest.approx(0.0)
    assert rep["paired_wait_diff"]["mean_s"] == pytest.approx(-0.15)
    real[1]["start"] = math.nan          # a job that never ran is left out, and counted
    assert replay_report.metrics(real)["jobs_done"] == 1
    assert "n/a" not in replay_report.markdown(rep)


def test_curves_count_states():
    import numpy as np
    rows = [_row(0, 0.0, 1.0, 2.0, 2.5), _row(1, 0.5, 2.0, 3.0, 3.5)]
    c = replay_report.curves(rows, np.array([0.25, 0.75, 1.5, 2.25, 2.75, 4.0]))
    assert c["WAIT"].tolist() == [1, 2, 1, 0, 0, 0]
    assert c["RUN"].tolist() == [0, 0, 1, 1, 1, 0]
    assert c["DONE"].tolist() == [0, 0, 0, 0, 1, 2]


# --- what a replay refuses, and the paired plan ---------------------------------------------------

@pytest.mark.parametrize("key, value, named", [
    ("clients.policy", "power_of_two", "clients.policy"),
    ("clients.dispatch", "when_free", "clients.dispatch"),
    ("clients.poll_interval", 0, "clients.poll_interval"),
    ("agents.speed", 2.0, "speed"),
    ("workload.fail_probability", 0.1, "workload.fail_probability"),
    ("workload.python", ">=3.99", "workload.python"),
])
def test_check_refuses_what_cannot_be_replayed(key, value, named):
    sc = Scenario.from_dict(SHORT).with_value(key, value) if key != "workload.python" else \
        Scenario.from_dict({**SHORT, "agents": [{"name": "local", "count": 4, "slots": 2, "python": ["3.99.0"]}],
                            "workload": {**SHORT["workload"], "python": value}})
    with pytest.raises(replay.ReplayError, match=named.replace(".", r"\.")):
        replay.check(sc)


def test_check_refuses_failures():
    data = copy.deepcopy(SHORT)
    data["agents"][0]["failures"] = {"time_to_failure": {"dist": "fixed", "value": 10},
                                     "time_to_repair": {"dist": "fixed", "value": 1}}
    with pytest.raises(replay.ReplayError, match="failures"):
        replay.check(Scenario.from_dict(data))


def fixed_calibration(**over) -> Calibration:
    values = dict(target="test", poll_rtt=0.0005, poll_p50=0.0005, poll_p99=0.001, stage_new=0.004,
                  stage_cached=0.002, run_submit=0.002, start_overhead=0.05, bare_spawn=0.04, done_delay=0.02,
                  run_to_running=0.006, turnover=0.08, staging_bandwidth=1e9, copy_bandwidth=2e9)
    values.update(over)
    return Calibration(**values)


def test_plan_is_paired_and_the_simulation_gets_the_overhead(tmp_path):
    sc = Scenario.from_dict(SHORT)
    cal = fixed_calibration()
    plan = replay.make_plan(replay.cal_scenario(sc, cal))
    again = replay.make_plan(replay.cal_scenario(sc, fixed_calibration(start_overhead=0.5)))
    assert [(j.submit, j.runtime, j.files) for j in plan.jobs] == [(j.submit, j.runtime, j.files) for j in again.jobs]
    assert len(plan.jobs) == 60 and plan.jobs[0].submit == 0.0
    sim = replay.simulate(sc, cal, plan, tmp_path / "trace.csv")
    for j, s in zip(plan.jobs, sim):
        assert s["index"] == j.index and s["agent"] == j.index % 4
        # the slot is held for runtime + overhead; DONE and RUN bracket it
        assert s["end"] - (s["start"] - cal.spawn_delay) == pytest.approx(j.runtime + cal.service_overhead)
    other = replay.make_plan(replay.cal_scenario(sc.with_value("run.seed", 12), cal))
    assert [j.submit for j in other.jobs] != [j.submit for j in plan.jobs]


def test_plan_refuses_a_huge_source(tmp_path):
    data = copy.deepcopy(SHORT)
    data["workload"]["files"] = {"count": 1, "catalog": 20, "size": "1GB", "popularity": "uniform"}
    with pytest.raises(replay.ReplayError, match="workload.files"):
        replay.make_plan(Scenario.from_dict(data))


# --- the command line ------------------------------------------------------------------------------

def _scenario_file(tmp_path, **clients):
    extra = "".join(f'{k} = "{v}"\n' for k, v in clients.items())
    path = tmp_path / "s.toml"
    path.write_text('[run]\njobs = 4\n[[agents]]\ncount = 1\nslots = 1\n[workload]\nrate = 1.0\n'
                    'runtime = 0.1\n[clients]\npoll_interval = "0.1s"\n' + extra)
    return path


@pytest.mark.parametrize("extra, named", [
    (["--max-error", "0"], "'0'"),
    (["--max-error", "-0.1"], "'-0.1'"),
    (["--max-error", "lots"], "'lots'"),
    (["--max-error", "nan"], "'nan'"),
    (["--jobs", "0"], "'0'"),
    (["--seed", "-1"], "'-1'"),
    (["--client-threads", "0"], "'0'"),
    (["--calibration", "missing.toml"], "missing.json"),
    (["--agents", "0"], "'0'"),
    (["--slots", "two"], "'two'"),
])
def test_cli_usage_errors_name_the_value(extra, named, tmp_path, capsys, monkeypatch):
    from simulator.cli import main
    monkeypatch.chdir(tmp_path)
    path = _scenario_file(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(["replay", str(path), "--out", str(tmp_path / "o")] + extra)
    assert exc.value.code == 2
    assert named in capsys.readouterr().err


def test_cli_refuses_a_missing_or_unsupported_scenario(tmp_path, capsys):
    from simulator.cli import main
    with pytest.raises(SystemExit) as exc:
        main(["replay", str(tmp_path / "nope.toml"), "--out", str(tmp_path / "o")])
    assert exc.value.code == 2 and "nope.toml" in capsys.readouterr().err
    path = _scenario_file(tmp_path, policy="power_of_two")
    with pytest.raises(SystemExit) as exc:
        main(["replay", str(path), "--out", str(tmp_path / "o")])
    assert exc.value.code == 2 and "clients.policy = 'power_of_two'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()      # refused before any agent started
