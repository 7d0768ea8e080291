"""Load shared by soak and chaos: client processes of streams that stage, run and poll jobs."""
from __future__ import annotations

import multiprocessing
import os
import random
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from protos import launcher

# Outages: what a client sees while the agent is down or dies mid-call (chaos retries these).
OUTAGE_CODES = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED"})
# With a full disk the agent refuses changes it cannot journal with RESOURCE_EXHAUSTED: an
# outage too when chaos fills the disk on purpose (LoadConfig.outages).
DISK_FULL_CODES = OUTAGE_CODES | {"RESOURCE_EXHAUSTED"}

# Every execution of a job leaves one witness file WITNESS/JOB.PID.NS: two files = ran twice.
# The job learns its id from its working directory (state/jobs/JOB/work), so one script,
# staged for every job, serves all (and exercises the content cache, AGT-STAGE-5).
WITNESS_SCRIPT = """\
import os, sys, time
job = os.path.basename(os.path.dirname(os.getcwd()))
name = os.path.join({witness!r}, "%s.%d.%d" % (job, os.getpid(), time.time_ns()))
os.close(os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
data = [f for f in os.listdir(".") if f != sys.argv[0]]
assert all(open(f, "rb").read() == f.encode() * 8 for f in data), "staged bytes differ"
"""


@dataclass
class LoadConfig:
    """What every stream does; `chaos` makes streams retry outages instead of counting them."""

    address: str
    source: str
    witness: str
    script: str                    # file UUID of WITNESS_SCRIPT in the source
    streams: int
    processes: int
    duration: float                # seconds of submitting
    drain: float                   # seconds after that to let submitted jobs end
    poll_interval: float = 0.2
    error_rate: float = 0.05       # share of jobs followed by one request the protocol must refuse
    rpc_timeout: float = 30.0
    chaos: bool = False
    seed: int = 1
    outages: frozenset = OUTAGE_CODES  # codes that mean "not now" (retried in chaos)


@dataclass
class StreamResult:
    """What one process of streams saw; merged by `merge`."""

    codes: Counter = field(default_factory=Counter)          # (method, code, verdict) -> n
    latencies: dict = field(default_factory=dict)            # method -> [ms] of answered calls
    submitted: set = field(default_factory=set)
    done: set = field(default_factory=set)
    violations: Counter = field(default_factory=Counter)     # kind -> n
    examples: list = field(default_factory=list)             # first violations, as text
    window: tuple = (0.0, 0.0)                               # wall-clock start and end of submitting


def prepare(source: Path, witness: Path) -> str:
    """Write the witness script into the source; return its file UUID."""
    witness.mkdir(parents=True, exist_ok=True)
    script = str(uuid.uuid4())
    (source / script).write_text(WITNESS_SCRIPT.format(witness=str(witness)))
    return script


