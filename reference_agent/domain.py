"""The agent's domain: staging, submission, the FIFO scheduler, job processes and recovery."""
from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from protos import errors, submission, validation
from protos.states import DoneReason, Event, JobState, JobStateMachine, next_state
from protos.validation import RunRequest, StageRequest

from reference_agent.config import AgentConfig
from reference_agent.copying import private_dir, private_files
from reference_agent.interpreters import Interpreter, InterpreterRegistry
from reference_agent.journal import JobRow, Journal
from reference_agent.processes import Launch, Limits, clean_env, kill_group
from reference_agent.supervision import JobSupervisor
from reference_agent.staging import ContentStore, SourceError, checked_name, make_source
from reference_agent.telemetry import Telemetry


@dataclass
class Job:
    """A submitted job as the core holds it in memory; the journal holds the same facts."""

    job: str
    seq: int
    files: tuple[str, ...]
    requirements: tuple[str, ...]
    interpreter: str
    python_version: str
    machine: JobStateMachine
    workdir: Path
    stdout: Path
    stderr: Path
    status_file: Path
    submitted: float
    started: float | None = None
    ended: float | None = None
    pid: int | None = None
    exit_status: int | None = None
    kill_reason: str | None = None  # "timeout" or "stop" when the agent ends the process

    @property
    def state(self) -> JobState:
        return self.machine.state


