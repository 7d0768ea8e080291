"""Attacks on the reference agent at full size (issue 18): half-open calls and idle connections,
while a well-behaved client polls. Prints one summary line: the client's p99 poll latency under
each attack as a ratio of its quiet value measured in the same run, and the agent's memory
before, during and after.

Phases, each against one agent started here (`python -m reference_agent serve`):
  quiet      the client's status polls alone (the baseline)
  half-open  --calls calls (default 1,000) over --connections connections that send HEADERS and
             never their request message, from clients without a token (the agent runs with
             --auth-tokens) and, in a second agent without tokens, from anyone
  idle       --idle idle TCP connections (default 1,100), then jobs must still start and run
Targets: p99 under half-open calls within 2x of quiet; memory after within 10 % of before.
"""
from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import socket
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import grpc  # noqa: E402

from protos import launcher  # noqa: E402
from protos.client import AgentClient  # noqa: E402

RUN_JOB = "/Agent/RunJob"
TOKEN = "attack-bench-token"


def _half_open_process(address: str, calls: int, connections: int, ready, stop) -> None:
    """Open `calls` half-open calls (grpc.aio client: a request stream that never yields) and
    hold them until `stop` is set; count in `ready` how many the agent still holds open."""
    async def main() -> None:
        channels = [grpc.aio.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
                    for _ in range(connections)]
        release = asyncio.Event()

        async def never():
            await release.wait()
            return
            yield  # pragma: no cover

        tasks = [asyncio.ensure_future(channels[i % connections].stream_unary(RUN_JOB)(never(), timeout=600))
                 for i in range(calls)]
        await asyncio.sleep(2.0)
        ready.value = sum(1 for t in tasks if not t.done())
        while not stop.is_set():
            await asyncio.sleep(0.1)
        release.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for channel in channels:
            await channel.close()

    asyncio.run(main())


def _polls(address: str, job: str, count: int, metadata=()) -> list[float]:
    latencies = []
    with grpc.insecure_channel(address) as channel:
        client = AgentClient(channel, timeout=30, metadata=metadata)
        client.status(job)
        for _ in range(count):
            start = time.perf_counter()
            client.status(job)
            latencies.append(time.perf_counter() - start)
    return latencies


