"""`agent-sim run`: simulate one scenario and write its output folder."""
from __future__ import annotations

from pathlib import Path

from simulator import bottleneck, output
from simulator.stats import disagree
from simulator.api import Results, run_replication
from simulator.commands._common import UsageError
from simulator import sanity
from simulator.commands import _common
from simulator.workload import expected_span

NAME = "run"
ORDER = 10
HELP = "run a scenario's replications and write CSVs, summary.json and plots to a folder"
EPILOG = """\
examples:
  agent-sim run examples/demo.toml --out out/demo
  agent-sim run examples/cluster.toml --out out/c --replications 10 --workers 2 --no-jobs-csv
  agent-sim run examples/cluster.toml --out out/c --set workload.rate=40 --set agents.count=200
  agent-sim run examples/cluster.toml --out out/c --precision 0.05 --max-replications 30

Every run ends with the utilisation of each resource (slots per group, the busiest agent's RPC
CPU, agent links, the file source), the split of the mean wait into client queue, staging and
WAIT, and a one-line verdict naming the binding resource.

output folder: jobs-rN.csv (one row per job attempt, streamed), states-rN.csv (WAIT/RUN/DONE
counts over time), agent-load-rN.csv, summary.json (every metric with its 95 % CI over
replications), states.png, wait-cdf.png, utilisation.png, agent-load.png.
"""


def add_arguments(p) -> None:
    _common.add_scenario(p)
    _common.add_precision(p)
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing)")
    p.add_argument("--no-jobs-csv", action="store_true", help="do not write the per-job CSVs")
    p.add_argument("--no-plots", action="store_true", help="do not draw the PNG plots")


def run(args) -> int:
    sc = _common.load(args)
    for warning in sanity.warnings(sc):
        print(f"warning: {warning}")
    out = Path(args.out)
    jobs_dir = None if args.no_jobs_csv else out
    workers = _common.workers(args)
    precision = _common.precision(args, "wait_p95")
    if precision is not None:
        from simulator.sequential import run_until
        with _common.progress_bar(args, "replications", precision.cap) as update:
            try:
                results = run_until(sc, precision, workers=workers, out=jobs_dir, progress=update)
            except KeyError as exc:
                raise UsageError(str(exc.args[0])) from None
    else:
        results = Results(sc, _fixed(args, sc, jobs_dir, workers))
    output.write(results, out, plots=not args.no_plots)
    n = len(results.replications)
    print(f"{n} replication(s) -> {out}/summary.json")
    if precision is not None:
        print("  " + precision.describe(results))
    for line in report_lines(results):
        print(line)
    return 0


def _fixed(args, sc, jobs_dir, workers) -> list:
    n = sc.run.replications
    if n == 1 or workers == 1:
        reps = []
        span = expected_span(sc)
        for i in range(n):
            with _common.progress_bar(args, f"replication {i + 1}/{n} (simulated s)", span) as update:
                def tick(now, _update=update):
                    _update(now)
                reps.append(run_replication(sc, i, jobs_dir, False, tick))
        return reps
    from simulator.api import run as run_all
    with _common.progress_bar(args, f"{n} replications", n) as update:
        return run_all(sc, out=jobs_dir, workers=workers, progress=update).replications


SHOWN = ("wait_mean", "wait_p95", "wait_p95_worst_bin", "turnaround_mean", "throughput", "polls_per_job",
         "cache_hit_ratio", "agent_hours", "cost", "agent_hours_per_day", "cost_per_day", "cost_per_job")


def report_lines(results: Results) -> list[str]:
    """The offered load of each resource (analytic), the headline metrics with their intervals (and
    the replication values when they disagree), the resources' measured utilisation, the wait split,
    the verdict, and what the figures rest on (steady state, replications that split)."""
    from simulator import diagnose, stability
    m = results.metrics
    a = stability.analyse(results.scenario)
    lines = [f"  offered load (analytic): {a.verdict()}"] + a.lines()
    for name in SHOWN:
        v = m.get(name)
        if v is not None and v["mean"] == v["mean"]:
            lines.append(f"  {name:<19} {format_ci(v)}")
    worst = diagnose.worst_bin_line(results)
    if worst:
        lines.append(f"  {worst}")
    flat = bottleneck.means(m)
    lines += bottleneck.table(flat)
    split = diagnose.split_line(results)
    on = " (on the means over replications; they disagree: next line)" if split else ""
    lines.append(f"  verdict{on}: {bottleneck.verdict(flat).text}")
    for extra in (split, diagnose.same_run_line(results)):
        if extra:
            lines.append(f"  {extra}")
    lines += [f"  warning: {w}" for w in diagnose.steady_lines(results, a) if not w.startswith("steady state:")]
    lines += [f"  {w}" for w in diagnose.steady_lines(results, a) if w.startswith("steady state:")]
    return lines


def format_ci(v: dict) -> str:
    text = f"{v['mean']:.4g}"
    if v["half_width"] == v["half_width"]:
        text += f" [{v['low']:.4g}, {v['high']:.4g}]"
        if v.get("method") == "batch-means":
            text += f" (batch means, {v.get('batches')} batches of one run)"
        elif disagree(v):
            text += "  replications disagree: " + ", ".join(f"{x:.4g}" for x in v["values"])
    return text
