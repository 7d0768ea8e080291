"""The real side of a replay: a planned job sequence driven through AgentClient against live agents."""
from __future__ import annotations

import heapq
import os
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from protos.client import AgentCallError, AgentClient
from protos.states import JobState
from simulator.real.calibrate import PROBE
from simulator.polling import PollSchedule


def poll_offset(schedule: PollSchedule, k: int) -> float:
    """Seconds from RunJob to the k-th poll (k >= 1) of `schedule`, as the simulator counts them."""
    offsets = schedule.offsets
    if k <= len(offsets):
        return offsets[k - 1]
    return offsets[-1] + (k - len(offsets)) * schedule.cap


@dataclass(frozen=True)
class PlannedJob:
    """One job of the paired plan: arrival (s from the first), runtime, catalog files, python, agent."""

    index: int
    submit: float
    runtime: float
    files: tuple[int, ...]
    python: str
    agent: int | None     # the agent to use (from the simulation) or None: the client's own policy


@dataclass
class RealJob:
    """What the client and the witness files saw for one job; times are seconds from the plan's origin."""

    index: int
    agent: int
    job: str = ""
    scheduled: float = float("nan")
    submit: float = float("nan")        # the client starts StageInFiles
    run_submit: float = float("nan")    # RunJob returned: polls are scheduled from here
    first_state: str = ""
    start: float = float("nan")         # RUN in the agent's journal (filled in by the caller)
    end: float = float("nan")           # DONE in the agent's journal
    first: float = float("nan")         # the job's first statement (witness file)
    last: float = float("nan")          # the job's last statement (witness file)
    done_seen: float = float("nan")     # the answer of the first poll that saw DONE came back
    polls: int = 0
    error: str = ""


@dataclass
class RealResult:
    """Every job's RealJob, the client's lateness against the plan, and the errors seen."""

    jobs: list[RealJob]
    t0: float                 # time.time() of the plan's origin
    lateness_mean: float
    lateness_max: float
    errors: list[str] = field(default_factory=list)
    unfinished: int = 0


class Driver:
    """Submits each planned job at its arrival time and polls it on the scenario's schedule.

    One dispatcher thread keeps a heap of due actions (a submission: StageInFiles then RunJob;
    a poll: a status RunJob) and hands them to a bounded pool of `workers` threads; a poll that
    does not see DONE schedules the next one at RunJob-return + the schedule's next offset, so
    RPC time does not shift later polls. Jobs sleep for their runtime and stamp their first and
    last statements into witness files. `policy` "planned" uses PlannedJob.agent; "least_loaded"
    picks the agent with the fewest jobs per slot that this client has submitted and not yet
    seen DONE (ties: lowest index).
    """

    def __init__(self, plan: list[PlannedJob], addresses: list[str], slots: list[int],
                 file_sizes: list[float], source: Path, witness: Path, schedule: PollSchedule,
                 policy: str = "planned", workers: int = 16, lead: float = 1.0, timeout: float = 600.0):
        self.plan, self.addresses, self.slots = plan, addresses, slots
        self.file_sizes, self.source, self.witness = file_sizes, Path(source), Path(witness)
        self.schedule, self.policy, self.workers = schedule, policy, workers
        self.lead, self.timeout = lead, timeout
        self.file_ids: dict[int, str] = {}
        self.entries: list[str] = []

    # --- inputs in the file source ----------------------------------------------------------------
    def prepare(self) -> None:
        """Write the catalog files the plan uses and one entry script per job into the source."""
        self.source.mkdir(parents=True, exist_ok=True)
        self.witness.mkdir(parents=True, exist_ok=True)
        block = os.urandom(1 << 16)
        for f in sorted({f for job in self.plan for f in job.files}):
            fid = str(uuid.uuid4())
            size = int(round(self.file_sizes[f]))
            with open(self.source / fid, "wb") as fh:
                while size > 0:
                    fh.write(block[:min(size, len(block))])
                    size -= len(block)
            self.file_ids[f] = fid
        for job in self.plan:
            entry = str(uuid.uuid4())
            (self.source / entry).write_text(PROBE.format(
                start=str(self.witness / f"{job.index}.start"), end=str(self.witness / f"{job.index}.end"),
                sleep=job.runtime))
            self.entries.append(entry)

    # --- the run -----------------------------------------------------------------------------------
    def run(self) -> RealResult:
        if not self.entries:
            self.prepare()
        channels = [grpc.insecure_channel(a) for a in self.addresses]
        for ch in channels:        # connect before the clock starts
            grpc.channel_ready_future(ch).result(timeout=30)
        run = _Run(self, [AgentClient(c, timeout=60) for c in channels], time.time() + self.lead)
        try:
            unfinished, late = run.dispatch()
        finally:
            for ch in channels:
                ch.close()
        self._read_witness(run.jobs, run.t0)
        return RealResult(run.jobs, run.t0, sum(late) / len(late) if late else 0.0, max(late, default=0.0),
                          run.errors, unfinished)

    def _choose(self, p: PlannedJob, load: list[int]) -> int:
        if self.policy == "planned":
            return p.agent
        return min(range(len(load)), key=lambda a: (load[a] / self.slots[a], a))

    def _read_witness(self, jobs: list[RealJob], t0: float) -> None:
        for r in jobs:
            for name, suffix in (("first", "start"), ("last", "end")):
                try:
                    setattr(r, name, float((self.witness / f"{r.index}.{suffix}").read_text()) - t0)
                except (OSError, ValueError):
                    pass


