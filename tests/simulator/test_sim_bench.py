"""bench/sim_bench.py stays runnable: a tiny run prints its three measurements and the summary line."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "sim_bench.py"


def test_sim_bench_tiny_run():
    proc = subprocess.run([sys.executable, str(BENCH), "--jobs", "2000"], capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[-1].startswith("sim_bench: full model ")
    assert re.search(r"ratio \d+\.\d\d \(target >= 0\.8\); 2,000 jobs over 1,000 agents in", lines[-1])
    assert sum(1 for line in lines if "jobs/CPU-s" in line) == 3


def test_sim_bench_refuses_too_few_jobs():
    proc = subprocess.run([sys.executable, str(BENCH), "--jobs", "10"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--jobs 10: at least 1000" in proc.stderr
