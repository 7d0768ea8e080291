"""`agent-sim plan`: the smallest value of a key (e.g. agents.count) that meets a target."""
from __future__ import annotations

from simulator.commands._common import UsageError
from simulator.commands import _common
from simulator.commands.sweep import executor_for
from simulator.commands.run import format_ci
from simulator.sweep import SweepError, parse_target, parse_vary, plan

NAME = "plan"
ORDER = 30
HELP = "find the smallest value of a key (agents.count) that meets a target such as 'p95_wait<=30s'"
EPILOG = """\
examples:
  agent-sim plan examples/cluster.toml --target 'p95_wait<=30s' --vary agents.count
  agent-sim plan examples/cluster.toml --target 'mean_turnaround<2min' --vary agents[workers].count --range 10..500
  agent-sim plan examples/cluster.toml --target 'utilisation.workers>=0.6' --vary agents.slots --criterion mean

Targets: METRIC OP VALUE with OP in <=, <, >=, > and VALUE a number or a duration (30s, 2min).
Metric aliases: p95_wait = wait_p95, mean_turnaround = turnaround_mean; any name of summary.json works.
  agent-sim plan examples/cluster.toml --target 'p95_wait<=30s' --vary agents.count --set workload.rate=40
  agent-sim plan examples/day.toml --target 'wait_p95_worst_bin<=60s' --vary agents.autoscale.max --minimise cost --values 20..60:10

The search doubles from the range's low end, then bisects. It does not assume the metric improves
as the value grows: after two doublings without improvement it stops and says which resource
binds; pairs of values where the larger is clearly worse are reported. Each point prints the
verdict naming its binding resource; the answer prints the headroom to the target.
--criterion ci (default) requires the whole 95 % interval to meet the target. --minimise METRIC
(cost, agent_hours) evaluates every value of --values and answers the cheapest meeting the target.
Exit status 1 when no value meets it.
"""


def add_arguments(p) -> None:
    _common.add_scenario(p)
    p.add_argument("--target", required=True, metavar="'METRIC<=VALUE'", help="the condition to meet")
    p.add_argument("--vary", required=True, metavar="KEY", help="integer scenario key, e.g. agents.count")
    p.add_argument("--range", default="1..100000", metavar="LOW..HIGH", help="search range (default 1..100000)")
    p.add_argument("--criterion", choices=("ci", "mean"), default="ci",
                   help="'ci': the 95 %% CI bound must meet the target (default); 'mean': the mean must")
    p.add_argument("--dask", metavar="ADDRESS", default=None, help="run on a dask.distributed scheduler")
    p.add_argument("--minimise", "--minimize", default=None, metavar="METRIC",
                   help="choose the value with the lowest METRIC (cost, agent_hours) among those meeting the target")
    p.add_argument("--values", default=None, metavar="V1,V2,..|LOW..HIGH:STEP",
                   help="the values --minimise evaluates (all of them)")
    p.add_argument("--plot", default=None, metavar="DIR", help="write plan.json and plan-METRIC.png (target as a line) to DIR")
    _common.add_precision(p)


def _range(text: str) -> tuple[int, int]:
    lo, sep, hi = text.partition("..")
    try:
        low, high = int(lo), int(hi)
    except ValueError:
        raise UsageError(f"--range {text!r}: expected LOW..HIGH with integers, like 1..500") from None
    if not sep or low < 1 or high < low:
        raise UsageError(f"--range {text!r}: expected 1 <= LOW <= HIGH")
    return low, high


def run(args) -> int:
    sc = _common.load(args)
    try:
        target = parse_target(args.target)
    except SweepError as exc:
        raise UsageError(str(exc)) from None
    if "=" in args.vary:
        raise UsageError(f"--vary {args.vary!r}: give only the key (plan chooses the values), e.g. agents.count")
    low, high = _range(args.range)
    values = None
    if args.minimise is not None:
        if args.values is None:
            raise UsageError("--minimise needs --values (the values to compare), e.g. --values 100..400:50")
        try:
            _, values = parse_vary(f"{args.vary}={args.values}")
        except SweepError as exc:
            raise UsageError(str(exc).replace("--vary", "--values")) from None
    elif args.values is not None:
        raise UsageError("--values is for --minimise (without it, plan searches --range)")
    client = executor_for(args.dask)
    try:
        with _common.progress_bar(args, "planning (points evaluated)", None) as update:
            result = plan(sc, args.vary, target, low=low, high=high, criterion=args.criterion,
                          workers=_common.workers(args), executor=client, progress=update,
                          precision=_common.precision(args, target.metric), minimise=args.minimise, values=values)
    except SweepError as exc:
        raise UsageError(str(exc)) from None
    except KeyError as exc:
        raise UsageError(str(exc.args[0])) from None
    finally:
        if client is not None:
            client.close()
    for v, m, ok in result.evaluated:
        cost = f"  {args.minimise} {result.costs[v]:.4g}" if v in result.costs else ""
        print(f"  {args.vary}={v}: {target.metric} {format_ci(m)}{'  meets' if ok else ''}{cost}")
        print(f"      {result.verdicts[v]}")
    for note in result.notes:
        print(f"  note: {note}")
    if args.plot:
        _plot(result, args.plot)
    tried = ", ".join(str(v) for v, _, _ in result.evaluated)
    if result.value is None:
        where = f" in {low}..{high}" if args.minimise is None else ""
        print(f"no value of {args.vary}{where} meets {target}: {result.reason} (tried {tried})")
        return 1
    m = result.metric
    ci = f", 95 % interval [{m['low']:.4g}, {m['high']:.4g}]" if m["half_width"] == m["half_width"] else ""
    head = result.headroom
    if head is not None:
        print(f"  headroom: {100 * head:.0f} % to the target; at this point {result.verdicts[result.value]}")
    # the answer is the last line (scripts read it)
    print(f"{args.vary} = {result.value}: {target.metric} = {m['mean']:.4g}{ci} meets {target} ({result.reason})")
    return 0


def _plot(result, folder: str) -> None:
    import json
    from pathlib import Path
    from simulator import output, plots
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    rows = [{"value": v, "values": {result.key: v}, "metrics": {result.target.metric: output._clean(m)},
             "meets": ok, "verdict": result.verdicts[v]} for v, m, ok in result.evaluated]
    (out / "plan.json").write_text(json.dumps({"key": result.key, "target": str(result.target), "answer": result.value,
                                               "reason": result.reason, "notes": result.notes, "points": rows},
                                              indent=2) + "\n", encoding="utf-8")
    plots.sweep_plot(rows, result.key, result.target.metric, out, target=result.target, prefix="plan")
