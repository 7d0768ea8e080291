"""Soak: many client streams stage and run short jobs against one reference agent for a while."""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _load import (AgentProcess, LoadConfig, cleanup, executions, machine, percentile,  # noqa: E402
                   prepare, publish, run_load)

EPILOG = """\
examples:
  python bench/soak.py                          # 200 streams, 120 s (make soak)
  python bench/soak.py --streams 20 --duration 10 --json soak.json
  python bench/soak.py --agent-arg=--quiet      # without the agent's JSON log

Each stream stages the witness script plus one fresh data file for a new job, runs it, polls
RunJob until DONE, re-checks one of its older DONE jobs, and now and then sends a request the
protocol must refuse (counted as "expected"). Every execution leaves a witness file, so a job
run twice is seen. Exit status 0 when the targets hold: no unexpected status, no job lost
(submitted and not DONE after the drain), none run twice, no violation.
"""


def positive(kind):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind.__name__}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"{text!r} must be > 0")
        return value
    return parse


def add_load_arguments(parser: argparse.ArgumentParser, streams: int = 200) -> None:
    parser.add_argument("--streams", type=positive(int), default=streams, help=f"concurrent client streams (default {streams})")
    parser.add_argument("--processes", type=positive(int), default=8, help="client processes sharing the streams (default 8)")
    parser.add_argument("--poll-interval", type=positive(float), default=0.2, metavar="S", help="seconds between status polls (default 0.2)")
    parser.add_argument("--drain", type=positive(float), default=120.0, metavar="S",
                        help="seconds after the load for submitted jobs to end; later = lost (default 120)")
    parser.add_argument("--slots", type=positive(int), default=os.cpu_count() or 1, help="the agent's --slots (default: CPUs)")
    parser.add_argument("--error-rate", type=float, default=0.05, help="share of jobs followed by a refused request (default 0.05)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--agent-arg", action="append", default=[], metavar="ARG", help="extra argument for `reference-agent serve`")
    parser.add_argument("--keep", action="store_true", help="keep the working directory (journal, logs, witnesses)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")


def summarise(result, witness: Path, seconds: float) -> dict:
    """The figures every load report shows, from merged results and the witness files."""
    runs = executions(witness)
    answered = {k: n for k, n in result.codes.items() if k[2] != "outage"}
    all_ms = [ms for values in result.latencies.values() for ms in values]
    return {
        "rpcs_answered": sum(answered.values()),
        "rpcs_per_s": round(sum(answered.values()) / seconds, 1),
        "ok": sum(n for (m, c, v), n in answered.items() if c == "OK"),
        "expected_errors": sum(n for (m, c, v), n in answered.items() if v == "expected" and c != "OK"),
        "unexpected": sum(n for (m, c, v), n in result.codes.items() if v == "unexpected"),
        "outage": sum(n for (m, c, v), n in result.codes.items() if v == "outage"),
        "codes": {f"{m} {c} {v}": n for (m, c, v), n in sorted(result.codes.items())},
        "p50_ms": round(percentile(all_ms, 50), 2), "p99_ms": round(percentile(all_ms, 99), 2),
        "by_method": {m: {"n": len(v), "p50_ms": round(percentile(v, 50), 2), "p99_ms": round(percentile(v, 99), 2)}
                      for m, v in sorted(result.latencies.items())},
        "submitted": len(result.submitted), "done": len(result.done & result.submitted),
        "lost": len(result.submitted - result.done),
        "run_twice": sum(1 for n in runs.values() if n > 1),
        "started_not_submitted": len(set(runs) - result.submitted),
        "violations": dict(result.violations), "examples": result.examples,
    }


