"""The soak and chaos harnesses in miniature: they pass on the reference agent and catch broken
agents (a job run twice, DONE jobs forgotten after a restart); their CLIs refuse bad values."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
TINY = ["--streams", "4", "--processes", "2", "--drain", "40", "--poll-interval", "0.05", "--slots", "2"]


def _bench(tmp_path, script: str, *args: str, timeout: float = 240) -> tuple[int, dict, str]:
    out = tmp_path / f"{script}.json"
    done = subprocess.run([sys.executable, str(BENCH / f"{script}.py"), *args, "--json", str(out)],
                          capture_output=True, text=True, timeout=timeout)
    figures = json.loads(out.read_text()) if out.exists() else {}
    return done.returncode, figures, done.stdout + done.stderr


def test_tiny_soak_passes_on_the_reference_agent(tmp_path):
    code, figures, output = _bench(tmp_path, "soak", *TINY, "--duration", "3", "--baseline", "1",
                                   "--error-rate", "0.5")
    assert code == 0, output
    assert figures["verdict"] == "PASS" and figures["submitted"] > 0
    assert figures["done"] == figures["submitted"] and figures["lost"] == figures["run_twice"] == 0
    assert figures["expected_errors"] > 0 and figures["unexpected"] == 0
    assert output.strip().splitlines()[-1].startswith("soak: 4 streams x 3 s:")


def test_soak_catches_an_agent_that_runs_jobs_twice(tmp_path):
    code, figures, output = _bench(tmp_path, "soak", *TINY, "--duration", "3", "--baseline", "1",
                                   "--agent-arg=--core", "--agent-arg=fakes.broken.jobs:RunsJobTwiceOnRepeat")
    assert code == 1, output
    assert figures["run_twice"] > 0 and figures["verdict"] == "FAIL"


@pytest.mark.slow
def test_tiny_chaos_passes_on_the_reference_agent(tmp_path):
    code, figures, output = _bench(tmp_path, "chaos", *TINY, "--kills", "3", "--interval", "0.5", "1.5",
                                   "--baseline", "2")
    assert code == 0, output
    assert figures["kills"] == 3 and figures["restarts"] == 3 and figures["parked"] == 3
    assert figures["violations"] == {} and figures["lost"] == 0
    assert figures["baseline_jobs_per_s"] > 0 and figures["jobs_per_s"] > 0


@pytest.mark.slow
def test_chaos_catches_an_agent_that_forgets_done_jobs(tmp_path):
    code, figures, output = _bench(tmp_path, "chaos", *TINY, "--kills", "2", "--interval", "1", "2",
                                   "--baseline", "2", "--agent-arg=--core",
                                   "--agent-arg=fakes.broken.jobs:ForgetsDoneAfterRestart")
    assert code == 1, output
    assert figures["violations"].get("DONE seen as other", 0) > 0, figures["violations"]


@pytest.mark.parametrize("script, args, complaint", [
    ("soak", ["--streams", "0"], "'0' must be > 0"),
    ("soak", ["--duration", "soon"], "'soon' is not a float"),
    ("soak", ["--streams", "2", "--processes", "3"], "--processes 3 is more than --streams 2"),
    ("soak", ["--error-rate", "2"], "--error-rate 2.0"),
    ("chaos", ["--interval", "5", "1"], "MIN is more than MAX"),
    ("chaos", ["--kills", "-1"], "'-1' must be > 0"),
    ("fuzz", ["--inputs", "0"], "--inputs 0"),
])
def test_bench_usage_errors_exit_2_and_name_the_value(script, args, complaint):
    done = subprocess.run([sys.executable, str(BENCH / f"{script}.py"), *args],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and complaint in done.stderr, done.stderr
