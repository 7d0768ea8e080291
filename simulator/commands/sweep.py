"""`agent-sim sweep`: run a scenario at every value of one key, replications in parallel."""
from __future__ import annotations

import csv
import json
from pathlib import Path

from simulator import output
from simulator.cli import UsageError
from simulator.commands import _common
from simulator.sweep import SweepError, parse_vary, run_points

NAME = "sweep"
ORDER = 20
HELP = "run a scenario at every value of one key (points x replications in parallel processes or on Dask)"
EPILOG = """\
examples:
  agent-sim sweep examples/cluster.toml --vary agents.count=50..200:10 --out out/sweep
  agent-sim sweep examples/cluster.toml --vary clients.policy=random,least_loaded,power_of_two --out out/p
  agent-sim sweep examples/cluster.toml --vary workload.rate=5..20:5 --dask tcp://10.0.0.5:8786 --out out/d

--vary KEY=LOW..HIGH[:STEP] is an inclusive range (integers stay integers); KEY=A,B,C lists values.
Keys are dotted scenario keys; with several agent groups name one: agents[gpu].count.
Writes sweep.csv and sweep.json (every metric with its 95 % CI per value) and sweep-*.png.
"""

PLOTTED = ("wait_p95", "wait_mean", "throughput", "polls_per_job")


def add_arguments(p) -> None:
    _common.add_scenario(p)
    p.add_argument("--vary", required=True, metavar="KEY=LOW..HIGH:STEP", help="the key and its values")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--dask", metavar="ADDRESS", default=None,
                   help="run on a dask.distributed scheduler at ADDRESS instead of local processes")


def executor_for(address):
    if address is None:
        return None
    try:
        from dask.distributed import Client
    except ImportError:
        raise UsageError("--dask needs dask[distributed]: pip install 'dask[distributed]'") from None
    try:
        return Client(address, timeout="5s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise UsageError(f"--dask {address!r}: cannot connect ({exc})") from None


def run(args) -> int:
    sc = _common.load(args)
    try:
        key, values = parse_vary(args.vary)
    except SweepError as exc:
        raise UsageError(str(exc)) from None
    client = executor_for(args.dask)
    try:
        total = len(values) * sc.run.replications
        with _common.progress_bar(args, f"{len(values)} points", total) as update:
            points = run_points(sc, key, values, workers=_common.workers(args), executor=client, progress=update)
    finally:
        if client is not None:
            client.close()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = [{"value": v, "metrics": output._clean(res.metrics)} for v, res in points]
    (out / "sweep.json").write_text(json.dumps({"key": key, "points": rows}, indent=2) + "\n", encoding="utf-8")
    names = list(points[0][1].metrics)
    with open(out / "sweep.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow([key] + [f"{n}{s}" for n in names for s in ("", "_low", "_high")])
        for v, res in points:
            w.writerow([v] + [res.metrics[n][k] for n in names for k in ("mean", "low", "high")])
    numeric = all(isinstance(v, (int, float)) for v in values)
    if numeric:
        from simulator import plots
        for metric in PLOTTED:
            if metric in points[0][1].metrics:
                plots.sweep_plot(rows, key, metric, out)
    print(f"{len(values)} points x {sc.run.replications} replications -> {out}/sweep.csv")
    for v, res in points:
        m = res.metrics["wait_p95"]
        print(f"  {key}={v}: wait_p95 {m['mean']:.4g}" + (f" +- {m['half_width']:.3g}" if m["half_width"] == m["half_width"] else ""))
    return 0
