"""One test's view of the agent: fresh UUIDs, raw calls with central checks, polls, timelines, cleanup."""
from __future__ import annotations

import time
import uuid as uuid_module
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import grpc

from conformance import jobs, wire
from conformance.audit import Audit
from conformance.target import TRANSPORT_CODES, Target
from conformance.violations import AgentUnavailable, checked, violation
from protos.states import JobState

OK = grpc.StatusCode.OK


@dataclass
class Reply:
    """What one call sent and got back. `state` / `staged` are set for OK answers."""

    request: str
    code: grpc.StatusCode
    details: str
    raw: bytes
    state: JobState | None = None
    staged: list[str] | None = None

    @property
    def ok(self) -> bool:
        return self.code is OK

    def describe(self) -> str:
        got = self.code.name
        if self.details:
            got += f" with message {self.details!r}"
        if self.state is not None:
            got += f", code {self.state.name}"
        if self.staged is not None:
            got += f", success_files {self.staged}"
        return f"request: {self.request}\nreceived: {got}"


def _short(items: Sequence) -> str:
    return "[" + ", ".join(repr(i) if i is None or not isinstance(i, str) or len(i) < 60 else repr(i[:57] + "...")
                           for i in list(items)[:12]) + (", ..." if len(items) > 12 else "") + "]"