class _Run:
    """One replay in progress: the due calls in a heap, a pool of client threads making them."""

    def __init__(self, replay: "Driver", clients: list, t0: float):
        self.replay, self.plan, self.clients, self.t0 = replay, replay.plan, clients, t0
        self.jobs = [RealJob(p.index, -1) for p in self.plan]
        self.load = [0] * len(replay.addresses)
        self.heap: list = []
        self.cond = threading.Condition()
        self.left, self.seq = len(self.plan), 0
        self.errors: list[str] = []

    def push(self, due: float, kind: str, i: int, k: int = 0) -> None:
        with self.cond:
            self.seq += 1
            heapq.heappush(self.heap, (due, self.seq, kind, i, k))
            self.cond.notify()

    def finish(self, i: int, error: str = "") -> None:
        with self.cond:
            if error:
                self.jobs[i].error = error
                self.errors.append(f"job {i}: {error}")
            if self.jobs[i].agent >= 0:
                self.load[self.jobs[i].agent] -= 1
            self.left -= 1
            self.cond.notify()

    def submit(self, i: int) -> None:
        p, r = self.plan[i], self.jobs[i]
        client = self.clients[r.agent]
        files = [self.replay.entries[i]] + [self.replay.file_ids[f] for f in p.files]
        r.job = str(uuid.uuid4())
        try:
            r.submit = time.time() - self.t0
            staged = client.stage_in(r.job, files)
            if set(staged) != set(files):
                raise RuntimeError(f"StageInFiles staged {len(staged)} of {len(set(files))} files")
            first = client.run(r.job, files, python_version=p.python or None)
            r.run_submit = time.time() - self.t0
            r.first_state = first.name
        except Exception as exc:  # noqa: BLE001 - any failure ends this job, never the run
            self.finish(i, str(exc) if isinstance(exc, (AgentCallError, RuntimeError)) else repr(exc))
            return
        self.push(self.t0 + r.run_submit + poll_offset(self.replay.schedule, 1), "poll", i, 1)

    def poll(self, i: int, k: int) -> None:
        r = self.jobs[i]
        try:
            st = self.clients[r.agent].status(r.job)
        except Exception as exc:  # noqa: BLE001
            self.finish(i, str(exc) if isinstance(exc, AgentCallError) else repr(exc))
            return
        if st is JobState.DONE:
            r.done_seen, r.polls = time.time() - self.t0, k
            self.finish(i)
        else:
            self.push(self.t0 + r.run_submit + poll_offset(self.replay.schedule, k + 1), "poll", i, k + 1)

    def _next_due(self, deadline: float):
        """The next call whose time has come, or None when all jobs ended or the deadline passed."""
        with self.cond:
            while True:
                if self.left == 0 or time.time() > deadline:
                    return None
                if self.heap and self.heap[0][0] <= time.time():
                    item = heapq.heappop(self.heap)
                    if item[2] == "submit":
                        i = item[3]
                        self.jobs[i].scheduled = item[0] - self.t0
                        self.jobs[i].agent = self.replay._choose(self.plan[i], self.load)
                        self.load[self.jobs[i].agent] += 1
                    return item
                self.cond.wait(min(0.05, max(0.0, self.heap[0][0] - time.time())) if self.heap else 0.05)

    def dispatch(self) -> tuple[int, list[float]]:
        """Make every call at its time; returns the jobs left unfinished and each call's lateness."""
        for p in self.plan:
            heapq.heappush(self.heap, (self.t0 + p.submit, -p.index - 1, "submit", p.index, 0))
        late: list[float] = []
        deadline = self.t0 + (self.plan[-1].submit if self.plan else 0) + self.replay.timeout
        with ThreadPoolExecutor(max_workers=self.replay.workers, thread_name_prefix="replay-client") as pool:
            while (item := self._next_due(deadline)) is not None:
                due, _, kind, i, k = item
                late.append(time.time() - due)
                pool.submit(self.submit, i) if kind == "submit" else pool.submit(self.poll, i, k)
            unfinished = self.left
        return unfinished, late
