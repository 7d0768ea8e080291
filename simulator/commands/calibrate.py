"""`agent-sim calibrate`: measure the reference agent on this machine and write a scenario fragment."""
from __future__ import annotations

import sys
from pathlib import Path

from simulator.commands._common import UsageError
from simulator.commands._common import positive_int

NAME = "calibrate"
ORDER = 50
HELP = "measure a reference agent (poll and StageInFiles cost, start overhead, staging bandwidth, exit to DONE)"
EPILOG = """\
examples:
  agent-sim calibrate --out calibrated.toml                  # starts a reference agent itself (about 20 s)
  agent-sim calibrate --quick --out /tmp/cal.toml             # fewer samples, a few seconds
  agent-sim calibrate --target 127.0.0.1:50051 --source-dir agent-source --out calibrated.toml

Writes FILE.toml with [clients] and [network] keys that a scenario accepts (rpc_latency,
rpc_cost_poll, rpc_cost_stage, rpc_cost_run, source_bandwidth, source_latency) and FILE.json with
every figure, including the launch and exit-to-DONE delays that have no scenario key (replay adds
them to each job's service time). The measurements are simulator.real.measure, shared with bench/agent_bench.py. A --target must be
an agent on this machine whose file source is --source-dir: probe jobs stamp files in /tmp.
"""


def add_arguments(p) -> None:
    p.add_argument("--out", required=True, metavar="FILE.toml", help="the fragment to write (and FILE.json)")
    p.add_argument("--target", metavar="HOST:PORT", help="an agent already running (default: start one)")
    p.add_argument("--source-dir", metavar="DIR", help="the target's file source directory (with --target)")
    p.add_argument("--slots", type=positive_int, default=2, help="slots of the agent started (default 2)")
    p.add_argument("--quick", action="store_true", help="fewer samples: seconds instead of about 20 s")


def check_target(text: str) -> str:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise UsageError(f"--target {text!r}: expected HOST:PORT with a port in 1..65535, like 127.0.0.1:50051")
    return text


def run(args) -> int:
    from simulator.real import calibrate as cal
    out = Path(args.out)
    if out.suffix != ".toml":
        raise UsageError(f"--out {args.out!r}: the fragment must be a .toml file (its figures go to the .json beside it)")
    if out.is_dir():
        raise UsageError(f"--out {args.out!r} is a directory; give a file name like calibrated.toml")
    if args.target is not None:
        check_target(args.target)
        if args.source_dir is None:
            raise UsageError(f"--target {args.target}: give the agent's file source with --source-dir DIR")
        if not Path(args.source_dir).is_dir():
            raise UsageError(f"--source-dir {args.source_dir!r} is not a directory")
    elif args.source_dir is not None:
        raise UsageError("--source-dir is only for --target (without one, calibrate starts its own agent)")
    settings = cal.Settings.quick() if args.quick else cal.Settings()
    try:
        result = cal.calibrate(args.target, args.source_dir, settings, slots=args.slots)
    except cal.CalibrationError as exc:
        raise UsageError(str(exc)) from None
    command = "agent-sim " + " ".join(sys.argv[1:]) if sys.argv[1:2] == ["calibrate"] else "agent-sim calibrate"
    toml_path, json_path = result.write(out, command)
    print(f"calibrated {result.target} -> {toml_path} (figures in {json_path})")
    print(f"  poll {result.poll_rtt * 1e3:.2f} ms, StageInFiles {result.stage_new * 1e3:.2f} ms, "
          f"RunJob {result.run_submit * 1e3:.2f} ms, RunJob->RUN {result.run_to_running * 1e3:.1f} ms, "
          f"RunJob->first statement {result.start_overhead * 1e3:.1f} ms (bare spawn {result.bare_spawn * 1e3:.1f}), "
          f"exit->DONE {result.done_delay * 1e3:.1f} ms, staging {result.staging_bandwidth / 1e6:.0f} MB/s")
    return 0
