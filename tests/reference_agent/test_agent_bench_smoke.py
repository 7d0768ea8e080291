"""bench/agent_bench.py runs end to end (--quick) and prints one summary line with its ratios."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "agent_bench.py"


def test_agent_bench_quick(tmp_path):
    out = subprocess.run([sys.executable, str(BENCH), "--quick", "--json", str(tmp_path / "r.json")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("agent_bench: ")
    assert re.search(r"ratio \d+\.\d\d \(target >= 0\.8\)", lines[0])
    figures = json.loads((tmp_path / "r.json").read_text())
    assert set(figures) == {"poll_1_thread", "poll", "poll_vs_aio", "aio_vs_sync", "start", "staging", "many_files",
                            "watch_vs_poll", "load_average_after"}
    assert figures["watch_vs_poll"]["watch"]["jobs"] == 20 and re.search(r"waiting on 20 jobs: agent CPU", lines[0])
    assert figures["poll"]["agent_per_s"] > 0 and figures["staging"]["size_mb"] == 4
    assert figures["many_files"]["files"] == 300 and re.search(r"300 files of 100 B in one call .* \(target <= 5\)",
                                                               lines[0])


def test_agent_bench_rejects_bad_values():
    out = subprocess.run([sys.executable, str(BENCH), "--calls", "0"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "--calls 0" in out.stderr
