"""`agent-sim plan`: the smallest value of a key (e.g. agents.count) that meets a target."""
from __future__ import annotations

from simulator.commands._common import UsageError
from simulator import sanity
from simulator.commands import _common
from simulator.commands.sweep import executor_for
from simulator.commands.run import format_ci
from protos import units
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

  agent-sim plan examples/cluster.toml --target 'p95_wait<=30s' --vary network.source_bandwidth \
      --range 1Gbit/s..40Gbit/s --resolution 100Mbit/s --set network.cache=false

How it decides (docs/SIMULATOR.md): values whose offered load reaches a resource's capacity are
unstable (computed, never simulated, never the answer); Erlang C gives the first pass and the
starting value; each point's run is lengthened for its relaxation time and checked for a steady
state (MSER, trend); replications are added until the 95 % interval is on one side of the target
(up to --max-replications, default 12); the search steps up from the first pass, then bisects.
The answer is the smallest value that meets the target with every smaller value evaluated not
meeting it; values it could not separate are named. Continuous keys take --resolution with
units (100Mbit/s, 30s). --criterion ci (default) requires the whole 95 % interval to meet the
target. --minimise METRIC (cost, agent_hours) evaluates every value of --values and answers the
cheapest stable value meeting the target. Exit status 1 when no value meets it.
"""


def add_arguments(p) -> None:
    _common.add_scenario(p)
    p.add_argument("--target", required=True, metavar="'METRIC<=VALUE'", help="the condition to meet")
    p.add_argument("--vary", required=True, metavar="KEY", help="integer scenario key, e.g. agents.count")
    p.add_argument("--range", default=None, metavar="LOW..HIGH",
                   help="search range (default 1..100000; with units for a continuous key: 1Gbit/s..40Gbit/s)")
    p.add_argument("--resolution", default=None, metavar="STEP",
                   help="search a continuous key to this step, with units (100Mbit/s, 30s, 0.5)")
    p.add_argument("--criterion", choices=("ci", "mean"), default="ci",
                   help="'ci': the 95 %% CI bound must meet the target (default); 'mean': the mean must")
    p.add_argument("--dask", metavar="ADDRESS", default=None, help="run on a dask.distributed scheduler")
    p.add_argument("--minimise", "--minimize", default=None, metavar="METRIC",
                   help="choose the value with the lowest METRIC (cost, agent_hours) among those meeting the target")
    p.add_argument("--values", default=None, metavar="V1,V2,..|LOW..HIGH:STEP",
                   help="the values --minimise evaluates (all of them)")
    p.add_argument("--plot", default=None, metavar="DIR", help="write plan.json and plan-METRIC.png (target as a line) to DIR")
    _common.add_precision(p)
    p.set_defaults(max_replications=12)


def _range(text: str | None, convert=None) -> tuple:
    if text is None:
        return (1, 100_000) if convert is None else (None, None)
    lo, sep, hi = text.partition("..")
    try:
        low, high = (convert(lo), convert(hi)) if convert else (int(lo), int(hi))
    except (ValueError, units.UnitError):
        want = "values with units, like 1Gbit/s..40Gbit/s" if convert else "integers, like 1..500"
        raise UsageError(f"--range {text!r}: expected LOW..HIGH with {want}") from None
    if not sep or (convert is None and low < 1) or high < low or low <= 0:
        raise UsageError(f"--range {text!r}: expected 0 < LOW <= HIGH" + ("" if convert else " (LOW >= 1)"))
    return low, high


def converter(key: str):
    """How a continuous key's --resolution and --range read: a bandwidth, a duration or a number."""
    if "bandwidth" in key:
        return units.bandwidth
    if any(w in key for w in ("latency", "interval", "duration", "delay", "runtime")):
        return units.duration
    return float


def _resolution(args) -> tuple:
    """(resolution or None, low, high) from --resolution and --range."""
    if args.resolution is None:
        return (None, *_range(args.range))
    conv = converter(args.vary)
    try:
        res = conv(args.resolution)
    except (ValueError, units.UnitError) as exc:
        raise UsageError(f"--resolution {args.resolution!r}: {exc}") from None
    if not res > 0 or res == float("inf"):
        raise UsageError(f"--resolution {args.resolution!r}: must be a finite step > 0")
    low, high = _range(args.range, conv)
    if low is None:
        raise UsageError(f"--resolution needs --range LOW..HIGH for {args.vary} (e.g. --range 1Gbit/s..40Gbit/s)")
    return res, low, high


