"""Waiting on many jobs by WatchJobs against polling RunJob with the client's backoff: agent CPU per
job and the delay from a job's end to the client knowing it, both in one run (bench/agent_bench.py)."""
from __future__ import annotations

import heapq
import os
import sqlite3
import statistics
import threading
import time
import uuid
from pathlib import Path

import grpc

from protos import AgentExtensions_pb2, AgentExtensions_pb2_grpc, Common_pb2
from protos.client import AgentClient
from protos.retry import Backoff
from protos.states import JobState

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of process `pid` (all its threads, not its children) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def _ended(journal: Path, jobs: set[str]) -> dict[str, float]:
    """The journal's end time (agent clock, s) of every DONE job among `jobs`, read without the agent."""
    with sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=30) as db:
        rows = db.execute("SELECT job, ended FROM jobs WHERE state = 2").fetchall()
    return {job: ended for job, ended in rows if job in jobs and ended is not None}


class _Phase:
    """One way of waiting: slots held by gated blockers, `count` jobs queued behind them, the wait
    started, the gate opened; agent CPU and each job's end-to-known delay measured from there."""

    def __init__(self, client: AgentClient, source: Path, tmp: Path, slots: int, count: int, name: str):
        self.client, self.source, self.name = client, source, name
        self.gate = tmp / f"gate-{name}"
        entry = str(uuid.uuid4())
        (source / entry).write_text(f"import os, time\nend = time.monotonic() + 600\n"
                                    f"while not os.path.exists({str(self.gate)!r}) and time.monotonic() < end:\n"
                                    f"    time.sleep(0.005)\n")
        self.blockers = [self._submit(entry) for _ in range(slots)]
        quick = str(uuid.uuid4())
        (source / quick).write_text("pass\n")
        self.jobs = [self._submit(quick) for _ in range(count)]
        self.known: dict[str, float] = {}

    def _submit(self, entry: str) -> str:
        job = str(uuid.uuid4())
        self.client.stage_in(job, [entry])
        self.client.run(job, [entry])
        return job

    def release(self) -> None:
        self.gate.touch()


def _poll(client: AgentClient, phase: _Phase, deadline: float, ready: threading.Event) -> int:
    """Each job polled as one client's wait_until_done would (the client's default Backoff,
    restarted at each change of state), all from one thread by next-due time. Returns polls sent;
    `ready` once every job was polled once (as the watch's first events)."""
    backoff = Backoff()
    due = [(time.monotonic(), i, job, 0, JobState.WAIT) for i, job in enumerate(phase.jobs)]
    heapq.heapify(due)
    polls = 0
    while due:
        when, i, job, attempt, last = heapq.heappop(due)
        pause = when - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        state = client.run(job)
        polls += 1
        if polls == len(phase.jobs):
            ready.set()
        if state is JobState.DONE:
            phase.known[job] = time.time()
            continue
        if time.monotonic() > deadline:
            raise TimeoutError(f"polling: {len(due) + 1} jobs not DONE by the deadline")
        attempt = 0 if state is not last else attempt + 1
        heapq.heappush(due, (time.monotonic() + backoff.delay(attempt), i, job, attempt, state))
    return polls


def _watch(channel: grpc.Channel, phase: _Phase, deadline: float, ready: threading.Event) -> int:
    """One WatchJobs stream for all the jobs; DONE is known when its event arrives. Returns events."""
    stub = AgentExtensions_pb2_grpc.AgentExtensionsStub(channel)
    request = AgentExtensions_pb2.WatchRequest(jobs=[Common_pb2.JobId(uuid=j) for j in phase.jobs])
    events = 0
    call = stub.WatchJobs(request, timeout=max(1.0, deadline - time.monotonic()))
    for event in call:
        events += 1
        if events == len(phase.jobs):
            ready.set()  # the first events (current states) are in: open the gate
        if event.code == JobState.DONE:
            phase.known[event.job.uuid] = time.time()
    return events


def _journal_only(journal: Path, phase: _Phase, deadline: float) -> int:
    """The baseline: nobody asks the agent; the bench reads the journal every 20 ms."""
    pending = set(phase.jobs)
    reads = 0
    while pending:
        if time.monotonic() > deadline:
            raise TimeoutError(f"baseline: {len(pending)} jobs not DONE by the deadline")
        time.sleep(0.02)
        reads += 1
        now = time.time()
        for job in _ended(journal, pending):
            phase.known[job] = now
            pending.discard(job)
    return reads


