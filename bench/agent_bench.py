"""Reference agent benchmark: poll throughput/latency, job start overhead and staging, each vs a baseline."""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import textwrap
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import grpc  # noqa: E402

from protos import launcher  # noqa: E402
from protos.client import AgentClient  # noqa: E402
from simulator.real.measure import (BARE_SERVER, bench_many_files, bench_polls, bench_staging,  # noqa: E402
                                    bench_start)
from _ext_bench import bench_watch_vs_poll, summary as watch_summary  # noqa: E402

# The asyncio baseline: grpc.aio's server with an async servicer answering a constant (the
# reference agent serves on grpc.aio too, its work on threads; see docs/PERFORMANCE.md).
BARE_AIO_SERVER = """
import asyncio
import grpc
from protos import AgentService_pb2_grpc, RunJob_pb2

class Constant(AgentService_pb2_grpc.AgentServicer):
    async def RunJob(self, request, context):
        return RunJob_pb2.RunJobResponse(code=RunJob_pb2.DONE)

async def main():
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    AgentService_pb2_grpc.add_AgentServicer_to_server(Constant(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"listening on 127.0.0.1:{port}", flush=True)
    await server.wait_for_termination()

asyncio.run(main())
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, epilog=textwrap.dedent("""\
        example: python bench/agent_bench.py            (full run, a few minutes)
                 python bench/agent_bench.py --quick    (smoke test, seconds)
        Targets: poll throughput >= 0.8 of the bare server; start overhead < 20 ms over a bare
        spawn; staging >= 0.7 of a plain copy; many small files in one StageInFiles at most 5x
        the time of shutil.copyfile of the same files."""), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=3000, help="status polls per round and server")
    parser.add_argument("--rounds", type=int, default=8, help="alternating rounds per comparison")
    parser.add_argument("--threads", type=int, default=4, help="client threads for the throughput run")
    parser.add_argument("--starts", type=int, default=15, help="jobs started per contender")
    parser.add_argument("--size-mb", type=int, default=200, help="staged file size")
    parser.add_argument("--many-files", type=int, default=10000, help="files of 100 bytes in one StageInFiles")
    parser.add_argument("--watch-jobs", type=int, default=1000, help="jobs waited on by watch, by polling, by nobody")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke test")
    parser.add_argument("--json", metavar="FILE", help="also write all figures as JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args.calls, args.rounds, args.starts, args.size_mb, args.many_files, args.watch_jobs = 200, 2, 2, 4, 300, 20
    for name in ("calls", "rounds", "threads", "starts", "size_mb", "many_files", "watch_jobs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} {getattr(args, name)}: must be >= 1")
    with tempfile.TemporaryDirectory(prefix="agent-bench-") as tmp_name:
        tmp = Path(tmp_name)
        source = tmp / "source"
        source.mkdir()
        agent = launcher.reference_agent(source, tmp / "state", 2, ["--no-path-pythons"], cwd=tmp, startup_timeout=60)
        bare = launcher.AgentProcess(lambda listen: [sys.executable, "-c", BARE_SERVER], startup_timeout=60)
        bare_aio = launcher.AgentProcess(lambda listen: [sys.executable, "-c", BARE_AIO_SERVER], startup_timeout=60)
        agent_addr, bare_addr, aio_addr = agent.start(), bare.start(), bare_aio.start()
        try:
            with grpc.insecure_channel(agent_addr) as channel:
                client = AgentClient(channel, timeout=120)
                job, entry = str(uuid.uuid4()), str(uuid.uuid4())
                (source / entry).write_text("pass\n")
                client.stage_in(job, [entry])
                client.run(job, [entry])
                client.wait_until_done(job, poll_interval=0.01, deadline=60)
                results = {
                    "poll_1_thread": bench_polls(agent_addr, bare_addr, job, args.calls // 2, args.rounds, 1),
                    "poll": bench_polls(agent_addr, bare_addr, job, args.calls, args.rounds, args.threads),
                    "poll_vs_aio": bench_polls(agent_addr, aio_addr, job, args.calls, args.rounds, args.threads),
                    "aio_vs_sync": bench_polls(aio_addr, bare_addr, job, args.calls, args.rounds, args.threads),
                    "start": bench_start(client, source, tmp, args.starts),
                    "staging": bench_staging(client, source, tmp, args.size_mb, args.rounds),
                    "many_files": bench_many_files(client, source, tmp, args.many_files, 100, min(args.rounds, 3)),
                    "watch_vs_poll": bench_watch_vs_poll(agent_addr, agent.pid, source, tmp,
                                                         tmp / "state" / "journal.sqlite3", 2, args.watch_jobs),
                }
        finally:
            agent.stop(30)
            bare.stop(30)
            bare_aio.stop(30)
    results["load_average_after"] = os.getloadavg()[0]
    p1, p, s, g, m = (results["poll_1_thread"], results["poll"], results["start"], results["staging"],
                      results["many_files"])
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    print(f"agent_bench: poll {p['threads']} threads {p['agent_per_s']:.0f}/s vs bare {p['bare_per_s']:.0f}/s "
          f"ratio {p['ratio']:.2f} (target >= 0.8), vs bare aio {results['poll_vs_aio']['ratio']:.2f}, "
          f"bare aio / bare sync {results['aio_vs_sync']['ratio']:.2f}; 1 thread ratio {p1['ratio']:.2f}, p50 {p1['agent_p50_ms']:.2f} "
          f"vs {p1['bare_p50_ms']:.2f} ms, p99 {p1['agent_p99_ms']:.2f} vs {p1['bare_p99_ms']:.2f} ms; "
          f"start {s['agent_ms']:.1f} vs bare spawn {s['bare_ms']:.1f} ms = +{s['overhead_ms']:.1f} ms (target < 20); "
          f"staging {g['size_mb']} MB {g['stage_mb_s']:.0f} MB/s vs copy {g['copy_mb_s']:.0f} MB/s "
          f"ratio {g['ratio']:.2f} (target >= 0.7), second job's own copy {g['cached_stage_s'] * 1e3:.1f} ms "
          f"= {g['per_job_copy_ratio'] * 100:.0f} % of the first staging; "
          f"{m['files']} files of 100 B in one call {m['stage_s']:.2f} s vs shutil {m['copy_s']:.2f} s "
          f"= x{m['ratio']:.2f} (target <= 5); {watch_summary(results['watch_vs_poll'])}; "
          f"load {results['load_average_after']:.1f} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