class AgentCore(JobSupervisor):
    """The reference agent without gRPC. Thread-safe; `start()` recovers from the journal.

    Public operations take validated requests (protos.validation) and return results or raise
    protos.errors.ProtocolError. Each rule lives in one small method (`_check_staged`,
    `_choose_interpreter`, `_report_state`, `_free_slots`, ...) so a subclass can override one
    behaviour, which is how the catalogue of broken agents is built.
    """

    def __init__(self, config: AgentConfig, telemetry: Telemetry | None = None):
        self.config = config.validate()
        self.telemetry = telemetry or Telemetry()
        root = config.state_path
        private_dir(root)  # 0700: no other user reads jobs, outputs, cache or journal (issue 11)
        self.root = root
        self.jobs_dir = root / "jobs"
        self.journal = Journal(root / "journal.sqlite3")
        private_files(root, "journal.sqlite3*")
        self.source = make_source(config.source)
        self.store = ContentStore(self.source, root / "cache", root / "tmp", self.journal,
                                  on_fetch=self.telemetry.staging_bytes.inc)
        self.interpreters = InterpreterRegistry(config.pythons, config.include_running,
                                                config.discover_path, config.probe_timeout)
        self.limits = Limits(config.limit_address_space, config.limit_open_files, config.limit_processes)
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._jobs: dict[str, Job] = {}
        self._queue: collections.deque[str] = collections.deque()
        self._busy: set[str] = set()          # jobs holding a slot (starting or RUN)
        self._staged: dict[str, dict[str, None]] = {}  # job -> ordered set of staged files
        # Striped, not one per id: a lock per id ever seen grew without bound (about 200 bytes
        # for every refused or empty request with a new job id).
        self._job_locks = [threading.Lock() for _ in range(256)]
        self._watchers: list[threading.Thread] = []
        self._scheduler: threading.Thread | None = None
        self._stopping = False
        self._closed = False
        self.telemetry.watch_core(self.counts)

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        self._recover()
        self.interpreters.available()  # probe once, now, not during the first RunJob
        self._scheduler = threading.Thread(target=self._schedule_loop, name="agent-scheduler", daemon=True)
        self._scheduler.start()

    def close(self, stop_jobs: bool | None = None, timeout: float = 10.0) -> None:
        """Stop scheduling. Running jobs are left running (adopted at the next start) unless
        `stop_jobs` (default: config.stop_jobs_on_exit), then they end DONE (interrupted)."""
        stop = self.config.stop_jobs_on_exit if stop_jobs is None else stop_jobs
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        if self._scheduler is not None:
            self._scheduler.join(timeout)  # a launch in progress completes first
        with self._lock:
            running = [self._jobs[j] for j in self._busy]
        if stop:
            for job in running:
                job.kill_reason = "stop"
                if job.pid:
                    kill_group(job.pid)
            for watcher in list(self._watchers):
                watcher.join(timeout)
        with self._lock:
            self._closed = True
            self.journal.close()

    # --- requests (the servicer calls these) ----------------------------------------------
    def parse_stage_request(self, message) -> StageRequest:
        return validation.validate_stage_request(message)

    def parse_run_request(self, message) -> RunRequest:
        return validation.validate_run_request(message)

    def stage_in(self, req: StageRequest) -> list[str]:
        """Stage files for a job not yet submitted; return those staged, once each (AGT-STAGE-1)."""
        with self._submission_lock(req.job):
            self._check_stage_allowed(req.job)
            staged = []
            for file in self._unique(req.files):
                if self._is_staged(req.job, file) or self._stage_file(req.job, file):
                    staged.append(file)
            return staged

    def run_job(self, req: RunRequest) -> JobState:
        """Submit a new job (AGT-RUN-1..6) or answer a status query (AGT-RUN-7/8)."""
        job = self._lookup(req.job)
        if job is not None:
            return self._status_query(job, req)
        with self._submission_lock(req.job):  # one submission per id, however many callers (AGT-RUN-9)
            job = self._lookup(req.job)
            if job is not None:
                return self._status_query(job, req)
            return self._submit(req)

    # --- queries ----------------------------------------------------------------------------
    def job(self, job_id: str) -> Job | None:
        return self._lookup(job_id.lower())

    def staged_files(self, job_id: str) -> list[str]:
        with self._lock:
            return list(self._staged.get(job_id.lower(), ()))

    def counts(self) -> dict[str, int]:
        with self._lock:
            out = collections.Counter(j.state.name for j in self._jobs.values())
            out["queue"] = len(self._queue)
            out["busy"] = len(self._busy)
            return dict(out)

    # --- staging hooks ----------------------------------------------------------------------
    def _submission_lock(self, job_id: str) -> threading.Lock:
        """Serialises staging and first submission of one job id (AGT-STAGE-4, AGT-RUN-9)."""
        return self._job_locks[hash(job_id) % len(self._job_locks)]

    def _lookup(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def _check_stage_allowed(self, job_id: str) -> None:
        submission.check_stage_allowed(job_id, self._lookup(job_id) is not None)

    def _unique(self, files) -> list[str]:
        return validation.dedupe(files)

    def _is_staged(self, job_id: str, file: str) -> bool:
        with self._lock:
            return file in self._staged.get(job_id, {})

    def _stage_file(self, job_id: str, file: str) -> bool:
        """Copy one file from the source (or the cache) into the job's directory."""
        try:
            self.store.place(file, self._workdir(job_id))
        except (SourceError, OSError) as exc:
            self.telemetry.log("stage", job=job_id, file=file, ok=False, error=str(exc))
            return False
        self.journal.add_staged(job_id, file)
        with self._lock:
            self._staged.setdefault(job_id, {})[file] = None
        self.telemetry.staged_files.inc()
        self.telemetry.log("stage", job=job_id, file=file, ok=True)
        return True

    # --- submission hooks -------------------------------------------------------------------
    def _status_query(self, job: Job, req: RunRequest) -> JobState:
        self._check_repeat(job, req)
        return self._report_state(job)

    def _check_repeat(self, job: Job, req: RunRequest) -> None:
        submission.check_repeat(req, job.files, job.requirements)

    def _submit(self, req: RunRequest) -> JobState:
        self._check_has_files(req)
        self._check_staged(req.job, req.files)
        interpreter = self._choose_interpreter(req)
        job = self._create_job(req, interpreter)
        return self._report_state(job)

    def _check_has_files(self, req: RunRequest) -> None:
        submission.check_has_files(req)

    def _check_staged(self, job_id: str, files) -> None:
        with self._lock:
            staged = set(self._staged.get(job_id, {}))
        submission.check_staged(job_id, files, staged)

    def _choose_interpreter(self, req: RunRequest) -> Interpreter:
        chosen = self.interpreters.choose(req.requirements)
        if chosen is None:
            raise errors.no_interpreter(req.requirement_texts, self.interpreters.versions())
        return chosen

    def _create_job(self, req: RunRequest, interpreter: Interpreter) -> Job:
        base = self.jobs_dir / checked_name(req.job)
        workdir = self._workdir(req.job)
        private_dir(workdir)
        now = time.time()
        with self._wake:
            seq = self.journal.insert_job(  # journal first: a crash now still runs it later
                job=req.job, files=req.files, requirements=req.requirement_texts,
                interpreter=interpreter.path, python_version=interpreter.version,
                state=JobState.WAIT, submitted=now, workdir=str(workdir),
                stdout=str(base / "stdout"), stderr=str(base / "stderr"))
            job = Job(req.job, seq, tuple(req.files), tuple(req.requirement_texts), interpreter.path,
                      interpreter.version, JobStateMachine(), workdir, base / "stdout", base / "stderr",
                      base / "exit_status", now)
            self._jobs[req.job] = job
            self._queue.append(req.job)
            self.telemetry.log("job", job=req.job, old=None, new="WAIT", event="submit",
                               python=interpreter.version, interpreter=interpreter.path)
            now_startable = self._take_next()  # a free slot: start here, no scheduler wake-up
            self._wake.notify_all()
        if now_startable is not None:
            self._start_safely(now_startable)
        return job

    def _report_state(self, job: Job) -> JobState:
        with self._lock:
            return job.state

    def _workdir(self, job_id: str) -> Path:
        return self.jobs_dir / checked_name(job_id) / "work"

    # --- scheduling hooks -------------------------------------------------------------------
    def _free_slots(self) -> int:
        return self.config.slots - len(self._busy)

    def _next_job(self) -> Job | None:
        """The job to start next: the oldest waiting one (AGT-SCHED-3). Called under the lock."""
        return self._jobs[self._queue[0]] if self._queue else None

    def _take_next(self) -> Job | None:
        """Under the lock: the job to start now, out of the queue and holding a slot, or None."""
        if self._stopping or self._free_slots() <= 0:
            return None
        job = self._next_job()
        if job is not None:
            self._queue.remove(job.job)
            self._busy.add(job.job)
        return job

    def _schedule_loop(self) -> None:
        while True:
            with self._wake:
                while (job := self._take_next()) is None:
                    if self._stopping:
                        return
                    self._wake.wait()
            self._start_safely(job)

    def _start_safely(self, job: Job) -> None:
        try:
            self._start_job(job)
        except Exception as exc:  # noqa: BLE001 - the scheduler must outlive any one job
            self.telemetry.log("error", where="scheduler", job=job.job, error=repr(exc))

    def _launch(self, job: Job) -> Launch:
        """Create the job's process, paused until `go()`; no bookkeeping (see _start_job)."""
        return Launch(job.interpreter, job.files[0], job.workdir, job.stdout, job.stderr,
                      job.status_file, clean_env(job.workdir, self.config.job_env), self.limits)

    def _start_job(self, job: Job) -> None:
        """Launch the job's process paused, journal RUN with its pid, then let it go."""
        try:
            launch = self._launch(job)
        except Exception as exc:  # noqa: BLE001 - e.g. the interpreter vanished: DONE (failed)
            self._fail_start(job, exc)
            return
        try:
            with self._lock:
                job.pid, job.started = launch.pid, time.time()
                self._transition(job, Event.START, pid=launch.pid, proc_start=launch.identity,
                                 started=job.started)
        except Exception as exc:  # noqa: BLE001 - not journalled as RUN: it must never run
            launch.abort()
            self._fail_start(job, exc)
            return
        launch.go()
        self._watch(job, launch=launch)

    def _fail_start(self, job: Job, exc: BaseException) -> None:
        with self._wake:
            try:
                now = time.time()
                if job.state is JobState.WAIT:
                    self._transition(job, Event.START, started=now)
                self._transition(job, Event.FAIL, ended=now, note=f"could not start: {exc}")
            finally:
                self._busy.discard(job.job)
                self._wake.notify_all()

    def _transition(self, job: Job, event: Event, **columns) -> None:
        """Journal the new state, then make it visible (AGT-STATE-1 via the one state machine)."""
        old = job.state
        new, reason = next_state(old, event)
        self.journal.update_job(job.job, state=int(new), reason=reason.value if reason else None, **columns)
        job.machine.advance(event)
        extra = {k: v for k, v in columns.items() if k in ("pid", "exit_status", "note") and v is not None}
        self.telemetry.job_transition(job.job, old, new, event.value,
                                      reason=reason.value if reason else None, **extra)

    # --- recovery hook (the rest is in JobSupervisor) -------------------------------------
    def _restore_job(self, row: JobRow) -> Job:
        base = Path(row.stdout).parent
        machine = JobStateMachine.restore(JobState(row.state), DoneReason(row.reason) if row.reason else None)
        return Job(row.job, row.seq, row.files, row.requirements, row.interpreter, row.python_version,
                   machine, Path(row.workdir), Path(row.stdout), Path(row.stderr), base / "exit_status",
                   row.submitted, row.started, row.ended, row.pid, row.exit_status)