class Stream:
    """One client stream: one RPC in flight at a time, jobs one after another."""

    def __init__(self, cfg: LoadConfig, client, result: StreamResult, lock: threading.Lock,
                 rng: random.Random, stop_submit: float, stop_all: float):
        self.cfg, self.client, self.result, self.lock, self.rng = cfg, client, result, lock, rng
        self.stop_submit, self.stop_all = stop_submit, stop_all
        self.my_done: list[str] = []

    def violation(self, kind: str, text: str) -> None:
        with self.lock:
            self.result.violations[kind] += 1
            if len(self.result.examples) < 20:
                self.result.examples.append(f"{kind}: {text}")

    def call(self, method: str, fn, *args, expect: str = "OK", retry: bool = True):
        """Call, record code and latency; in chaos retry outages until the end. -> (code, value)."""
        from protos.client import AgentCallError

        delay = 0.05
        while True:
            start = time.perf_counter()
            try:
                value, code = fn(*args), "OK"
            except AgentCallError as exc:
                value, code = None, exc.code_name
            ms = (time.perf_counter() - start) * 1000
            outage = code in self.cfg.outages and code != expect
            verdict = "expected" if code == expect else ("outage" if outage and self.cfg.chaos else "unexpected")
            with self.lock:
                self.result.codes[(method, code, verdict)] += 1
                if not outage:
                    self.result.latencies.setdefault(method, []).append(ms)
            if not (outage and self.cfg.chaos and retry) or time.monotonic() > self.stop_all:
                return code, value
            time.sleep(delay)
            delay = min(delay * 2, 0.5)

    def run(self) -> None:
        while time.monotonic() < self.stop_submit:
            self.one_job()

    def one_job(self) -> None:
        c, cfg = self.client, self.cfg
        job, data = str(uuid.uuid4()), str(uuid.uuid4())
        Path(cfg.source, data).write_bytes(data.encode() * 8)
        files = [cfg.script, data]
        code, staged = self.call("StageInFiles", c.stage_in, job, files)
        if code != "OK":
            return
        if staged != files:
            self.violation("staging", f"job {job}: asked {files}, staged {staged}")
            return
        code, state = self.call("RunJob", c.run, job, files)
        if code == "FAILED_PRECONDITION":
            self.violation("staged file lost", f"job {job}: RunJob says unstaged after staging {files}")
            return
        if code != "OK":
            return
        with self.lock:
            self.result.submitted.add(job)
        if self.poll_until_done(job, int(state)):
            self.my_done.append(job)
            with self.lock:
                self.result.done.add(job)
            self.after_done(job, data)

    def poll_until_done(self, job: str, state: int) -> bool:
        seen = state
        while seen != 2:
            if time.monotonic() > self.stop_all:
                return False
            time.sleep(self.cfg.poll_interval)
            code, now = self.call("RunJob", self.client.status, job, retry=False)
            if code != "OK":
                continue
            if int(now) < seen:
                self.violation("state went back", f"job {job}: {seen} then {int(now)}")
            seen = max(seen, int(now))
        return True

    def recheck(self, job: str, when: str) -> None:
        """A job seen DONE must be answered DONE (a refusal means the agent forgot it)."""
        code, state = self.call("RunJob", self.client.status, job)
        if code == "OK" and int(state) != 2:
            self.violation("DONE seen as other", f"job {job}: DONE earlier, {when} {int(state)}")
        elif code != "OK" and code not in self.cfg.outages:
            self.violation("DONE seen as other", f"job {job}: DONE earlier, {when} {code}")

    def after_done(self, job: str, data: str) -> None:
        """Re-check an older DONE job of this stream; now and then, send a request to refuse."""
        c = self.client
        if len(self.my_done) > 1:
            old = self.rng.choice(self.my_done[:-1])
            self.recheck(old, "now")
        if self.rng.random() >= self.cfg.error_rate:
            return
        kind = self.rng.randrange(4)
        if kind == 0:
            self.call("StageInFiles", c.stage_in, "not-a-uuid", [data], expect="INVALID_ARGUMENT")
        elif kind == 1:
            self.call("RunJob", c.run, str(uuid.uuid4()), [str(uuid.uuid4())], expect="FAILED_PRECONDITION")
        elif kind == 2:
            self.call("StageInFiles", c.stage_in, job, [data], expect="FAILED_PRECONDITION")
        else:
            self.call("RunJob", c.run, job, [data], expect="ALREADY_EXISTS")


def _worker(cfg: LoadConfig, index: int, start_at: float, queue) -> None:
    """One client process: its share of the streams on one channel, then an audit of its jobs."""
    import grpc

    from protos.client import AgentClient

    n = cfg.streams // cfg.processes + (1 if index < cfg.streams % cfg.processes else 0)
    channel = grpc.insecure_channel(cfg.address)
    client = AgentClient(channel, timeout=cfg.rpc_timeout)
    result, lock = StreamResult(), threading.Lock()
    # The processes agreed on a wall-clock start; monotonic clocks are per process.
    begin = time.monotonic() + max(0.0, start_at - time.time())
    stop_submit, stop_all = begin + cfg.duration, begin + cfg.duration + cfg.drain
    time.sleep(max(0.0, begin - time.monotonic()))
    streams = [Stream(cfg, client, result, lock, random.Random(cfg.seed * 1000 + index * 100 + i),
                      stop_submit, stop_all) for i in range(n)]
    threads = [threading.Thread(target=s.run, daemon=True) for s in streams]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    auditor = Stream(cfg, client, result, lock, random.Random(0), stop_submit, stop_all + 30)
    for job in sorted(result.done):  # AGT-DUR-1: every job seen DONE is still DONE at the end
        auditor.recheck(job, "at the audit")
    channel.close()
    queue.put(result)