def _run_phase(name: str, agent_pid: int, channel: grpc.Channel, client: AgentClient, source: Path,
               tmp: Path, journal: Path, slots: int, count: int, timeout: float) -> dict:
    phase = _Phase(client, source, tmp, slots, count, name)
    deadline = time.monotonic() + timeout
    ready = threading.Event()
    result: dict = {}

    def wait() -> None:
        try:
            if name == "watch":
                result["events"] = _watch(channel, phase, deadline, ready)
            elif name == "poll":
                result["polls"] = _poll(client, phase, deadline, ready)
            else:
                result["journal_reads"] = _journal_only(journal, phase, deadline)
        except BaseException as exc:  # noqa: BLE001 - re-raised on the bench's thread
            result["error"] = exc

    if name == "journal":
        ready.set()
    waiter = threading.Thread(target=wait, name=f"bench-{name}")
    waiter.start()
    ready.wait(timeout)
    cpu0, wall0 = cpu_seconds(agent_pid), time.monotonic()
    phase.release()
    waiter.join(timeout)
    cpu, wall = cpu_seconds(agent_pid) - cpu0, time.monotonic() - wall0
    if "error" in result:
        raise result["error"]
    ended = _ended(journal, set(phase.jobs))
    delays = sorted(max(0.0, phase.known[j] - ended[j]) * 1000 for j in phase.jobs)
    for blocker in phase.blockers:
        client.wait_until_done(blocker, deadline=60, watch=False)
    return dict(result, jobs=count, wall_s=wall, agent_cpu_s=cpu, agent_cpu_ms_per_job=cpu / count * 1000,
                delay_ms_mean=statistics.fmean(delays), delay_ms_p50=delays[len(delays) // 2],
                delay_ms_p95=delays[int(len(delays) * 0.95)], delay_ms_max=delays[-1])


def bench_watch_vs_poll(address: str, agent_pid: int, source: Path, tmp: Path, journal: Path, slots: int,
                        count: int = 1000, timeout: float = 900.0) -> dict:
    """Three phases on one agent, `count` jobs each, one after the other: nobody waiting (the
    bench reads the journal: the jobs' own cost), waiting by watch, waiting by polling. Each
    phase's agent CPU is measured from the gate's opening to the last job known DONE."""
    with grpc.insecure_channel(address) as channel:
        client = AgentClient(channel, timeout=120)
        phases = {name: _run_phase(name, agent_pid, channel, client, source, tmp, journal, slots, count, timeout)
                  for name in ("journal", "watch", "poll")}
    base = phases["journal"]["agent_cpu_ms_per_job"]
    for name in ("watch", "poll"):
        phases[name]["waiting_cpu_ms_per_job"] = phases[name]["agent_cpu_ms_per_job"] - base
    return phases


def summary(r: dict) -> str:
    w, p, j = r["watch"], r["poll"], r["journal"]
    return (f"waiting on {w['jobs']} jobs: agent CPU per job watch {w['agent_cpu_ms_per_job']:.2f} ms vs poll "
            f"{p['agent_cpu_ms_per_job']:.2f} ms (nobody waiting {j['agent_cpu_ms_per_job']:.2f} ms; "
            f"{p['polls']} polls vs {w['events']} events), end-to-known p50 {w['delay_ms_p50']:.1f} vs "
            f"{p['delay_ms_p50']:.1f} ms, p95 {w['delay_ms_p95']:.1f} vs {p['delay_ms_p95']:.1f} ms "
            f"(poll/watch p50 ratio {p['delay_ms_p50'] / max(w['delay_ms_p50'], 1e-3):.0f})")


def main(argv: list[str] | None = None) -> int:
    """This comparison alone, on its own reference agent (agent_bench.py runs it with the others)."""
    import argparse
    import sys
    import tempfile

    from protos import launcher

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=1000, help="jobs waited on per phase")
    parser.add_argument("--slots", type=int, default=2, help="the agent's slots")
    args = parser.parse_args(argv)
    for name in ("jobs", "slots"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} {getattr(args, name)}: must be >= 1")
    with tempfile.TemporaryDirectory(prefix="ext-bench-") as tmp_name:
        tmp = Path(tmp_name)
        source = tmp / "source"
        source.mkdir()
        agent = launcher.reference_agent(source, tmp / "state", args.slots, ["--no-path-pythons", "--quiet"],
                                         cwd=tmp, startup_timeout=60)
        address = agent.start()
        try:
            result = bench_watch_vs_poll(address, agent.pid, source, tmp, tmp / "state" / "journal.sqlite3",
                                         args.slots, args.jobs)
        finally:
            agent.stop(30)
    print(f"ext_bench: {summary(result)}; load {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(result, file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
