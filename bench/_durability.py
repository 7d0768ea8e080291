"""Costs of issue 18's durability and hardening, each against a baseline measured in the same
run, on one in-process agent over loopback (python bench/_durability.py; agent_bench may import
`measure`):

  fsync     stage one file and submit one job, N times: with fsync (cache file, input, their
            directories, journal synchronous=FULL: the agent as shipped) vs without (os.fsync a
            no-op and synchronous=NORMAL: the agent before issue 18.7)
  inputs    a SIZE input given to later jobs: a hard link of the cache entry (--job-user mode)
            vs a copy (the agent's own user: each later job gets a reflink or a copy)
  requirements  one RunJob with 838,820 copies of "3" (4 MiB, the issue's request)

Prints one summary line; --json FILE writes the figures."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from protos.client import AgentClient  # noqa: E402
from reference_agent.config import AgentConfig  # noqa: E402
from reference_agent.server import AgentServer  # noqa: E402
from reference_agent.telemetry import Telemetry  # noqa: E402


def _agent(root: Path, **overrides) -> tuple[AgentServer, AgentClient, Path]:
    source = root / "source"
    source.mkdir(parents=True, exist_ok=True)
    settings = dict(listen="127.0.0.1:0", source=str(source), state_dir=str(root / "state"), slots=2,
                    discover_path=False, log_rpcs=False, max_request_bytes=8 << 20)
    settings.update(overrides)
    server = AgentServer(AgentConfig(**settings), telemetry=Telemetry(stream=None))
    server.start()
    return server, AgentClient.connect(server.address, timeout=120), source


def _stage_and_submit(root: Path, n: int, durable: bool) -> float:
    real_fsync = os.fsync
    if not durable:
        os.fsync = lambda fd: None  # noqa: E731 - the baseline: the agent before 18.7
    try:
        server, client, source = _agent(root)
        if not durable:
            server.core.journal._write("PRAGMA synchronous=NORMAL")
        try:
            entry = str(uuid.uuid4())
            (source / entry).write_text("pass\n")
            began = time.perf_counter()
            for _ in range(n):
                job, data = str(uuid.uuid4()), str(uuid.uuid4())
                (source / data).write_bytes(os.urandom(4096))
                client.stage_in(job, [entry, data])
                client.run(job, [entry])
            return (time.perf_counter() - began) / n
        finally:
            client.close()
            server.stop(grace=0, stop_jobs=True)
    finally:
        os.fsync = real_fsync


def _later_inputs(root: Path, size: int, jobs: int, link: bool) -> float:
    from reference_agent.staging import ContentStore, LocalSource
    from reference_agent.journal import Journal

    source = root / "source"
    source.mkdir(parents=True, exist_ok=True)
    file = str(uuid.uuid4())
    with open(source / file, "wb") as f:
        for _ in range(size >> 20):
            f.write(os.urandom(1 << 20))
    journal = Journal(root / "journal.sqlite3")
    store = ContentStore(LocalSource(source), root / "cache", root / "tmp", journal,
                         input_mode=0o444 if link else 0o400)
    try:
        store.place(file, root / "jobs" / "first")  # the fetch and the first job's link
        times = []
        for i in range(jobs):
            began = time.perf_counter()
            store.place(file, root / "jobs" / str(i))
            times.append(time.perf_counter() - began)
        return statistics.median(times)
    finally:
        journal.close()


def _requirements(root: Path) -> float:
    server, client, source = _agent(root)
    try:
        job, entry = str(uuid.uuid4()), str(uuid.uuid4())
        (source / entry).write_text("pass\n")
        client.stage_in(job, [entry])
        from protos import Common_pb2, RunJob_pb2

        request = RunJob_pb2.RunJobRequest(  # built here, not timed: the agent's time is wanted
            job=Common_pb2.JobId(uuid=job), files=[Common_pb2.FileId(uuid=entry)],
            requirements=[RunJob_pb2.JobRequirement(python_version="3")] * 838_820)
        began = time.perf_counter()
        client._stub.RunJob(request, timeout=300)
        return time.perf_counter() - began
    finally:
        client.close()
        server.stop(grace=0, stop_jobs=True)


def measure(n: int = 100, size: int = 200 << 20, jobs: int = 3, where: str | None = None) -> dict:
    figures = {}
    with tempfile.TemporaryDirectory(dir=where) as tmp:
        root = Path(tmp)
        figures["submit_s_fsync"] = _stage_and_submit(root / "a", n, durable=True)
        figures["submit_s_no_fsync"] = _stage_and_submit(root / "b", n, durable=False)
        figures["later_input_s_link"] = _later_inputs(root / "c", size, jobs, link=True)
        figures["later_input_s_copy"] = _later_inputs(root / "d", size, jobs, link=False)
        figures["requirements_4mib_s"] = _requirements(root / "e")
        shutil.rmtree(root, ignore_errors=True)
    figures.update(n=n, input_mb=size >> 20, filesystem_dir=where or tempfile.gettempdir())
    return figures


def summary(f: dict) -> str:
    return (f"durability: stage+submit {f['submit_s_fsync'] * 1000:.1f} ms with fsync vs "
            f"{f['submit_s_no_fsync'] * 1000:.1f} ms without (x{f['submit_s_fsync'] / f['submit_s_no_fsync']:.2f}, "
            f"n={f['n']}); later job's {f['input_mb']} MB input: link {f['later_input_s_link'] * 1000:.2f} ms vs "
            f"copy {f['later_input_s_copy'] * 1000:.1f} ms; RunJob with 838,820 requirements "
            f"{f['requirements_4mib_s']:.2f} s")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100, help="stage+submit rounds per mode (default 100)")
    parser.add_argument("--size-mb", type=int, default=200, help="input size for the link/copy figure")
    parser.add_argument("--dir", default=None, help="where to put the state directories (default: TMPDIR)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    figures = measure(args.n, args.size_mb << 20, 3, args.dir)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    print(summary(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
