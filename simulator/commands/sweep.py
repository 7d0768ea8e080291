"""`agent-sim sweep`: run a scenario at every value of one key, replications in parallel."""
from __future__ import annotations

import csv
import json
from pathlib import Path

from simulator import output
from simulator.commands._common import UsageError
from simulator import sanity, stability
from simulator.commands import _common
from simulator import bottleneck
from simulator.commands.run import format_ci
from simulator.sweep import SweepError, grid, parse_target, parse_vary, run_grid

NAME = "sweep"
ORDER = 20
HELP = "run a scenario at every value of one key (points x replications in parallel processes or on Dask)"
EPILOG = """\
examples:
  agent-sim sweep examples/cluster.toml --vary agents.count=50..200:10 --out out/sweep
  agent-sim sweep examples/cluster.toml --vary clients.policy=random,least_loaded,power_of_two --out out/p
  agent-sim sweep examples/cluster.toml --vary workload.rate=5..20:5 --dask tcp://10.0.0.5:8786 --out out/d

  agent-sim sweep examples/cluster.toml --vary agents.count=100,200 --vary network.source_bandwidth=10Gbit/s,40Gbit/s --out out/g

--vary KEY=LOW..HIGH[:STEP] is an inclusive range (integers stay integers); KEY=A,B,C lists values.
Repeat --vary for a grid (every combination). Keys are dotted scenario keys; with several agent
groups name one: agents[gpu].count. Writes sweep.csv and sweep.json (every metric with its 95 %
interval per point, and each point's verdict naming the binding resource) and one sweep-METRIC.png
per metric (x: the first numeric key, one line per combination of the others).
"""

PLOTTED = ("wait_p95", "wait_mean", "turnaround_mean", "throughput", "polls_per_job", "source_utilisation",
           "agent_hours", "cost")


def add_arguments(p) -> None:
    _common.add_scenario(p)
    p.add_argument("--vary", required=True, action="append", metavar="KEY=LOW..HIGH:STEP",
                   help="a key and its values; repeat for a grid over several keys")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--target", default=None, metavar="'METRIC<=VALUE'",
                   help="draw this target as a line on its metric's plot and mark the points meeting it")
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
    for warning in sanity.warnings(sc):
        print(f"warning: {warning}")
    try:
        varies = [parse_vary(v) for v in args.vary]
        keys = [k for k, _ in varies]
        if len(set(keys)) != len(keys):
            raise SweepError(f"--vary: a key is given twice ({', '.join(keys)})")
        combos = grid(varies)
    except SweepError as exc:
        raise UsageError(str(exc)) from None
    try:
        target = parse_target(args.target) if args.target else None
    except SweepError as exc:
        raise UsageError(str(exc)) from None
    client = executor_for(args.dask)
    try:
        total = len(combos) * sc.run.replications
        with _common.progress_bar(args, f"{len(combos)} points", total) as update:
            points = run_grid(sc, combos, workers=_common.workers(args), executor=client, progress=update)
    finally:
        if client is not None:
            client.close()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for combo, res in points:
        flat = bottleneck.means(res.metrics)
        rows.append({"value": combo[keys[0]], "values": combo, "verdict": bottleneck.verdict(flat).text,
                     "metrics": output._clean(res.metrics)})
    (out / "sweep.json").write_text(json.dumps({"key": keys[0], "keys": keys, "points": rows}, indent=2) + "\n",
                                    encoding="utf-8")
    names = list(points[0][1].metrics)
    with open(out / "sweep.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(keys + [f"{n}{s}" for n in names for s in ("", "_low", "_high")] + ["verdict"])
        for (combo, res), row in zip(points, rows):
            w.writerow([combo[k] for k in keys] + [res.metrics[n][k] for n in names for k in ("mean", "low", "high")]
                       + [row["verdict"]])
    xkey = next((k for k, vals in varies if all(isinstance(v, (int, float)) for v in vals)), None)
    if xkey is not None:
        from simulator import plots
        shown = list(PLOTTED) + ([target.metric] if target and target.metric not in PLOTTED else [])
        for metric in shown:
            if metric in points[0][1].metrics:
                plots.sweep_plot(rows, xkey, metric, out, target=target if target and target.metric == metric else None)
    print(f"{len(combos)} points x {sc.run.replications} replications -> {out}/sweep.csv")
    shown_metric = target.metric if target and target.metric in points[0][1].metrics else "wait_p95"
    for combo, res in points:
        m = res.metrics[shown_metric]
        where = ", ".join(f"{k}={v}" for k, v in combo.items())
        meets = ""
        if target is not None and shown_metric == target.metric:
            bound = m["high"] if target.op in ("<=", "<") else m["low"]
            meets = "  meets" if target.met_by(bound if bound == bound else m["mean"]) else ""
        print(f"  {where}: {shown_metric} {format_ci(m)}{meets}")
        print(f"      {bottleneck.verdict(bottleneck.means(res.metrics)).text}")
        split = bottleneck.split_text(res.replications)
        if split:
            print(f"      {split}")
        unstable = stability.analyse(res.scenario).unstable
        if unstable:
            print(f"      unstable: {unstable[0].label} offered {100 * unstable[0].rho:.0f} % of capacity: "
                  "no steady state, the wait grows with run.duration")
    return 0