class Env:
    """Everything a conformance test does goes through here, so that every OK answer is checked
    on its raw bytes (AGT-WIRE-2), every state seen is checked for monotonicity (AGT-STATE-1)
    and recorded in the job's timeline, and everything created is cleaned up afterwards."""

    def __init__(self, target: Target):
        self.target = target
        self.timing = target.timing
        self.witness = target.witness
        self.t0 = time.monotonic()
        self.timelines: dict[str, list[tuple[float, str, str]]] = {}
        self.last: dict[str, JobState] = {}
        self.done_at: dict[str, float] = {}  # wall-clock time of the first DONE answer, per job
        self.jobs: list[str] = []          # jobs this test submitted (lower case)
        self.files: list[str] = []         # files this test put into the source
        self.sizes: dict[str, int] = {}    # their sizes (a call's deadline grows with them)
        self.logs: list[str] = []
        self.gated: set[str] = set()       # jobs whose script waits for a gate file
        self.unchecked: list[tuple[str, str, str]] = []  # (requirement, what was not checked, option)
        self.audit = Audit(self)

    # --- identities and inputs ----------------------------------------------------------------------

    @staticmethod
    def new_id() -> str:
        return str(uuid_module.uuid4())

    def put(self, data: bytes, file_uuid: str | None = None) -> str:
        file_uuid = (file_uuid or self.new_id()).lower()
        self.target.source.put(file_uuid, data)
        self.audit.on_put(file_uuid, data)
        self.files.append(file_uuid)
        self.sizes[file_uuid] = len(data)
        return file_uuid

    def script(self, job: str, *, gate: bool = False, sleep: float = 0.0, mark: str = "entry",
               start_log: str | None = None, tamper: tuple[str, ...] = ()) -> str:
        """Put a job script for `job` into the source; return its file UUID."""
        wdir = str(self.witness.dir) if self.witness is not None else None
        if gate:
            self.gated.add(job.lower())
        if start_log and start_log not in self.logs:
            self.logs.append(start_log)
        return self.put(jobs.script(job.lower(), wdir, mark=mark, gate_timeout=self.timing.gate if gate else 0.0,
                                    sleep=self.timing(sleep), start_log=start_log, tamper=tamper))

    # --- raw calls ---------------------------------------------------------------------------------

    def send(self, method: str, payload: bytes, request: str, files: Sequence[str | None] = ()) -> Reply:
        """One call; its deadline grows with the files it names and their bytes (Timing.call_for)."""
        size = len(payload) + sum(self.sizes.get((f or "").lower(), 0) for f in set(files))
        timeout = self.timing.call_for(len(files), size)
        code, details, raw = self.target.call(method, payload, timeout=timeout)
        reply = Reply(request, code, details, raw)
        if code is grpc.StatusCode.DEADLINE_EXCEEDED:
            raise AgentUnavailable(f"{request} -> DEADLINE_EXCEEDED: no answer within the deadline for a request "
                                   f"of {len(files)} files, {size} bytes; {self.timing.hint(timeout)}")
        if code in TRANSPORT_CODES:
            raise AgentUnavailable(f"{request} -> {code.name}: {details}")
        if code is grpc.StatusCode.UNIMPLEMENTED:
            raise violation("AGT-WIRE-1", f"method {method} answers UNIMPLEMENTED", reply.describe())
        return reply

    def stage_call(self, job: str | None, files: Iterable[str | None] = (), *, job_present: bool = True) -> Reply:
        files = list(files)
        desc = f"StageInFiles(job={job!r}, files={_short(files)})" if job_present else \
            f"StageInFiles(job absent, files={_short(files)})"
        reply = self.send(wire.STAGE_METHOD, wire.stage_request(job, files, job_present=job_present), desc, files)
        if reply.ok:
            staged, problem = wire.decode_stage_response(reply.raw)
            if staged is None:
                raise violation("AGT-WIRE-2", "OK StageInFilesResponse lacks a required field", problem)
            reply.staged = staged
            if job is not None:
                self.audit.on_staged(job, staged)
        return reply

    def run_call(self, job: str | None, files: Iterable[str | None] = (), reqs: Sequence[str | None] = (),
                 *, job_present: bool = True, via: str = "RunJob") -> Reply:
        files = list(files)
        parts = [f"job={job!r}" if job_present else "job absent", f"files={_short(files)}"]
        if reqs:
            parts.append(f"requirements={_short(list(reqs))}")
        desc = f"RunJob({', '.join(parts)})"
        reply = self.send(wire.RUN_METHOD, wire.run_request(job, files, reqs, job_present=job_present), desc, files)
        if reply.ok:
            code, problem = wire.decode_run_response(reply.raw)
            if code is None:
                raise violation("AGT-WIRE-2", "OK RunJobResponse without a valid code", f"{desc}\n{problem}")
            reply.state = JobState(code)
            if job is not None:
                self.observe(job, reply.state, via if files or reqs else "status")
        return reply

    # --- expectations ---------------------------------------------------------------------------

    def expect_code(self, rid, reply: Reply, codes: grpc.StatusCode | Iterable[grpc.StatusCode], summary: str,
                    note: str = "") -> Reply:
        allowed = (codes,) if isinstance(codes, grpc.StatusCode) else tuple(codes)
        checked()
        if reply.code not in allowed:
            names = " or ".join(c.name for c in allowed)
            raise violation(rid, summary, f"{reply.describe()}\nexpected: {names}" + (f"\n{note}" if note else ""))
        return reply

    def stage(self, rid, job: str, files: Iterable[str], expected: list[str] | None = None,
              summary: str = "StageInFiles did not list the staged files as expected") -> list[str]:
        files = list(files)
        reply = self.expect_code(rid, self.stage_call(job, files), OK, "StageInFiles did not return OK")
        if expected is not None and reply.staged != expected:
            detail = f"{reply.describe()}\nexpected: success_files {expected}"
            if list(dict.fromkeys(reply.staged)) == expected:
                raise violation("AGT-STAGE-1", "a file was listed more than once in success_files", detail)
            raise violation(rid, summary, detail)
        return reply.staged  # type: ignore[return-value]

    def submit(self, rid, job: str, files: Sequence[str], reqs: Sequence[str | None] = ()) -> JobState:
        reply = self.expect_code(rid, self.run_call(job, files, reqs), OK,
                                 "a valid first RunJob did not return OK")
        self.confirm_created(job)
        return reply.state  # type: ignore[return-value]

    def confirm_created(self, job: str) -> None:
        """After an OK first RunJob the job exists: a status query answers it (AGT-RUN-1)."""
        if job.lower() not in self.jobs:
            self.jobs.append(job.lower())
        reply = self.run_call(job)
        self.expect_code("AGT-RUN-1", reply, OK, "an OK first RunJob did not create the job",
                         "a status query right after the submission must answer the job's state")

    def assert_not_staged(self, rid, job: str, file: str, why: str) -> None:
        """`file` must not be staged for `job` after a refused call: RunJob(job, [file]) is
        FAILED_PRECONDITION. If the agent accepts RunJob with unstaged files at all (a control
        with a file never staged anywhere), that is AGT-RUN-3, not the refused call's fault."""
        reply = self.run_call(job, [file])
        if reply.code is grpc.StatusCode.FAILED_PRECONDITION:
            return
        if reply.ok:
            self.jobs.append(job.lower())
        control = self.run_call(self.new_id(), [self.new_id()])
        self.expect_code("AGT-RUN-3", control, grpc.StatusCode.FAILED_PRECONDITION,
                         "RunJob with unstaged files is not FAILED_PRECONDITION")
        raise violation(rid, f"{why} changed the agent's state (a file got staged)",
                        f"{reply.describe()}\nexpected: FAILED_PRECONDITION, {file} was never staged for {job}")

    def assert_not_created(self, rid, job: str, why: str) -> None:
        """`job` must not exist after a refused RunJob: StageInFiles for it is still OK."""
        self.expect_code(rid, self.stage_call(job, []), OK, f"{why} created the job",
                         f"job {job} should not exist afterwards, so StageInFiles should be OK")

    def status(self, rid, job: str) -> JobState:
        reply = self.expect_code(rid, self.run_call(job), OK,
                                 "a status query (RunJob with no files, no requirements) did not return OK")
        return reply.state  # type: ignore[return-value]

    def job(self, rid, *, gate: bool = False, sleep: float = 0.0, reqs: Sequence[str | None] = (),
            start_log: str | None = None, extra: Sequence[str] = ()) -> str:
        """A fresh job whose entry script is staged and submitted; return its id."""
        job = self.new_id()
        entry = self.script(job, gate=gate, sleep=sleep, start_log=start_log)
        files = [entry, *extra]
        self.stage(rid, job, files, expected=list(dict.fromkeys(files)))
        self.submit(rid, job, files, reqs)
        return job

    # --- states and timelines --------------------------------------------------------------------

    def observe(self, job: str, state: JobState, via: str) -> None:
        key = job.lower()
        now = round(time.monotonic() - self.t0, 3)
        self.timelines.setdefault(key, []).append((now, state.name, via))
        previous = self.last.get(key)
        self.last[key] = state
        if state is JobState.DONE and key not in self.done_at:
            self.done_at[key] = time.time()
        checked()
        if previous is not None and state < previous:
            raise violation("AGT-STATE-1", f"state went backwards: {previous.name} then {state.name}",
                            f"job {key}\ntimeline: {self.timeline(key)}")
        if state is JobState.DONE:
            self.audit.on_done(key)
        elif state is JobState.RUN:
            self.audit.on_run(key)

    def not_checked(self, rid: str, what: str, option: str) -> None:
        """Record that part of `rid`'s checks could not run here (the verdict becomes PARTIAL)."""
        entry = (rid, what, option)
        if entry not in self.unchecked:
            self.unchecked.append(entry)

    def settle(self) -> None:
        """After the test's own checks: the checks that apply wherever the suite looks (audit)."""
        self.audit.settle()

    def timeline(self, job: str) -> str:
        points = self.timelines.get(job.lower(), [])
        compact, prev = [], None
        for t, state, via in points:
            if state != prev:
                compact.append(f"{t:.3f}s {state} ({via})")
                prev = state
        return " -> ".join(compact) or "(never observed)"

    def wait_state(self, rid, job: str, accept: Callable[[JobState], bool], what: str,
                   deadline: float | None = None) -> JobState:
        """Poll the job until `accept(state)`; Violation of `rid` past the deadline."""
        start = time.monotonic()
        limit = start + (deadline if deadline is not None else self.timing.done)
        checked()
        while True:
            state = self.status(rid, job)
            if accept(state):
                return state
            if time.monotonic() > limit:
                raise violation(rid, f"job not {what} in time",
                                f"job {job.lower()}: not {what} after {limit - self.t0:.1f} s of the test\n"
                                f"timeline: {self.timeline(job)}\n{self.timing.hint(limit - start)}")
            time.sleep(self.timing.poll)

    def wait_done(self, rid, job: str, deadline: float | None = None) -> None:
        self.wait_state(rid, job, lambda s: s is JobState.DONE, "DONE", deadline)

    def finish(self, job: str, deadline: float | None = None) -> None:
        """Poll until DONE; past the deadline the violation names what the timeline shows: never
        started (AGT-SCHED-2), started but still WAIT (AGT-STATE-2) or never reported DONE (AGT-STATE-3)."""
        start = time.monotonic()
        limit = start + self._progress(deadline if deadline is not None else self.timing.done)
        checked()
        while self.status("AGT-RUN-7", job) is not JobState.DONE:
            if time.monotonic() > limit:
                last = self.last.get(job.lower())
                started = self.witness is not None and self.witness.started(job.lower())
                ended = self.witness is not None and self.witness.ended(job.lower())
                if last is JobState.WAIT and not started:
                    rid, what = "AGT-SCHED-2", "a job never started (still WAIT)"
                    self.target.stalled = True
                elif last is JobState.WAIT:
                    rid, what = "AGT-STATE-2", "a job whose process started is still reported WAIT"
                else:
                    rid, what = "AGT-STATE-3", ("a job whose process ended is not reported DONE" if ended
                                                else "a short job is still not DONE")
                raise violation(rid, what + " in time", f"job {job.lower()}: not DONE after "
                                f"{limit - self.t0:.1f} s of the test\ntimeline: {self.timeline(job)}\n"
                                f"{self.timing.hint(limit - start)}")
            time.sleep(self.timing.poll)

    def wait_until(self, rid, condition: Callable[[], object], deadline: float, summary: str,
                   details: Callable[[], str] = lambda: "") -> None:
        limit = time.monotonic() + deadline
        checked()
        while not condition():
            if time.monotonic() > limit:
                raise violation(rid, summary, "\n".join(filter(None, [details(), self.timing.hint(deadline)])))
            time.sleep(self.timing.poll)

    def runs(self, job: str) -> list[jobs.Run]:
        assert self.witness is not None
        return self.witness.runs(job.lower())

    def wait_ran(self, job: str) -> list[jobs.Run]:
        """The witnessed executions of a DONE job; none at all means its first file never ran (AGT-RUN-6)."""
        self.wait_until("AGT-RUN-6", lambda: self.witness.runs(job.lower()), self.timing(2.0),
                        "a DONE job's first file never ran (no witness from its entry script)",
                        lambda: f"job {job.lower()}\ntimeline: {self.timeline(job)}")
        return self.witness.runs(job.lower())

    def expect_one_run(self, rid, job: str, summary: str = "a job id ran more than once") -> None:
        """Exactly one execution of a DONE job. A second one that started after the job was first
        answered DONE was started by a later call (AGT-RUN-7); an earlier one is `rid`'s."""
        runs = self.wait_ran(job)
        time.sleep(self.timing(0.3))  # give a wrongly started second execution the time to show
        runs = self.witness.runs(job.lower())
        if len(runs) <= 1:
            return
        detail = f"job {job.lower()}: {len(runs)} executions (pids {[r.pid for r in runs]})\ntimeline: {self.timeline(job)}"
        done_at = self.done_at.get(job.lower())
        if done_at is not None and sorted(r.start for r in runs)[1] > done_at:
            raise violation("AGT-RUN-7", "a job ran again after it was answered DONE", detail)
        raise violation(rid, summary, detail)

    def wait_started(self, rid, job: str, summary: str = "a job with a free slot did not start") -> None:
        try:
            self.wait_until(rid, lambda: self.witness.started(job.lower()), self._progress(self.timing.start),
                            summary, lambda: f"job {job.lower()}: no start witness\ntimeline: {self.timeline(job)}")
        except AssertionError:
            self.target.stalled = True
            raise

    def _progress(self, deadline: float) -> float:
        """Once the agent has left a job unstarted past its deadline, later waits for progress are
        short: every test would otherwise wait out its full deadline against a stalled agent."""
        return min(deadline, self.timing(2.0)) if self.target.stalled else deadline

    # --- cleanup -------------------------------------------------------------------------------------

    def cleanup(self) -> None:
        """Open every gate, wait (bounded) for this test's jobs to end, remove witnesses and inputs."""
        if self.witness is not None:
            for job in self.gated:
                try:
                    self.witness.open_gate(job)
                except OSError:
                    pass
        limit = time.monotonic() + self.timing(0.5 if self.target.stalled else 3.0)
        for job in self.jobs:
            while time.monotonic() < limit:
                reply = self.target.call(wire.RUN_METHOD, wire.run_request(job), timeout=self.timing(2.0))
                code, _ = wire.decode_run_response(reply[2]) if reply[0] is OK else (None, "")
                if reply[0] is not OK or code == JobState.DONE:
                    break
                time.sleep(self.timing(0.05))
        if self.witness is not None:
            time.sleep(self.timing(0.05))
            # a job that has not ended keeps its (open) gate file, or it would wait out its gate
            # timeout in a slot; an agent reporting DONE too early would otherwise starve later tests
            done = [j for j in set(self.jobs) | self.gated if j not in self.gated or self.witness.ended(j)]
            self.witness.cleanup(done, self.logs)
        if getattr(self.target.source, "can_delete", False):
            for f in self.files:
                try:
                    self.target.source.delete(f)
                except OSError:
                    pass
