"""Chaos: the soak's load while the agent is SIGKILLed, its disk fills, a second agent or a lost journal tries to start."""
from __future__ import annotations

import argparse
import random
import socket
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _attacks import done_without_running, remove_pids_cgroups  # noqa: E402
from _faults import DISK_KINDS, Faults, SmallDisk, ends_recorded_late, parse_kinds, scrape  # noqa: E402
from _load import (DISK_FULL_CODES, AgentProcess, LoadConfig, cleanup, executions, machine, prepare,  # noqa: E402
                   publish, run_load, start_rate)
from soak import add_load_arguments, positive, summarise, table  # noqa: E402

EPILOG = """\
examples:
  python bench/chaos.py                       # 20 kills, 200 streams (make chaos)
  python bench/chaos.py --kills 3 --streams 20 --json chaos.json
  python bench/chaos.py --faults all --kills 24   # 4 of each fault kind, in turn
  python bench/chaos.py --quick               # one of each kind, 4 streams, under 20 s

Fault kinds (--faults, taken in turn for the --kills events): kill (SIGKILL and restart);
disk-stage, disk-submit, disk-end (the state directory is a tmpfs, filled by one file while a
StageInFiles, a RunJob or jobs' ends happen, then freed: the agent must answer
RESOURCE_EXHAUSTED or OK, never UNKNOWN, and lose nothing); second-agent (another agent on
the same state directory must exit 2 naming the holder's pid); journal-removed (SIGKILL, the
journal moved away: the agent must refuse to start, exit 2; --accept-lost-journal must start
it on a copy of the state; then the journal comes back). Disk kinds need root for the mount.
Issue 18's kinds, each held while a job is submitted (the job must end DONE having run):
half-open (200 calls over 10 connections that never send their request message), conn-flood
(300 idle TCP connections), emfile (the agent's RLIMIT_NOFILE lowered to what it holds),
pids-limit (the agent's process moved into a pids cgroup leaving it 24 tasks; root).
"DONE without running" counts jobs the agent ended with "could not start".

Clients retry UNAVAILABLE and DEADLINE_EXCEEDED while the agent is down (counted as outages).
AGT-DUR-1 violations counted: a job seen DONE and later anything else (re-checks by the
streams and a final audit of every DONE job), a state going backwards, a job started twice
(witness files), a staged file lost (RunJob says unstaged after StageInFiles said staged; and
"parked" jobs, staged after each restart with their data then deleted from the source, must
still be accepted at the end). Exit status 0 when there is none and nothing is lost.
"""


class Chaos:
    """Injects faults at random moments, the kinds in turn; after each, parks a job."""

    def __init__(self, faults: Faults, kinds: tuple[str, ...], events: int, low: float, high: float,
                 rng: random.Random):
        self.faults, self.kinds, self.events, self.low, self.high, self.rng = faults, kinds, events, low, high, rng
        self.agent, self.address = faults.agent, faults.address
        self.source, self.script = faults.source, faults.script
        self.parked: list[tuple[str, list[str]]] = []
        self.park_failures: list[str] = []

    @property
    def downtimes(self) -> list[float]:
        return self.faults.downtimes

    def __call__(self) -> None:
        for i in range(self.events):
            time.sleep(self.rng.uniform(self.low, self.high))
            self.faults.inject(self.kinds[i % len(self.kinds)])
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


