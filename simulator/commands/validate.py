"""`agent-sim validate`: the simulator against Erlang C, M/M/1 and Little's law, as a table."""
from __future__ import annotations

from simulator import analytic, theory
from simulator.commands._common import positive_int

NAME = "validate"
ORDER = 40
HELP = ("run the analytic checks (Erlang C, M/M/1 state probabilities, M/G/1 Pollaczek-Khinchine, GI/M/1, "
        "Little's law, a plan at offered load 1) and print a table")
EPILOG = """\
examples:
  agent-sim validate                 # about a minute on one core
  agent-sim validate --jobs 20000 --replications 5 --layouts one_agent

Erlang C assumes ONE shared FIFO queue: it is reproduced by one agent with c slots (one_agent)
and by c one-slot agents fed from the client's queue when a slot frees (central_queue,
clients.dispatch = "when_free"). Dispatch on arrival to c one-slot agents (per_agent) is NOT
M/M/c; it is shown for contrast and not judged. M/G/1 (gamma and lognormal runtimes) against
Pollaczek-Khinchine, D/M/1 (a GI/M/1 queue) against its root sigma, and a plan whose only value
has offered load 1, which must answer "unstable" without simulating it. A row is ok when theory
lies in the simulation's 95 % CI or within 5 %. Exit status 1 if any judged row is not ok.

Time-varying load (--no-time-varying skips it): M(t)/M/infinity over a sinusoidal day, the mean
number of jobs in RUN at eight instants against m(t) = integral of rate(u) P(runtime > t - u) du
(intervals Bonferroni-adjusted over the eight); and a day of two long plateaus over 10 servers,
the mean wait inside each plateau against Erlang C at that plateau's rate.
"""


def add_arguments(p) -> None:
    p.add_argument("--jobs", type=positive_int, default=50000, help="jobs per replication (default 50000)")
    p.add_argument("--replications", type=positive_int, default=8, help="replications (default 8)")
    p.add_argument("--seed", type=positive_int, default=1)
    p.add_argument("--workers", type=positive_int, default=1, help="processes for replications")
    p.add_argument("--layouts", default="one_agent,central_queue", metavar="L1,L2",
                   help=f"layouts among {', '.join(theory.LAYOUTS)} (default one_agent,central_queue)")
    p.add_argument("--no-time-varying", action="store_true", help="skip the time-varying checks")


def run(args) -> int:
    from simulator.commands._common import UsageError
    layouts = [x.strip() for x in args.layouts.split(",") if x.strip()]
    bad = [x for x in layouts if x not in theory.LAYOUTS]
    if bad or not layouts:
        raise UsageError(f"--layouts {args.layouts!r}: choose among {', '.join(theory.LAYOUTS)}")
    judged, shown = [], []
    for case in analytic.ERLANG_CASES:
        for layout in layouts:
            checks, res = theory.erlang_checks(case, layout, jobs=args.jobs, replications=args.replications,
                                               seed=args.seed, workers=args.workers)
            checks.append(theory.little_check(res, case[0], layout))
            (shown if layout == "per_agent" else judged).extend(checks)
    judged += theory.mm1_checks(jobs=args.jobs, replications=args.replications, seed=args.seed)
    judged += theory.mg1_checks(jobs=args.jobs, replications=args.replications, seed=args.seed, workers=args.workers)
    judged += theory.gim1_checks(jobs=args.jobs, replications=args.replications, seed=args.seed, workers=args.workers)
    judged.append(theory.unstable_plan_check(seed=args.seed))
    if not args.no_time_varying:
        from simulator import theory_tv
        judged += theory_tv.mtginf_checks(seed=args.seed, workers=args.workers)
        judged += theory_tv.stationary_limit_checks(replications=max(8, args.replications), seed=args.seed,
                                                    workers=args.workers)
    print(theory.table(judged))
    if shown:
        print("\nnot M/M/c (per-agent queues), for contrast:")
        print(theory.table(shown))
    failed = [c for c in judged if not c.ok]
    print(f"\n{len(judged) - len(failed)}/{len(judged)} checks ok")
    return 1 if failed else 0