def table(figures: dict) -> str:
    rows = [("RPCs answered", f"{figures['rpcs_answered']} ({figures['rpcs_per_s']}/s)"),
            ("  OK", figures["ok"]), ("  refusals the protocol demands", figures["expected_errors"]),
            ("  unexpected statuses", figures["unexpected"])]
    if figures["outage"]:
        rows.append(("  outages (agent down; retried)", figures["outage"]))
    rows += [(f"  {k}", n) for k, n in figures["codes"].items()]
    rows += [("latency p50 / p99 (all)", f"{figures['p50_ms']} / {figures['p99_ms']} ms")]
    rows += [(f"  {m} (n={v['n']})", f"{v['p50_ms']} / {v['p99_ms']} ms") for m, v in figures["by_method"].items()]
    rows += [("jobs submitted", figures["submitted"]), ("jobs DONE", figures["done"]),
             ("jobs lost", figures["lost"]), ("jobs run twice", figures["run_twice"]),
             ("DONE reasons (journal)", figures.get("reasons", {}))]
    rows += [(f"violation: {k}", n) for k, n in figures["violations"].items()]
    width = max(len(str(r[0])) for r in rows)
    lines = [f"| {'figure'.ljust(width)} | value |", f"|{'-' * (width + 2)}|-------|"]
    lines += [f"| {str(k).ljust(width)} | {v} |" for k, v in rows]
    return "\n".join(lines + [f"examples: {e}" for e in figures["examples"][:10]])


def baseline(agent_address: str, base: LoadConfig, seconds: float) -> float:
    """p50 latency of one stream alone for a few seconds: the unloaded reference."""
    from dataclasses import replace

    result = run_load(replace(base, address=agent_address, streams=1, processes=1, duration=seconds,
                              drain=20.0, error_rate=0.0))
    return percentile([ms for v in result.latencies.values() for ms in v], 50)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=positive(float), default=120.0, metavar="S",
                        help="seconds of load (default 120)")
    parser.add_argument("--baseline", type=positive(float), default=4.0, metavar="S",
                        help="seconds of one stream alone first, the latency reference (default 4)")
    add_load_arguments(parser)
    args = parser.parse_args(argv)
    if not 0 <= args.error_rate <= 1:
        parser.error(f"--error-rate {args.error_rate!r}: must be within 0..1")
    if args.processes > args.streams:
        parser.error(f"--processes {args.processes} is more than --streams {args.streams}")
    work = Path(tempfile.mkdtemp(prefix="agent-soak-"))
    source, witness = work / "source", work / "witness"
    source.mkdir()
    script = prepare(source, witness)
    agent = AgentProcess(source, work / "state", work / "agent.log", args.slots, args.agent_arg)
    try:
        address = agent.start()
        cfg = LoadConfig(address, str(source), str(witness), script, args.streams, args.processes,
                         args.duration, args.drain, args.poll_interval, args.error_rate, seed=args.seed)
        base_p50 = baseline(address, cfg, args.baseline)
        for name in os.listdir(witness):
            os.unlink(witness / name)
        rss_start = agent.rss_mb()
        began = time.monotonic()
        result = run_load(cfg)
        seconds = time.monotonic() - began
        rss_end = agent.rss_mb()
        agent.stop()
        figures = summarise(result, witness, args.duration)
        figures.update(command="python bench/soak.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                       machine=machine(), streams=args.streams, duration_s=args.duration,
                       wall_s=round(seconds, 1), rss_start_mb=round(rss_start, 1), rss_end_mb=round(rss_end, 1),
                       baseline_p50_ms=round(base_p50, 2), p50_ratio=round(figures["p50_ms"] / base_p50, 2),
                       reasons=dict(agent.reasons()))
    finally:
        cleanup(agent, work, args.keep)
    ok = not (figures["unexpected"] or figures["lost"] or figures["run_twice"] or figures["violations"])
    return publish(
        figures, ok, table(figures), f"machine: {figures['machine']}" + (f"; kept {work}" if args.keep else ""),
        args.json,
        lambda f: (f"soak: {args.streams} streams x {args.duration:g} s: {f['rpcs_answered']} RPCs answered "
                   f"({f['rpcs_per_s']}/s), {f['unexpected']} unexpected statuses, "
                   f"p50 {f['p50_ms']} ms (x{f['p50_ratio']} the 1-stream baseline {f['baseline_p50_ms']} ms), "
                   f"p99 {f['p99_ms']} ms; jobs {f['submitted']} submitted, {f['done']} DONE, "
                   f"{f['lost']} lost, {f['run_twice']} run twice; agent RSS {f['rss_start_mb']} -> "
                   f"{f['rss_end_mb']} MB: {f['verdict']}"))

if __name__ == "__main__":
    sys.exit(main())
