"""Measuring an agent at an address: status polls, job start, staging, each against a baseline.

bench/agent_bench.py prints these figures; `agent-sim calibrate` turns them into model inputs.
"""
from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import grpc

from protos.client import AgentClient


class MeasureError(RuntimeError):
    """A measurement could not complete; the message says which file or job."""


def bare_env(workdir: Path) -> dict[str, str]:
    """The environment of the bare-spawn baseline: as small as an agent's job environment."""
    return {"PATH": os.defpath, "HOME": str(workdir), "TMPDIR": str(workdir), "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1"}


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
            raise MeasureError(f"{path} was never written: the job did not run within {deadline:.0f} s")
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
        proc = subprocess.Popen([sys.executable, script.name], cwd=work, env=bare_env(work),
                                stdin=subprocess.DEVNULL, start_new_session=True)
        bare_s.append(_wait_file(stamp) - t0)
        proc.wait()
    a, b = statistics.median(agent_s), statistics.median(bare_s)
    return {"runs": runs, "agent_ms": a * 1e3, "bare_ms": b * 1e3, "overhead_ms": (a - b) * 1e3,
            "agent_min_ms": min(agent_s) * 1e3, "bare_min_ms": min(bare_s) * 1e3}


def bench_staging(client: AgentClient, source: Path, tmp: Path, size_mb: int, rounds: int) -> dict:
    """StageInFiles of a new file (source -> cache -> job) vs shutil.copyfile, warm page cache,
    dirty pages written back before each measurement, rounds alternating who goes first. Then
    the same file for a second job: served from the cache, and (issue 11 item 4) as that job's
    own copy, a reflink where the file system has them; `per_job_copy_ratio` is its time over
    the first staging's (the first job gets the cache's own inode: no copy)."""
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
                os.sync()  # the first staging's write-back is not the second job's cost
                t = time.perf_counter()
                assert client.stage_in(str(uuid.uuid4()), [file]) == [file]
                cached_s.append(time.perf_counter() - t)
    c, s, cached = statistics.median(copy_s), statistics.median(stage_s), statistics.median(cached_s)
    return {"size_mb": size_mb, "copy_s": c, "stage_s": s, "cached_stage_s": cached,
            "copy_mb_s": size_mb / c, "stage_mb_s": size_mb / s, "ratio": c / s,
            "per_job_copy_ratio": cached / s}


def bench_many_files(client: AgentClient, source: Path, tmp: Path, files: int, size: int, rounds: int) -> dict:
    """One StageInFiles of `files` new files of `size` bytes vs shutil.copyfile of the same files
    into an empty directory, rounds alternating who goes first; ratio = stage time / copy time."""
    originals = []
    for _ in range(files):
        path = source / str(uuid.uuid4())
        path.write_bytes(os.urandom(size))
        originals.append(path)
    copy_s, stage_s = [], []
    for r in range(rounds):
        for name in (("copy", "stage") if r % 2 == 0 else ("stage", "copy")):
            os.sync()
            if name == "copy":
                dest = tmp / f"many-copy-{r}"
                dest.mkdir()
                t = time.perf_counter()
                for path in originals:
                    shutil.copyfile(path, dest / path.name)
                copy_s.append(time.perf_counter() - t)
                shutil.rmtree(dest)
            else:
                names = [str(uuid.uuid4()) for _ in originals]  # not cached yet: read from the source
                for path, name_ in zip(originals, names):
                    os.link(path, source / name_)
                t = time.perf_counter()
                staged = client.stage_in(str(uuid.uuid4()), names)
                stage_s.append(time.perf_counter() - t)
                if len(staged) != files:
                    raise MeasureError(f"staged {len(staged)} of {files} files")
    c, s = statistics.median(copy_s), statistics.median(stage_s)
    return {"files": files, "size": size, "copy_s": c, "stage_s": s, "ratio": s / c,
            "stage_files_per_s": files / s, "copy_files_per_s": files / c}
