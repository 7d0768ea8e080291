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
        clients = [AgentClient(c, timeout=60) for c in channels]
        for ch in channels:        # connect before the clock starts
            grpc.channel_ready_future(ch).result(timeout=30)
        jobs = [RealJob(p.index, -1) for p in self.plan]
        load = [0] * len(self.addresses)
        heap: list = []
        cond = threading.Condition()
        state = {"left": len(self.plan), "seq": 0}
        errors: list[str] = []
        t0 = time.time() + self.lead

        def push(due: float, kind: str, i: int, k: int = 0) -> None:
            with cond:
                state["seq"] += 1
                heapq.heappush(heap, (due, state["seq"], kind, i, k))
                cond.notify()

        def finish(i: int, error: str = "") -> None:
            with cond:
                if error:
                    jobs[i].error = error
                    errors.append(f"job {i}: {error}")
                if jobs[i].agent >= 0:
                    load[jobs[i].agent] -= 1
                state["left"] -= 1
                cond.notify()

        def submit(i: int) -> None:
            p, r = self.plan[i], jobs[i]
            client = clients[r.agent]
            files = [self.entries[i]] + [self.file_ids[f] for f in p.files]
            r.job = str(uuid.uuid4())
            try:
                r.submit = time.time() - t0
                staged = client.stage_in(r.job, files)
                if set(staged) != set(files):
                    raise RuntimeError(f"StageInFiles staged {len(staged)} of {len(set(files))} files")
                first = client.run(r.job, files, python_version=p.python or None)
                r.run_submit = time.time() - t0
                r.first_state = first.name
            except Exception as exc:  # noqa: BLE001 - any failure ends this job, never the run
                finish(i, str(exc) if isinstance(exc, (AgentCallError, RuntimeError)) else repr(exc))
                return
            push(t0 + r.run_submit + poll_offset(self.schedule, 1), "poll", i, 1)

        def poll(i: int, k: int) -> None:
            r = jobs[i]
            try:
                st = clients[r.agent].status(r.job)
            except Exception as exc:  # noqa: BLE001
                finish(i, str(exc) if isinstance(exc, AgentCallError) else repr(exc))
                return
            if st is JobState.DONE:
                r.done_seen, r.polls = time.time() - t0, k
                finish(i)
            else:
                push(t0 + r.run_submit + poll_offset(self.schedule, k + 1), "poll", i, k + 1)

        for p in self.plan:
            heapq.heappush(heap, (t0 + p.submit, -p.index - 1, "submit", p.index, 0))
        late: list[float] = []
        deadline = t0 + (self.plan[-1].submit if self.plan else 0) + self.timeout
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="replay-client") as pool:
            while True:
                with cond:
                    while True:
                        if state["left"] == 0 or time.time() > deadline:
                            item = None
                            break
                        if heap and heap[0][0] <= time.time():
                            item = heapq.heappop(heap)
                            break
                        cond.wait(min(0.05, max(0.0, heap[0][0] - time.time())) if heap else 0.05)
                    if item is None:
                        break
                    due, _, kind, i, k = item
                    late.append(time.time() - due)
                    if kind == "submit":
                        jobs[i].scheduled = due - t0
                        jobs[i].agent = self._choose(self.plan[i], load)
                        load[jobs[i].agent] += 1
                pool.submit(submit, i) if kind == "submit" else pool.submit(poll, i, k)
            unfinished = state["left"]
        for ch in channels:
            ch.close()
        self._read_witness(jobs, t0)
        return RealResult(jobs, t0, sum(late) / len(late) if late else 0.0, max(late, default=0.0), errors, unfinished)

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
