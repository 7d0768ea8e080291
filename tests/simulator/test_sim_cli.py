"""`agent-sim`: run, sweep, plan and validate, and usage errors that name the bad value (exit 2)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from simulator.cli import discover, main

ROOT = Path(__file__).resolve().parents[2]

SMALL = """
[run]
jobs = 400
warmup_jobs = 40
seed = 3
replications = 2

[[agents]]
name = "w"
count = 3
slots = 1

[workload]
rate = 1.0
runtime = { dist = "exponential", mean = 2.0 }

[clients]
poll_interval = "1s"
rpc_cost_poll = "1ms"
"""


@pytest.fixture
def small(tmp_path):
    path = tmp_path / "small.toml"
    path.write_text(SMALL)
    return path


def test_run_writes_every_output(small, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", str(small), "--out", str(out), "--workers", "1", "--quiet"]) == 0
    names = {p.name for p in out.iterdir()}
    assert {"summary.json", "jobs-r0.csv", "jobs-r1.csv", "states-r0.csv", "agent-load-r0.csv",
            "states.png", "wait-cdf.png", "utilisation.png", "agent-load.png"} <= names
    summary = json.loads((out / "summary.json").read_text())
    m = summary["metrics"]["wait_p95"]
    assert summary["replications"] == 2 and m["low"] <= m["mean"] <= m["high"] and len(m["values"]) == 2
    assert (out / "states.png").read_bytes()[:4] == b"\x89PNG"
    header = (out / "jobs-r0.csv").read_text().splitlines()[0].split(",")
    assert header[:3] == ["job", "logical", "attempt"] and "done_seen" in header and "polls" in header
    assert len((out / "jobs-r0.csv").read_text().splitlines()) == 401
    assert "wait_mean" in capsys.readouterr().out


def test_demo_scenario_runs(tmp_path):
    out = tmp_path / "demo"
    assert main(["run", str(ROOT / "examples" / "demo.toml"), "--out", str(out), "--replications", "1",
                 "--no-plots", "--no-jobs-csv", "--quiet"]) == 0
    assert json.loads((out / "summary.json").read_text())["metrics"]["throughput"]["mean"] > 0


def test_sweep_writes_a_table(small, tmp_path, capsys):
    out = tmp_path / "sweep"
    assert main(["sweep", str(small), "--vary", "agents.count=2..4:1", "--out", str(out), "--workers", "2",
                 "--quiet"]) == 0
    rows = (out / "sweep.csv").read_text().splitlines()
    assert rows[0].startswith("agents.count,") and [r.split(",")[0] for r in rows[1:]] == ["2", "3", "4"]
    points = json.loads((out / "sweep.json").read_text())["points"]
    waits = [p["metrics"]["wait_mean"]["mean"] for p in points]
    assert waits[0] > waits[1] > waits[2]        # common random numbers: more agents, less wait
    assert (out / "sweep-wait_p95.png").exists()


def test_plan_finds_the_smallest_count(small, capsys):
    assert main(["plan", str(small), "--target", "mean_wait<=0.5s", "--vary", "agents.count",
                 "--range", "1..20", "--workers", "1", "--quiet"]) == 0
    text = capsys.readouterr().out
    last = text.strip().splitlines()[-1]
    assert last.startswith("agents.count = ") and "meets wait_mean <= 0.5" in last
    found = int(last.split("=")[1].split(":")[0])
    lines = {int(l.split("=")[1].split(":")[0]): l for l in text.splitlines() if l.startswith("  agents.count=")}
    assert "meets" in lines[found] and "meets" not in lines.get(found - 1, "")
    assert found - 1 in lines or found == 1


def test_plan_unreachable_target_exits_1(small, capsys):
    assert main(["plan", str(small), "--target", "p95_wait<0s", "--vary", "agents.count", "--range", "1..4",
                 "--criterion", "mean", "--quiet", "--workers", "1"]) == 1
    assert "no value of agents.count in 1..4 meets" in capsys.readouterr().out


def test_validate_prints_the_table(capsys):
    # tiny runs: the table's form and the exit status are under test here; accuracy is
    # test_sim_queueing.py's job
    code = main(["validate", "--jobs", "2000", "--replications", "2", "--layouts", "one_agent,per_agent",
                 "--no-time-varying"])
    text = capsys.readouterr().out
    assert "M/M/10 rho=0.9" in text and "P(wait)" in text and "P(N=0)" in text and "not M/M/c" in text
    ok, total = text.strip().splitlines()[-1].split()[0].split("/")
    assert code == (0 if ok == total else 1)


@pytest.mark.slow
def test_sweep_on_a_dask_cluster(small, tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, scheduler_port=0,
                                  dashboard_address=None) as cluster:
        out = tmp_path / "dask"
        assert main(["sweep", str(small), "--vary", "agents.count=2,3", "--out", str(out), "--quiet",
                     "--dask", cluster.scheduler_address]) == 0
    local = tmp_path / "local"
    assert main(["sweep", str(small), "--vary", "agents.count=2,3", "--out", str(local), "--quiet",
                 "--workers", "1"]) == 0
    assert (out / "sweep.csv").read_text() == (local / "sweep.csv").read_text()   # same seeds, same numbers


def test_sweep_runs_on_any_executor(small):
    """--dask hands tasks to a dask Client through the executor interface; any executor works."""
    from concurrent.futures import ThreadPoolExecutor
    from simulator.scenario import Scenario
    from simulator.sweep import run_points
    sc = Scenario.from_toml(small)
    with ThreadPoolExecutor(2) as pool:
        via_pool = run_points(sc, "agents.count", [2, 3], executor=pool)
    serial = run_points(sc, "agents.count", [2, 3])
    assert [r.metrics for _, r in via_pool] == [r.metrics for _, r in serial]


BAD_USAGE = [
    (["run", "{small}", "--out", "{tmp}/o", "--replications", "0"], "'0' must be >= 1"),
    (["run", "{tmp}/nope.toml", "--out", "{tmp}/o"], "does not exist"),
    (["sweep", "{small}", "--vary", "agents.count=5..1", "--out", "{tmp}/o"], "below its start"),
    (["sweep", "{small}", "--vary", "agents.count", "--out", "{tmp}/o"], "expected KEY=LOW..HIGH"),
    (["sweep", "{small}", "--vary", "agents.count=0..2", "--out", "{tmp}/o"], "agents[0].count = 0"),
    (["sweep", "{small}", "--vary", "agents.colour=1..2", "--out", "{tmp}/o"], "agents[0].colour"),
    (["plan", "{small}", "--target", "p95_wait=30", "--vary", "agents.count"], "expected METRIC<=VALUE"),
    (["plan", "{small}", "--target", "p95_wait<=soon", "--vary", "agents.count"], "'soon' is not a number"),
    (["plan", "{small}", "--target", "p95_wiat<=3", "--vary", "agents.count", "--range", "1..2"], "unknown metric 'wiat_p95'"),
    (["plan", "{small}", "--target", "p95_wait<=3", "--vary", "agents.count", "--range", "5..2"], "--range '5..2'"),
    (["plan", "{small}", "--target", "p95_wait<=3", "--vary", "agents.count=3"], "give only the key"),
    (["validate", "--layouts", "ring"], "--layouts 'ring'"),
    (["sweep", "{small}", "--vary", "agents.count=1..2", "--out", "{tmp}/o", "--dask", "bogus://x"],
     "--dask 'bogus://x': cannot connect"),
]


@pytest.mark.parametrize("argv,message", BAD_USAGE, ids=[" ".join(a[:1] + a[2:4]) for a, _ in BAD_USAGE])
def test_usage_errors_exit_2_and_name_the_value(small, tmp_path, capsys, argv, message):
    argv = [a.format(small=small, tmp=tmp_path) for a in argv] + ["--quiet"] * (argv[0] != "validate")
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_bad_scenario_exits_2_naming_the_key(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text(SMALL.replace("slots = 1", "slots = 0"))
    with pytest.raises(SystemExit) as info:
        main(["run", str(path), "--out", str(tmp_path / "o"), "--quiet"])
    assert info.value.code == 2
    assert "scenario key agents[0].slots = 0: must be an integer >= 1" in capsys.readouterr().err


def test_subcommands_are_discovered_modules():
    names = [m.NAME for m in discover()]
    assert names[:4] == ["run", "sweep", "plan", "validate"]


def test_console_script_help():
    exe = Path(sys.executable).parent / "agent-sim"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "simulator.cli"]
    proc = subprocess.run(cmd + ["--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "examples:" in proc.stdout and "plan" in proc.stdout


def test_no_subcommand_imports_the_cli_that_loads_it():
    """simulator.cli loads every subcommand by import_module; a subcommand importing simulator.cli
    back would be an import cycle the static graph cannot see. UsageError lives in _common."""
    import ast
    import pkgutil

    from simulator import cli, commands
    from simulator.commands import _common
    assert cli.UsageError is _common.UsageError
    for info in pkgutil.iter_modules(commands.__path__):
        path = Path(commands.__path__[0]) / f"{info.name}.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            assert "simulator.cli" not in names, f"{path.name}:{node.lineno} imports simulator.cli"
