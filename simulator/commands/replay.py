"""`agent-sim replay`: one scenario run for real on local reference agents and in the simulator."""
from __future__ import annotations

import math
import sys
from pathlib import Path

from simulator.commands._common import UsageError
from simulator.commands._common import nonneg_int, positive_int

NAME = "replay"
ORDER = 60
HELP = "run a scenario for real (K local reference agents) and simulated, on the same arrivals; compare"
EPILOG = """\
examples:
  agent-sim replay simulator/real/replay_70.toml --out out/replay-70
  agent-sim replay simulator/real/replay_95.toml --out out/replay-95 --max-error 0.1
  agent-sim replay my.toml --calibration calibrated.toml --out out/r

The scenario's agent groups are replaced by K local `reference-agent serve` processes with S slots
each (--agents, --slots: default 4 x 2; keep the workload's rate in line with K x S); its
arrivals, runtimes and files become one plan that both sides run: real jobs sleep their runtime,
stage the plan's files from a local source, and a client (protos.client.AgentClient, a bounded
thread pool) submits and polls on the scenario's schedule. Supported: policies round_robin, random,
least_loaded; dispatch on_arrival; no failing jobs. Without --calibration, agent 0 is
calibrated first. Writes comparison.md / .json (mean, p50, p95 wait and turnaround, throughput,
polls per job, real vs simulated, relative error), states.png (WAIT/RUN/DONE, both), real-jobs.csv,
sim-jobs.csv, trace.csv (the plan fed to the simulator) and calibrated.toml/.json.
--max-error X exits 1 when the relative error of wait_mean, wait_p95 or throughput exceeds X, for the
model calibrated alongside the run (a probe agent measures the slot turnover meanwhile).
"""

CHECKED = ("wait_mean", "wait_p95", "throughput")


def _fraction(text: str) -> float:
    import argparse
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (0 < v < math.inf):
        raise argparse.ArgumentTypeError(f"{text!r} must be a fraction > 0, like 0.1")
    return v


def add_arguments(p) -> None:
    p.add_argument("scenario", metavar="SCENARIO.toml", help="the scenario (see docs/SIMULATOR.md)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing)")
    p.add_argument("--calibration", metavar="FILE.toml", help="a fragment from `agent-sim calibrate` (default: measure)")
    p.add_argument("--quick-calibration", action="store_true", help="calibrate with fewer samples (seconds)")
    p.add_argument("--agents", type=positive_int, default=4, metavar="K",
                   help="local reference agents; they replace the scenario's agent groups (default 4)")
    p.add_argument("--slots", type=positive_int, default=2, metavar="S", help="slots per local agent (default 2)")
    p.add_argument("--jobs", type=positive_int, default=None, metavar="N", help="override run.jobs")
    p.add_argument("--seed", type=nonneg_int, default=None, metavar="S", help="override run.seed")
    p.add_argument("--client-threads", type=positive_int, default=16, metavar="N",
                   help="the client's RPC thread pool (default 16)")
    p.add_argument("--max-error", type=_fraction, default=None, metavar="X",
                   help=f"exit 1 if the relative error of {', '.join(CHECKED)} exceeds X")


def run(args) -> int:
    from simulator.real import replay, replay_report
    from simulator.real.calibrate import Calibration, CalibrationError
    from simulator.real.fleet import FleetError
    from simulator.scenario import Scenario
    path = Path(args.scenario)
    if not path.is_file():
        raise UsageError(f"scenario file {str(path)!r} does not exist")
    sc = Scenario.from_toml(path)
    if args.jobs is not None:
        sc = sc.with_value("run.jobs", args.jobs)
    if args.seed is not None:
        sc = sc.with_value("run.seed", args.seed)
    groups = ", ".join(f"{g.name}: {g.count} x {g.slots}" for g in sc.agents)
    dropped = [g.name for g in sc.agents if g.failures is not None or g.speed != 1.0]
    sc = replay.with_fleet(sc, args.agents, args.slots)
    print(f"agents: {args.agents} local reference agents x {args.slots} slots (the scenario's: {groups})"
          + (f"; failures and speed of {', '.join(dropped)} are not replayed" if dropped else ""), file=sys.stderr)
    cal = None
    if args.calibration is not None:
        try:
            cal = Calibration.load(args.calibration)
        except CalibrationError as exc:
            raise UsageError(f"--calibration: {exc}") from None
    try:
        replay.check(sc)
        report = replay.replay(sc, args.out, calibration=cal, quick_calibration=args.quick_calibration,
                               workers=args.client_threads, progress=lambda m: print(m, file=sys.stderr))
    except replay.ReplayError as exc:
        raise UsageError(str(exc)) from None
    except (FleetError, CalibrationError) as exc:
        print(f"agent-sim replay: {exc}", file=sys.stderr)
        return 1
    print(replay_report.markdown(report), end="")
    print(f"load average at calibration {report['machine']['load_average_calibration']}, after the run "
          f"{report['machine']['load_average_after']}")
    client = report["client"]
    if client["error_count"] or client["unfinished"]:
        print(f"real run: {client['error_count']} errors, {client['unfinished']} unfinished: {client['errors'][:3]}")
        return 1
    if args.max_error is not None:
        side = report.get("alongside") or {}
        judged, which = (side["rel_error"], "calibrated alongside") if "rel_error" in side else \
            (report["rel_error"], "calibrated before")
        over = [k for k in CHECKED if not judged[k] <= args.max_error]
        if over:
            print(f"relative error ({which}) above {args.max_error:.0%}: {', '.join(over)}")
            return 1
    print(f"-> {args.out}/comparison.md")
    return 0
