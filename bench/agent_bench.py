"""Reference agent benchmark: poll throughput/latency, job start overhead and staging, each vs a baseline."""
from __future__ import annotations

import argparse
import json
import os
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import grpc  # noqa: E402

from protos.client import AgentClient  # noqa: E402
from reference_agent.processes import clean_env  # noqa: E402

# The baseline server: the same generated servicer API and thread pool, answering a constant.
BARE_SERVER = textwrap.dedent("""
    import sys, threading
    from concurrent import futures
    import grpc
    from protos import AgentService_pb2_grpc, RunJob_pb2

    class Constant(AgentService_pb2_grpc.AgentServicer):
        def RunJob(self, request, context):
            return RunJob_pb2.RunJobResponse(code=RunJob_pb2.DONE)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16), options=[("grpc.so_reuseport", 0)])
    AgentService_pb2_grpc.add_AgentServicer_to_server(Constant(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"listening on 127.0.0.1:{port}", flush=True)
    server.wait_for_termination()
""")


def _start(cmd: list[str], cwd: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    ready, _, _ = select.select([proc.stdout], [], [], 60)
    line = proc.stdout.readline().decode() if ready else ""
    if not line.startswith("listening on "):
        proc.kill()
        raise SystemExit(f"agent_bench: {cmd[:4]} did not start (first line {line!r})")
    return proc, line.split()[-1]


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.wait(30)
    proc.stdout.close()


def polls(address: str, job: str, calls: int, threads: int) -> tuple[float, list[float]]:
    """(calls per second, per-call latencies in seconds) for status polls from `threads` threads."""
    latencies: list[list[float]] = [[] for _ in range(threads)]
    barrier = threading.Barrier(threads + 1)

    def worker(i: int) -> None:
        with grpc.insecure_channel(address) as channel:
            client = AgentClient(channel, timeout=30)
            client.status(job)  # connect and warm up outside the measurement
            barrier.wait()
            mine = latencies[i]
            for _ in range(calls // threads):
                t = time.perf_counter()
                client.status(job)
                mine.append(time.perf_counter() - t)

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    barrier.wait()
    start = time.perf_counter()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - start
    flat = [x for lst in latencies for x in lst]
    return len(flat) / elapsed, flat


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bench_polls(agent: str, bare: str, job: str, calls: int, rounds: int, threads: int) -> dict:
    agent_rates, bare_rates, agent_lat, bare_lat = [], [], [], []
    for r in range(rounds):  # alternate which server goes first: the machine is shared
        order = [("agent", agent), ("bare", bare)] if r % 2 == 0 else [("bare", bare), ("agent", agent)]
        for name, address in order:
            rate, lat = polls(address, job, calls, threads)
            (agent_rates if name == "agent" else bare_rates).append(rate)
            (agent_lat if name == "agent" else bare_lat).extend(lat)
    a, b = statistics.median(agent_rates), statistics.median(bare_rates)
    # The ratio is the median of each round's own ratio: the two runs of a round are back to
    # back, so load that drifts over the minute (other sessions' tests) cancels out.
    ratio = statistics.median(x / y for x, y in zip(agent_rates, bare_rates))
    return {"threads": threads, "agent_per_s": a, "bare_per_s": b, "ratio": ratio,
            "agent_p50_ms": pct(agent_lat, 0.5) * 1e3, "agent_p99_ms": pct(agent_lat, 0.99) * 1e3,
            "bare_p50_ms": pct(bare_lat, 0.5) * 1e3, "bare_p99_ms": pct(bare_lat, 0.99) * 1e3}


STAMP = "import time\nopen({path!r}, 'w').write(repr(time.time()))\n"


def _wait_file(path: Path, deadline: float = 60.0) -> float:
    end = time.monotonic() + deadline
    while not path.exists() or not path.read_text():
        if time.monotonic() > end:
            raise SystemExit(f"agent_bench: {path} never written")
        time.sleep(0.001)
    return float(path.read_text())


def bench_start(client: AgentClient, source: Path, tmp: Path, runs: int) -> dict:
    """Submit -> first statement of the job, against Popen -> first statement, same interpreter."""
    agent_s, bare_s = [], []
    work = tmp / "bare-work"
    work.mkdir(exist_ok=True)
    for i in range(runs):
        stamp = tmp / f"agent-stamp-{uuid.uuid4()}"
        job, entry = str(uuid.uuid4()), str(uuid.uuid4())
        (source / entry).write_text(STAMP.format(path=str(stamp)))
        client.stage_in(job, [entry])
        t0 = time.time()
        client.run(job, [entry])
        agent_s.append(_wait_file(stamp) - t0)
        client.wait_until_done(job, poll_interval=0.005, deadline=60)

        stamp = tmp / f"bare-stamp-{uuid.uuid4()}"
        script = work / str(uuid.uuid4())
        script.write_text(STAMP.format(path=str(stamp)))
        t0 = time.time()
        proc = subprocess.Popen([sys.executable, script.name], cwd=work, env=clean_env(work),
                                stdin=subprocess.DEVNULL, start_new_session=True)
        bare_s.append(_wait_file(stamp) - t0)
        proc.wait()
    a, b = statistics.median(agent_s), statistics.median(bare_s)
    return {"runs": runs, "agent_ms": a * 1e3, "bare_ms": b * 1e3, "overhead_ms": (a - b) * 1e3,
            "agent_min_ms": min(agent_s) * 1e3, "bare_min_ms": min(bare_s) * 1e3}


def bench_staging(client: AgentClient, source: Path, tmp: Path, size_mb: int, rounds: int) -> dict:
    """StageInFiles of a new file (source -> cache -> job) vs shutil.copyfile, warm page cache,
    dirty pages written back before each measurement, rounds alternating who goes first."""
    original = source / str(uuid.uuid4())
    block = os.urandom(1 << 20)
    with open(original, "wb") as f:
        for _ in range(size_mb):
            f.write(block)
    with open(original, "rb") as f:  # warm the page cache for both contenders
        while f.read(1 << 24):
            pass
    copy_s, stage_s, cached_s = [], [], []
    for r in range(rounds):
        for name in (("copy", "stage") if r % 2 == 0 else ("stage", "copy")):
            os.sync()  # write back the previous round's dirty pages: neither contender pays for them
            if name == "copy":
                dest = tmp / "plain-copy"
                t = time.perf_counter()
                shutil.copyfile(original, dest)
                copy_s.append(time.perf_counter() - t)
                dest.unlink()
            else:
                file = str(uuid.uuid4())
                os.link(original, source / file)  # same bytes under a new UUID: not cached yet
                t = time.perf_counter()
                assert client.stage_in(str(uuid.uuid4()), [file]) == [file]
                stage_s.append(time.perf_counter() - t)
                t = time.perf_counter()
                assert client.stage_in(str(uuid.uuid4()), [file]) == [file]
                cached_s.append(time.perf_counter() - t)
    c, s = statistics.median(copy_s), statistics.median(stage_s)
    return {"size_mb": size_mb, "copy_s": c, "stage_s": s, "cached_stage_s": statistics.median(cached_s),
            "copy_mb_s": size_mb / c, "stage_mb_s": size_mb / s, "ratio": c / s}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, epilog=textwrap.dedent("""\
        example: python bench/agent_bench.py            (full run, a few minutes)
                 python bench/agent_bench.py --quick    (smoke test, seconds)
        Targets: poll throughput >= 0.8 of the bare server; start overhead < 20 ms over a bare
        spawn; staging >= 0.7 of a plain copy."""), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=3000, help="status polls per round and server")
    parser.add_argument("--rounds", type=int, default=8, help="alternating rounds per comparison")
    parser.add_argument("--threads", type=int, default=4, help="client threads for the throughput run")
    parser.add_argument("--starts", type=int, default=15, help="jobs started per contender")
    parser.add_argument("--size-mb", type=int, default=200, help="staged file size")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke test")
    parser.add_argument("--json", metavar="FILE", help="also write all figures as JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args.calls, args.rounds, args.starts, args.size_mb = 200, 2, 2, 4
    for name in ("calls", "rounds", "threads", "starts", "size_mb"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} {getattr(args, name)}: must be >= 1")
    with tempfile.TemporaryDirectory(prefix="agent-bench-") as tmp_name:
        tmp = Path(tmp_name)
        source = tmp / "source"
        source.mkdir()
        agent, agent_addr = _start([sys.executable, "-m", "reference_agent", "serve", "--listen", "127.0.0.1:0",
                                    "--source", str(source), "--state-dir", str(tmp / "state"), "--slots", "2",
                                    "--no-path-pythons"], tmp)
        bare, bare_addr = _start([sys.executable, "-c", BARE_SERVER], Path(__file__).resolve().parent.parent)
        try:
            with grpc.insecure_channel(agent_addr) as channel:
                client = AgentClient(channel, timeout=120)
                job, entry = str(uuid.uuid4()), str(uuid.uuid4())
                (source / entry).write_text("pass\n")
                client.stage_in(job, [entry])
                client.run(job, [entry])
                client.wait_until_done(job, 0.01, 60)
                results = {
                    "poll_1_thread": bench_polls(agent_addr, bare_addr, job, args.calls // 2, args.rounds, 1),
                    "poll": bench_polls(agent_addr, bare_addr, job, args.calls, args.rounds, args.threads),
                    "start": bench_start(client, source, tmp, args.starts),
                    "staging": bench_staging(client, source, tmp, args.size_mb, args.rounds),
                }
        finally:
            _stop(agent)
            _stop(bare)
    results["load_average_after"] = os.getloadavg()[0]
    p1, p, s, g = results["poll_1_thread"], results["poll"], results["start"], results["staging"]
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    print(f"agent_bench: poll {p['threads']} threads {p['agent_per_s']:.0f}/s vs bare {p['bare_per_s']:.0f}/s "
          f"ratio {p['ratio']:.2f} (target >= 0.8); 1 thread ratio {p1['ratio']:.2f}, p50 {p1['agent_p50_ms']:.2f} "
          f"vs {p1['bare_p50_ms']:.2f} ms, p99 {p1['agent_p99_ms']:.2f} vs {p1['bare_p99_ms']:.2f} ms; "
          f"start {s['agent_ms']:.1f} vs bare spawn {s['bare_ms']:.1f} ms = +{s['overhead_ms']:.1f} ms (target < 20); "
          f"staging {g['size_mb']} MB {g['stage_mb_s']:.0f} MB/s vs copy {g['copy_mb_s']:.0f} MB/s "
          f"ratio {g['ratio']:.2f} (target >= 0.7), cached {g['cached_stage_s'] * 1e3:.1f} ms; "
          f"load {results['load_average_after']:.1f} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
