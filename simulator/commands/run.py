"""`agent-sim run`: simulate one scenario and write its output folder."""
from __future__ import annotations

from pathlib import Path

from simulator import output
from simulator.api import Results, run_replication
from simulator.commands import _common
from simulator.workload import expected_span

NAME = "run"
ORDER = 10
HELP = "run a scenario's replications and write CSVs, summary.json and plots to a folder"
EPILOG = """\
examples:
  agent-sim run examples/demo.toml --out out/demo
  agent-sim run examples/cluster.toml --out out/c --replications 10 --workers 2 --no-jobs-csv

output folder: jobs-rN.csv (one row per job attempt, streamed), states-rN.csv (WAIT/RUN/DONE
counts over time), agent-load-rN.csv, summary.json (every metric with its 95 % CI over
replications), states.png, wait-cdf.png, utilisation.png, agent-load.png.
"""


def add_arguments(p) -> None:
    _common.add_scenario(p)
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing)")
    p.add_argument("--no-jobs-csv", action="store_true", help="do not write the per-job CSVs")
    p.add_argument("--no-plots", action="store_true", help="do not draw the PNG plots")


def run(args) -> int:
    sc = _common.load(args)
    out = Path(args.out)
    jobs_dir = None if args.no_jobs_csv else out
    n = sc.run.replications
    workers = _common.workers(args)
    reps = []
    if n == 1 or workers == 1:
        span = expected_span(sc)
        for i in range(n):
            with _common.progress_bar(args, f"replication {i + 1}/{n}", span) as update:
                def tick(now, _update=update):
                    _update(now)
                reps.append(run_replication(sc, i, jobs_dir, False, tick))
    else:
        from simulator.api import run as run_all
        with _common.progress_bar(args, f"{n} replications", n) as update:
            reps = run_all(sc, out=jobs_dir, workers=workers, progress=update).replications
    results = Results(sc, reps)
    output.write(results, out, plots=not args.no_plots)
    m = results.metrics
    print(f"{n} replication(s) -> {out}/summary.json")
    for name in ("wait_mean", "wait_p95", "turnaround_mean", "throughput", "polls_per_job", "cache_hit_ratio"):
        v = m.get(name)
        if v is not None and v["mean"] == v["mean"]:
            hw = v["half_width"]
            print(f"  {name:<18} {v['mean']:.4g}" + (f" +- {hw:.3g}" if hw == hw else ""))
    return 0
