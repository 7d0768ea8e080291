"""Chaos: the soak's load while the agent is SIGKILLed at random moments and restarted."""
from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _load import (AgentProcess, LoadConfig, cleanup, executions, machine, prepare, publish,  # noqa: E402
                   run_load, start_rate)
from soak import add_load_arguments, positive, summarise, table  # noqa: E402

EPILOG = """\
examples:
  python bench/chaos.py                       # 20 kills, 200 streams (make chaos)
  python bench/chaos.py --kills 3 --streams 20 --json chaos.json

Clients retry UNAVAILABLE and DEADLINE_EXCEEDED while the agent is down (counted as outages).
AGT-DUR-1 violations counted: a job seen DONE and later anything else (re-checks by the
streams and a final audit of every DONE job), a state going backwards, a job started twice
(witness files), a staged file lost (RunJob says unstaged after StageInFiles said staged; and
"parked" jobs, staged after each restart with their data then deleted from the source, must
still be accepted at the end). Exit status 0 when there is none and nothing is lost.
"""


class Chaos:
    """Kills the agent at random moments and restarts it on the same port and state."""

    def __init__(self, agent: AgentProcess, address: str, kills: int, low: float, high: float,
                 rng: random.Random, source: Path, script: str):
        self.agent, self.address, self.kills, self.low, self.high, self.rng = agent, address, kills, low, high, rng
        self.source, self.script = source, script
        self.downtimes: list[float] = []
        self.parked: list[tuple[str, list[str]]] = []
        self.park_failures: list[str] = []

    def __call__(self) -> None:
        for _ in range(self.kills):
            time.sleep(self.rng.uniform(self.low, self.high))
            self.agent.kill()
            down = time.monotonic()
            self.agent.start(self.address)
            self.downtimes.append(time.monotonic() - down)
            self.park()

    def park(self) -> None:
        """Stage a job's files, then delete the data from the source: only the agent has it now."""
        from protos.client import AgentCallError, AgentClient
        import grpc

        job, data = str(uuid.uuid4()), str(uuid.uuid4())
        (self.source / data).write_bytes(data.encode() * 8)
        with grpc.insecure_channel(self.address) as channel:
            try:
                staged = AgentClient(channel, timeout=30).stage_in(job, [self.script, data])
            except AgentCallError as exc:
                self.park_failures.append(f"park {job}: {exc}")
                return
        (self.source / data).unlink()
        if staged == [self.script, data]:
            self.parked.append((job, staged))
        else:
            self.park_failures.append(f"park {job}: staged {staged}")

    def check_parked(self) -> tuple[int, list[str]]:
        """Submit every parked job (its files must still be staged) and wait for DONE."""
        from protos.client import AgentCallError, AgentClient
        import grpc

        lost, notes = 0, []
        with grpc.insecure_channel(self.address) as channel:
            client = AgentClient(channel, timeout=30)
            for job, files in self.parked:
                try:
                    client.run(job, files)
                    client.wait_until_done(job, poll_interval=0.1, deadline=120)
                except AgentCallError as exc:
                    lost += exc.code_name == "FAILED_PRECONDITION"
                    notes.append(f"parked {job}: {exc}")
                except Exception as exc:  # noqa: BLE001 - JobTimeout: counted as a note
                    notes.append(f"parked {job}: {exc}")
        return lost, notes


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=positive(int), default=20, help="SIGKILLs of the agent (default 20)")
    parser.add_argument("--interval", type=positive(float), nargs=2, default=(1.0, 6.0), metavar=("MIN", "MAX"),
                        help="seconds of service between a restart and the next kill, uniform (default 1 6)")
    parser.add_argument("--baseline", type=positive(float), default=10.0, metavar="S",
                        help="seconds of the same load without kills first, the reference for throughput (default 10)")
    add_load_arguments(parser)
    args = parser.parse_args(argv)
    low, high = args.interval
    if low > high:
        parser.error(f"--interval {low} {high}: MIN is more than MAX")
    if args.processes > args.streams:
        parser.error(f"--processes {args.processes} is more than --streams {args.streams}")
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="agent-chaos-"))
    source, witness = work / "source", work / "witness"
    source.mkdir()
    script = prepare(source, witness)
    agent = AgentProcess(source, work / "state", work / "agent.log", args.slots, args.agent_arg)
    try:
        address = agent.start()
        cfg = LoadConfig(address, str(source), str(witness), script, args.streams, args.processes,
                         args.baseline, args.drain, args.poll_interval, args.error_rate, seed=args.seed)
        base = run_load(cfg)
        base_rate = start_rate(witness, base.window)
        base_runs = executions(witness)
        rss_start = agent.rss_mb()
        # Service time between kills, plus restarts of ~2 s each, plus a tail without kills.
        duration = args.kills * ((low + high) / 2 + 2.0) + 10.0
        chaos = Chaos(agent, address, args.kills, low, high, rng, source, script)
        cfg = replace(cfg, duration=duration, chaos=True, seed=args.seed + 1)
        began = time.monotonic()
        result = run_load(cfg, during=chaos)
        seconds = time.monotonic() - began
        parked_lost, parked_notes = chaos.check_parked()
        rss_end = agent.rss_mb()
        agent.stop()
        runs = executions(witness)
        twice_base = sum(1 for n in base_runs.values() if n > 1)
        figures = summarise(result, witness, duration)
        figures["run_twice"] = sum(1 for n in runs.values() if n > 1)  # whole run, baseline included
        figures["violations"]["staged file lost (parked)"] = parked_lost
        figures["violations"]["run twice"] = figures["run_twice"]
        figures["violations"] = {k: v for k, v in figures["violations"].items() if v}
        figures["examples"] += chaos.park_failures + parked_notes
        figures.update(command="python bench/chaos.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                       machine=machine(), streams=args.streams, kills=len(chaos.downtimes),
                       restarts=agent.starts - 1, parked=len(chaos.parked),
                       restart_s_mean=round(sum(chaos.downtimes) / max(1, len(chaos.downtimes)), 2),
                       restart_s_max=round(max(chaos.downtimes, default=0), 2), duration_s=round(duration, 1),
                       wall_s=round(seconds, 1), rss_start_mb=round(rss_start, 1), rss_end_mb=round(rss_end, 1),
                       baseline_jobs_per_s=round(base_rate, 2), jobs_per_s=round(start_rate(witness, result.window), 2),
                       baseline_lost=len(base.submitted - base.done), baseline_run_twice=twice_base,
                       reasons=dict(agent.reasons()))
        figures["throughput_ratio"] = round(figures["jobs_per_s"] / base_rate, 2) if base_rate else None
    finally:
        cleanup(agent, work, args.keep)
    ok = not (figures["unexpected"] or figures["lost"] or figures["violations"] or figures["baseline_lost"])
    return publish(
        figures, ok, table(figures),
        f"kills {figures['kills']}, restart (kill to listening) mean {figures['restart_s_mean']} s, "
        f"max {figures['restart_s_max']} s; parked jobs {figures['parked']}; machine: {figures['machine']}"
        + (f"; kept {work}" if args.keep else ""),
        args.json,
        lambda f: (f"chaos: {f['kills']} SIGKILLs under {args.streams} streams: {len(f['violations'])} kinds of "
                   f"AGT-DUR-1 violation ({sum(f['violations'].values())} in all), {f['unexpected']} unexpected "
                   f"statuses, {f['outage']} outage RPCs retried; jobs {f['submitted']} submitted, "
                   f"{f['done']} DONE, {f['lost']} lost, {f['run_twice']} run twice; "
                   f"{f['jobs_per_s']} jobs started/s = x{f['throughput_ratio']} the no-kill baseline; "
                   f"agent RSS {f['rss_start_mb']} -> {f['rss_end_mb']} MB: {f['verdict']}"))

if __name__ == "__main__":
    sys.exit(main())
