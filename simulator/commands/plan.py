"""`agent-sim plan`: the smallest value of a key (e.g. agents.count) that meets a target."""
from __future__ import annotations

from simulator.cli import UsageError
from simulator.commands import _common
from simulator.commands.sweep import executor_for
from simulator.sweep import SweepError, parse_target, plan

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
The search doubles from the range's low end, then bisects; it assumes the metric improves as the
value grows. --criterion ci (default) requires the whole 95 % CI to meet the target.
Exit status 1 when no value in the range meets it.
"""


def add_arguments(p) -> None:
    _common.add_scenario(p)
    p.add_argument("--target", required=True, metavar="'METRIC<=VALUE'", help="the condition to meet")
    p.add_argument("--vary", required=True, metavar="KEY", help="integer scenario key, e.g. agents.count")
    p.add_argument("--range", default="1..100000", metavar="LOW..HIGH", help="search range (default 1..100000)")
    p.add_argument("--criterion", choices=("ci", "mean"), default="ci",
                   help="'ci': the 95 %% CI bound must meet the target (default); 'mean': the mean must")
    p.add_argument("--dask", metavar="ADDRESS", default=None, help="run on a dask.distributed scheduler")


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
    client = executor_for(args.dask)
    try:
        with _common.progress_bar(args, "planning", None) as update:
            result = plan(sc, args.vary, target, low=low, high=high, criterion=args.criterion,
                          workers=_common.workers(args), executor=client, progress=update)
    except SweepError as exc:
        raise UsageError(str(exc)) from None
    finally:
        if client is not None:
            client.close()
    for v, m, ok in result.evaluated:
        hw = m["half_width"]
        print(f"  {args.vary}={v}: {target.metric} {m['mean']:.4g}" + (f" [{m['low']:.4g}, {m['high']:.4g}]" if hw == hw else "")
              + ("  meets" if ok else ""))
    if result.value is None:
        print(f"no value of {args.vary} in {low}..{high} meets {target}")
        return 1
    m = result.metric
    ci = f", 95 % CI [{m['low']:.4g}, {m['high']:.4g}]" if m["half_width"] == m["half_width"] else ""
    print(f"{args.vary} = {result.value}: {target.metric} = {m['mean']:.4g}{ci} meets {target}")
    return 0