def _arguments(argv):
    """The parsed options and fault kinds; usage errors exit 2 naming the option."""
    parser = argparse.ArgumentParser(description=__doc__, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", "--events", dest="kills", type=positive(int), default=20,
                        help="faults injected, the --faults kinds in turn (default 20)")
    parser.add_argument("--faults", default="kill", metavar="KINDS",
                        help="comma-separated fault kinds, or all (default kill; see below)")
    parser.add_argument("--disk-size", default="256m", metavar="SIZE",
                        help="size of the tmpfs state directory for disk kinds (default 256m)")
    parser.add_argument("--quick", action="store_true",
                        help="one fault of each kind, 4 streams, no baseline: a check in seconds")
    parser.add_argument("--interval", type=positive(float), nargs=2, default=(1.0, 6.0), metavar=("MIN", "MAX"),
                        help="seconds of service between a restart and the next kill, uniform (default 1 6)")
    parser.add_argument("--baseline", type=positive(float), default=10.0, metavar="S",
                        help="seconds of the same load without kills first, the reference for throughput (default 10)")
    add_load_arguments(parser)
    args = parser.parse_args(argv)
    try:
        kinds = parse_kinds(args.faults)
    except ValueError as exc:
        parser.error(f"--faults {exc}")
    if args.quick:
        kinds = parse_kinds("all") if args.faults == "kill" else kinds
        args.kills, args.interval, args.streams, args.processes = len(kinds), (0.2, 0.4), 4, 1
        args.drain, args.poll_interval, args.disk_size = min(args.drain, 30.0), 0.05, "32m"
    low, high = args.interval
    if low > high:
        parser.error(f"--interval {low} {high}: MIN is more than MAX")
    if args.processes > args.streams:
        parser.error(f"--processes {args.processes} is more than --streams {args.streams}")
    return args, kinds


def _small_disk(work: Path, kinds, args):
    """A tmpfs state directory when disk kinds are asked for: (disk or None, kinds, why skipped)."""
    if not DISK_KINDS & set(kinds):
        return None, kinds, ""
    disk = SmallDisk(work / "state", args.disk_size)
    why = disk.try_mount()
    if not why:
        return disk, kinds, ""
    kinds = tuple(k for k in kinds if k not in DISK_KINDS) or ("kill",)
    skipped = f"disk kinds skipped: cannot mount a tmpfs ({why})"
    print(f"chaos: {skipped}", file=sys.stderr)
    if args.quick:
        args.kills = len(kinds)
    return None, kinds, skipped


def main(argv=None) -> int:
    args, kinds = _arguments(argv)
    low, high = args.interval
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="agent-chaos-"))
    source, witness = work / "source", work / "witness"
    source.mkdir()
    script = prepare(source, witness)
    disk, kinds, skipped = _small_disk(work, kinds, args)
    metrics_port = _free_port()
    agent = AgentProcess(source, work / "state", work / "agent.log", args.slots,
                         [*args.agent_arg, "--metrics-port", str(metrics_port)])
    try:
        address = agent.start()
        cfg = LoadConfig(address, str(source), str(witness), script, args.streams, args.processes,
                         args.baseline, args.drain, args.poll_interval, args.error_rate, seed=args.seed,
                         outages=DISK_FULL_CODES if disk else LoadConfig.outages)
        base_rate, base_runs, base_lost = None, {}, 0
        if not args.quick:
            base = run_load(cfg)
            base_rate, base_runs, base_lost = start_rate(witness, base.window), executions(witness), \
                len(base.submitted - base.done)
        rss_start = agent.rss_mb()
        # Service time between faults, plus restarts of ~2 s each, plus a tail without faults.
        duration = args.kills * ((low + high) / 2 + 2.0) + 10.0 if not args.quick else 6.0
        faults = Faults(agent, address, source, script, work, disk)
        chaos = Chaos(faults, kinds, args.kills, low, high, rng)
        cfg = replace(cfg, duration=duration, chaos=True, seed=args.seed + 1)
        began = time.monotonic()
        result = run_load(cfg, during=chaos)
        seconds = time.monotonic() - began
        parked_lost, parked_notes = chaos.check_parked()
        fault_lost, fault_notes = _wait_done(address, faults.jobs)
        gauges = scrape(metrics_port)
        rss_end = agent.rss_mb()
        agent.stop()
        runs = executions(witness)
        twice_base = sum(1 for n in base_runs.values() if n > 1)
        figures = summarise(result, witness, duration)
        figures["run_twice"] = sum(1 for n in runs.values() if n > 1)  # whole run, baseline included
        figures["violations"]["staged file lost (parked)"] = parked_lost
        figures["violations"]["run twice"] = figures["run_twice"]
        figures["violations"]["fault jobs not DONE"] = fault_lost
        figures["violations"]["DONE without running"] = len(done_without_running(agent.state / "journal.sqlite3"))
        remove_pids_cgroups()
        figures["violations"].update(faults.violations)
        busy, running = gauges.get("agent_slots_busy", 0), gauges.get('agent_jobs{state="RUN"}', 0)
        figures["slots_lost"] = int(max(0, busy - running))
        figures["violations"]["slots lost"] = figures["slots_lost"]
        figures["unknown_statuses"] = sum(n for (m, c, v), n in result.codes.items() if c == "UNKNOWN")
        figures["violations"] = {k: v for k, v in figures["violations"].items() if v}
        figures["examples"] += chaos.park_failures + parked_notes + faults.examples + fault_notes
        figures.update(faults={k: {"injected": faults.injected[k], "refused": faults.refused[k]} for k in kinds},
                       ends_recorded_late=ends_recorded_late(work / "agent.log"), fault_jobs=len(faults.jobs),
                       skipped=skipped, load_average=" ".join(f"{x:.2f}" for x in __import__("os").getloadavg()))
        figures.update(command="python bench/chaos.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                       machine=machine(), streams=args.streams, kills=sum(faults.injected.values()),
                       restarts=agent.starts - 1, parked=len(chaos.parked), quick=args.quick,
                       restart_s_mean=round(sum(chaos.downtimes) / max(1, len(chaos.downtimes)), 2),
                       restart_s_max=round(max(chaos.downtimes, default=0), 2), duration_s=round(duration, 1),
                       wall_s=round(seconds, 1), rss_start_mb=round(rss_start, 1), rss_end_mb=round(rss_end, 1),
                       baseline_jobs_per_s=round(base_rate, 2) if base_rate is not None else None,
                       jobs_per_s=round(start_rate(witness, result.window), 2),
                       baseline_lost=base_lost, baseline_run_twice=twice_base,
                       reasons=dict(agent.reasons()))
        figures["throughput_ratio"] = round(figures["jobs_per_s"] / base_rate, 2) if base_rate else None
    finally:
        if disk is not None:
            agent.stop()
            disk.unmount()
        cleanup(agent, work, args.keep)
    ok = not (figures["unexpected"] or figures["lost"] or figures["violations"] or figures["baseline_lost"])
    return publish(
        figures, ok, table(figures),
        f"faults {figures['kills']} ({_faults_text(figures)}); ends recorded late {figures['ends_recorded_late']}; "
        f"restart (kill to listening) mean {figures['restart_s_mean']} s, "
        f"max {figures['restart_s_max']} s; parked jobs {figures['parked']}; load average {figures['load_average']}; "
        f"machine: {figures['machine']}" + (f"; {skipped}" if skipped else "") + (f"; kept {work}" if args.keep else ""),
        args.json,
        _summary(kinds, args.streams))