def p99_ms(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1e3


def _prepared_job(address: str, source: Path, metadata=()) -> str:
    with grpc.insecure_channel(address) as channel:
        client = AgentClient(channel, timeout=60, metadata=metadata)
        job, entry = str(uuid.uuid4()), str(uuid.uuid4())
        (source / entry).write_text("pass\n")
        client.stage_in(job, [entry])
        client.run(job, [entry])
    return job


def _settle_rss(agent: launcher.AgentProcess, seconds: float = 7.0) -> float:
    time.sleep(seconds)
    return agent.rss_mb()


def _one_flood(agent, address: str, calls: int, connections: int, job: str, polls: int, metadata):
    """Half-open calls held while the client polls, then gone: (held open, RSS during, the
    client's latencies, RSS after the janitor's quiet period)."""
    ready, stop = multiprocessing.Value("i", -1), multiprocessing.Event()
    attacker = multiprocessing.Process(target=_half_open_process, args=(address, calls, connections, ready, stop))
    attacker.start()
    end = time.monotonic() + 60
    while ready.value < 0 and time.monotonic() < end:
        time.sleep(0.05)
    during = agent.rss_mb()
    try:
        attacked = _polls(address, job, polls, metadata)
    finally:
        stop.set()
        attacker.join(60)
    return ready.value, during, attacked, _settle_rss(agent)


def half_open_phase(tmp: Path, name: str, calls: int, connections: int, polls: int, tokens: bool,
                    floods: int = 1) -> dict:
    source = tmp / f"{name}-source"
    source.mkdir()
    extra = ["--no-path-pythons", "--quiet", "--request-timeout", "600s"]
    metadata = ()
    if tokens:
        (tmp / "tokens").write_text(TOKEN + "\n")
        extra += ["--auth-tokens", str(tmp / "tokens")]
        metadata = (("authorization", f"Bearer {TOKEN}"),)
    agent = launcher.reference_agent(source, tmp / f"{name}-state", 2, extra, cwd=tmp, startup_timeout=60)
    address = agent.start()
    try:
        job = _prepared_job(address, source, metadata)
        _polls(address, job, polls, metadata)  # warm up
        quiet = _polls(address, job, polls, metadata)
        before = _settle_rss(agent)  # after the janitor has had its quiet period
        floods_seen = [_one_flood(agent, address, calls, connections, job, polls, metadata) for _ in range(floods)]
        held, during_rss, attacked, after = floods_seen[0]  # the first flood is the one the targets judge
        afters = [f[3] for f in floods_seen]
        return {"calls": calls, "connections": connections, "held_open": held, "tokens": tokens,
                "quiet_p99_ms": p99_ms(quiet), "attacked_p99_ms": p99_ms(attacked),
                "p99_ratio": p99_ms(attacked) / p99_ms(quiet),
                "rss_before_mb": before, "rss_during_mb": during_rss, "rss_after_mb": after,
                "rss_after_ratio": after / before, "rss_after_each_flood_mb": afters}
    finally:
        agent.stop(30)


def idle_phase(tmp: Path, idle: int, polls: int) -> dict:
    """`idle` TCP connections that send nothing; then a job must still start and run."""
    source = tmp / "idle-source"
    source.mkdir()
    agent = launcher.reference_agent(source, tmp / "idle-state", 2, ["--no-path-pythons", "--quiet"],
                                     cwd=tmp, startup_timeout=60)
    address = agent.start()
    host, port = address.rsplit(":", 1)
    sockets = []
    try:
        job = _prepared_job(address, source)
        quiet = _polls(address, job, polls)
        for _ in range(idle):
            sockets.append(socket.create_connection((host, int(port)), timeout=10))
        time.sleep(1.0)
        attacked = _polls(address, job, polls)
        with grpc.insecure_channel(address) as channel:
            client = AgentClient(channel, timeout=30)
            jobs = [_prepared_job(address, source) for _ in range(5)]
            states = [client.wait_until_done(j, poll_interval=0.05, deadline=60).final.name for j in jobs]
        return {"idle": idle, "quiet_p99_ms": p99_ms(quiet), "attacked_p99_ms": p99_ms(attacked),
                "p99_ratio": p99_ms(attacked) / p99_ms(quiet), "jobs_done": states.count("DONE"),
                "jobs": len(jobs), "rss_mb": agent.rss_mb()}
    finally:
        for s in sockets:
            s.close()
        agent.stop(30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=1000, help="half-open calls")
    parser.add_argument("--connections", type=int, default=10, help="connections they use (100 streams each at most)")
    parser.add_argument("--idle", type=int, default=1100, help="idle TCP connections")
    parser.add_argument("--polls", type=int, default=2000, help="status polls per measurement")
    parser.add_argument("--floods", type=int, default=1,
                        help="floods of half-open calls in a row on the agent without tokens, memory after each")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    args = parser.parse_args(argv)
    if args.quick:
        args.calls, args.connections, args.idle, args.polls = 40, 2, 50, 200
    for name in ("calls", "connections", "idle", "polls", "floods"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} {getattr(args, name)}: must be >= 1")
    with tempfile.TemporaryDirectory(prefix="attack-bench-") as tmp_name:
        tmp = Path(tmp_name)
        with_tokens = half_open_phase(tmp, "tokens", args.calls, args.connections, args.polls, tokens=True)
        open_agent = half_open_phase(tmp, "open", args.calls, args.connections, args.polls, tokens=False,
                                     floods=args.floods)
        idle = idle_phase(tmp, args.idle, args.polls)
    load = os.getloadavg()[0]
    t, o = with_tokens, open_agent
    print(f"attack_bench: {o['calls']} half-open calls ({o['held_open']} held open) p99 {o['attacked_p99_ms']:.2f} "
          f"vs quiet {o['quiet_p99_ms']:.2f} ms = x{o['p99_ratio']:.2f} (target <= 2), memory {o['rss_before_mb']:.0f} "
          f"-> {o['rss_during_mb']:.0f} -> {o['rss_after_mb']:.0f} MB = x{o['rss_after_ratio']:.2f} after (target <= 1.1); "
          f"without a token ({t['held_open']} held open) p99 x{t['p99_ratio']:.2f}, memory after x{t['rss_after_ratio']:.2f}; "
          f"after each of {len(o['rss_after_each_flood_mb'])} floods "
          f"{', '.join(f'{m:.1f}' for m in o['rss_after_each_flood_mb'])} MB (before {o['rss_before_mb']:.1f}); "
          f"{idle['idle']} idle connections p99 x{idle['p99_ratio']:.2f}, jobs DONE {idle['jobs_done']}/{idle['jobs']}; "
          f"load {load:.1f} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