def run(args) -> int:
    sc = _common.load(args)
    for warning in sanity.warnings(sc):
        print(f"warning: {warning}")
    try:
        target = parse_target(args.target)
    except SweepError as exc:
        raise UsageError(str(exc)) from None
    if "=" in args.vary:
        raise UsageError(f"--vary {args.vary!r}: give only the key (plan chooses the values), e.g. agents.count")
    resolution, low, high = _resolution(args)
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
                          precision=_common.precision(args, target.metric), minimise=args.minimise, values=values,
                          resolution=resolution, max_replications=args.max_replications)
    except SweepError as exc:
        raise UsageError(str(exc)) from None
    except KeyError as exc:
        raise UsageError(str(exc.args[0])) from None
    finally:
        if client is not None:
            client.close()
    show(result, args)
    if args.plot:
        _plot(result, args.plot, args.minimise)
    return answer(result, args, low, high)


def show(result, args) -> None:
    """Every value evaluated (unstable ones too), its verdict and notes, then the plan's notes."""
    rows = sorted(set(result.verdicts) | {v for v, _, _ in result.evaluated})
    metrics = {v: (m, ok) for v, m, ok in result.evaluated}
    for v in rows:
        pt = result.points.get(v)
        if v not in metrics or (pt is not None and pt.status == "unstable") or metrics[v][0]["mean"] != metrics[v][0]["mean"]:
            print(f"  {args.vary}={v:g}: {result.verdicts[v]}")
            continue
        m, ok = metrics[v]
        cost = f"  {args.minimise} {result.costs[v]:.4g}" if v in result.costs else ""
        status = pt.status if pt is not None else ("meets" if ok else "")
        run = ""
        if pt is not None and pt.results is not None:
            run = f"  ({len(pt.results.replications)} replications, run {pt.duration / 3600:.2g} h)" \
                if pt.duration else f"  ({len(pt.results.replications)} replications)"
        print(f"  {args.vary}={v:g}: {result.target.metric} {format_ci(m)}  {status}{cost}{run}")
        print(f"      {result.verdicts[v]}")
        for note in (pt.notes if pt is not None else []):
            print(f"      {note}")
    for note in result.notes:
        print(f"  note: {note}")


def answer(result, args, low, high) -> int:
    target = result.target
    tried = ", ".join(f"{v:g}" for v in sorted(result.verdicts))
    if result.value is None:
        where = f" in {low:g}..{high:g}" if args.minimise is None else ""
        print(f"no value of {args.vary}{where} meets {target}: {result.reason} (tried {tried})")
        return 1
    m = result.metric
    ci = f", 95 % interval [{m['low']:.4g}, {m['high']:.4g}]" if m["half_width"] == m["half_width"] else ""
    head = result.headroom
    if head is not None:
        print(f"  headroom: {100 * head:.0f} % to the target; at this point {result.verdicts[result.value]}")
    pt = result.points.get(result.value)
    if pt is not None and pt.results is not None:
        for name in ("cost_per_day", "cost_per_job", "agent_hours_per_day"):
            c = pt.results.metrics.get(name)
            if c is not None and c["mean"] == c["mean"]:
                print(f"  {name}: {format_ci(c)} (the window's rate, without warm-up and drain)")
    # the answer is the last line (scripts read it)
    print(f"{args.vary} = {result.value:g}: {target.metric} = {m['mean']:.4g}{ci} meets {target} ({result.reason})")
    return 0


def _plot(result, folder: str, minimise: str | None = None) -> None:
    import json
    from pathlib import Path
    from simulator import output, plots
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    rows = [{"value": v, "values": {result.key: v}, "metrics": {result.target.metric: output._clean(m)},
             "meets": ok, "verdict": result.verdicts[v], "cost": result.costs.get(v),
             "status": result.points[v].status if v in result.points else ("meets" if ok else "fails")}
            for v, m, ok in result.evaluated if m["mean"] == m["mean"]]     # unstable values: not plotted
    (out / "plan.json").write_text(json.dumps({"key": result.key, "target": str(result.target), "answer": result.value,
                                               "reason": result.reason, "notes": result.notes, "points": rows},
                                              indent=2) + "\n", encoding="utf-8")
    unstable = [v for v, p in result.points.items() if p.status == "unstable"]
    plots.plan_plot(rows, result.key, result.target, out, answer=result.value, cost=minimise,
                    unstable=max(unstable) if unstable else None)
    answer = result.points.get(result.value)
    if answer is not None and answer.results is not None:   # the answer's hours, with the target drawn
        plots.hourly(answer.results, out, target=result.target)