def _summary(kinds, streams: int):
    """The one summary line of a run, from its figures."""
    return lambda f: (f"chaos: {f['kills']} faults ({','.join(kinds)}) under {streams} streams: "
                      f"{len(f['violations'])} kinds of violation ({sum(f['violations'].values())} in all), "
                      f"{f['unexpected']} unexpected statuses ({f['unknown_statuses']} UNKNOWN), {f['outage']} outage "
                      f"RPCs retried; jobs {f['submitted']} submitted, {f['done']} DONE, {f['lost']} lost, "
                      f"{f['run_twice']} run twice, {f['slots_lost']} slots lost; "
                      f"{f['jobs_per_s']} jobs started/s = x{f['throughput_ratio']} the no-fault baseline; "
                      f"agent RSS {f['rss_start_mb']} -> {f['rss_end_mb']} MB: {f['verdict']}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _faults_text(figures: dict) -> str:
    return ", ".join(f"{k} {v['injected']} (refused {v['refused']})" for k, v in figures["faults"].items())


def _wait_done(address: str, jobs: list[str]) -> tuple[int, list[str]]:
    """Jobs the faults submitted: each must end DONE."""
    from protos.client import AgentClient
    import grpc

    lost, notes = 0, []
    with grpc.insecure_channel(address) as channel:
        client = AgentClient(channel, timeout=30)
        for job in jobs:
            try:
                client.wait_until_done(job, poll_interval=0.1, deadline=120)
            except Exception as exc:  # noqa: BLE001 - counted
                lost += 1
                notes.append(f"fault job {job}: {exc}")
    return lost, notes


if __name__ == "__main__":
    sys.exit(main())