def run_load(cfg: LoadConfig, during=None) -> StreamResult:
    """Run the load in `cfg.processes` client processes; call `during()` in this process
    meanwhile (chaos kills the agent there); return the merged results."""
    ctx = multiprocessing.get_context("spawn")  # no fork after grpc was imported
    queue = ctx.Queue()
    start_at = time.time() + 3.0 + 0.3 * cfg.processes  # time for the children to import grpc
    procs = [ctx.Process(target=_worker, args=(cfg, i, start_at, queue), daemon=True)
             for i in range(cfg.processes)]
    for p in procs:
        p.start()
    time.sleep(max(0.0, start_at - time.time()))
    if during is not None:
        during()
    results = []
    limit = time.monotonic() + cfg.duration + cfg.drain + 120
    while len(results) < len(procs) and time.monotonic() < limit:
        try:
            results.append(queue.get(timeout=1.0))
        except Exception:  # noqa: BLE001 - queue.Empty; check the processes are alive
            if not any(p.is_alive() for p in procs) and queue.empty():
                break
    for p in procs:
        p.join(5)
        if p.is_alive():
            p.kill()
    if len(results) < len(procs):
        raise SystemExit(f"load: {len(procs) - len(results)} client process(es) gave no result")
    merged = merge(results)
    merged.window = (start_at, start_at + cfg.duration)
    return merged


def merge(results: list[StreamResult]) -> StreamResult:
    out = StreamResult()
    for r in results:
        out.codes.update(r.codes)
        for method, values in r.latencies.items():
            out.latencies.setdefault(method, []).extend(values)
        out.submitted |= r.submitted
        out.done |= r.done
        out.violations.update(r.violations)
        out.examples.extend(r.examples[: 20 - len(out.examples)])
    return out


def executions(witness: Path) -> Counter:
    """Job id -> number of times it started, from the witness files."""
    return Counter(name.split(".", 1)[0] for name in os.listdir(witness))


def start_rate(witness: Path, window: tuple[float, float], warmup: float = 2.0) -> float:
    """Jobs started per second within the window, after a warm-up (the first jobs of all
    streams start together): the steady throughput, from the witness files' start times."""
    begin, end = window[0] + min(warmup, (window[1] - window[0]) / 4), window[1]
    starts = [int(name.rsplit(".", 1)[1]) / 1e9 for name in os.listdir(witness)]
    return sum(1 for t in starts if begin <= t < end) / max(1e-9, end - begin)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(q / 100 * len(ordered) + 0.5)) - 1))]


class AgentProcess(launcher.AgentProcess):
    """The reference agent as a child process (protos.launcher), so that it can be SIGKILLed and
    started again on the same port and state directory; reasons() reads its journal."""

    def __init__(self, source: Path, state: Path, log: Path, slots: int, extra: list[str] = ()):
        self.source, self.state, self.log, self.slots = source, state, log, slots
        self.extra = ["--no-path-pythons", "--job-timeout", "120", *extra]
        super().__init__(lambda listen: launcher.reference_agent_argv(
            listen, source=self.source, state_dir=self.state, slots=self.slots, extra=self.extra),
            log_path=log, startup_timeout=60)

    def reasons(self) -> Counter:
        """DONE reasons of every job in the journal (succeeded, failed, killed, interrupted)."""
        import json
        import subprocess
        import sys

        out = subprocess.run([sys.executable, "-m", "reference_agent", "jobs", "--json",
                              "--state-dir", str(self.state)], capture_output=True, text=True, timeout=120)
        rows = json.loads(out.stdout or "[]")
        return Counter(row.get("reason") or f"state {row.get('state')}" for row in rows)


def machine() -> str:
    """nproc, RAM and Python of this machine, for the report."""
    import platform

    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        ram = f"{kb / 1024 ** 2:.1f} GiB RAM"
    except (OSError, ValueError, IndexError):
        ram = "RAM unknown"
    return f"{os.cpu_count()} CPUs, {ram}, Python {platform.python_version()}, {platform.system()} {platform.release()}"


def cleanup(agent: "AgentProcess", work: Path, keep: bool) -> None:
    """After a run, good or not: stop the agent if it still runs, remove the work folder unless kept."""
    if agent.alive():
        agent.stop()
    if not keep:
        import shutil
        shutil.rmtree(work, ignore_errors=True)


def publish(figures: dict, ok: bool, table: str, detail: str, json_path: str | None, summary) -> int:
    """Print the table, a detail line and the one summary line (`summary(figures)`, made after the
    verdict is set); write the JSON file when asked. Exit status 0 on PASS, 1 on FAIL."""
    import json
    figures["verdict"] = "PASS" if ok else "FAIL"
    print(table)
    print(detail)
    if json_path:
        Path(json_path).write_text(json.dumps(figures, indent=2) + "\n")
    print(summary(figures))
    return 0 if ok else 1
