"""The agent's domain: staging, submission, the FIFO scheduler, job processes and recovery."""
from __future__ import annotations

import collections
import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

from protos import errors, submission, validation
from protos.states import Event, JobState, next_state
from protos.validation import RunRequest, StageRequest

from reference_agent.config import AgentConfig
from reference_agent.copying import private_dir, private_files
from reference_agent.interpreters import Interpreter, InterpreterRegistry
from reference_agent.job import Job
from reference_agent.journal import JobRow, Journal, StorageError, is_disk_full
from reference_agent.pending import PendingEnds
from reference_agent.retention import Retention, RetentionPolicy
from reference_agent.containment import choose_containment
from reference_agent.processes import Adopted, Launch, Limits, clean_env, kill_group, read_status
from reference_agent.supervision import JobSupervisor, SupervisionLimits, exit_event
from reference_agent.staging import ContentStore, SourceError, checked_name, make_source
from reference_agent.statedir import JOURNAL_NAME, StateLock, check_journal_present
from reference_agent.telemetry import Telemetry


# Staging records files in the journal per chunk, not per file: one commit per STAGE_CHUNK
# files or STAGE_CHUNK_SECONDS, whichever comes first (16,000 files took 52 s one by one).
STAGE_CHUNK = 2000
STAGE_CHUNK_SECONDS = 0.5
# After a RUN could not be journalled (disk full), no job starts for this long.
START_RETRY_SECONDS = 0.2


class AgentCore:
    """The reference agent without gRPC. Thread-safe; `start()` recovers from the journal.

    Public operations take validated requests (protos.validation) and return results or raise
    protos.errors.ProtocolError. Each rule lives in one small method (`check_staged`,
    `choose_interpreter`, `report_state`, `free_slots`, ...) so a subclass can override one
    behaviour, which is how the catalogue of broken agents is built.
    """

    def __init__(self, config: AgentConfig, telemetry: Telemetry | None = None):
        self.config = config.validate()
        self.telemetry = telemetry or Telemetry()
        root = config.state_path
        private_dir(root)  # 0700: no other user reads jobs, outputs, cache or journal (issue 11)
        self.root = root
        self.jobs_dir = root / "jobs"
        self.state_lock = StateLock(root)  # StateError: another agent holds this directory
        try:
            check_journal_present(root, config.accept_lost_journal, self.telemetry.log)
            self.journal = Journal(root / JOURNAL_NAME, on_error=self._journal_error)
            private_files(root, JOURNAL_NAME + "*")
            self.source = make_source(config.source)
            self.job_user = config.job_identity()  # None: jobs run as the agent's user
            self.store = ContentStore(self.source, root / "cache", root / "tmp", self.journal,
                                      on_fetch=self.telemetry.staging_bytes.inc,
                                      input_mode=0o400 if self.job_user is None else 0o444)
        except BaseException:
            self.state_lock.release()
            raise
        self.pending_ends = PendingEnds(self.journal, self.telemetry.log)
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
        # Composition, not a mixin: the supervisor watches processes and reports ends to _on_exit.
        self.containment = choose_containment(root, config.limit_processes, config.limit_memory,
                                              config.use_cgroups, self.telemetry.log)
        self.supervisor = JobSupervisor(
            SupervisionLimits(config.job_timeout, config.kill_grace, config.limit_processes),
            on_end=self._on_exit, log=self.telemetry.log, containment=self.containment)
        self._scheduler: threading.Thread | None = None
        self._stopping = False
        self._closed = False
        self._hold_starts_until = 0.0         # monotonic; set when a RUN could not be journalled
        self._call = threading.local()        # the RPC being served by this thread (see `serving`)
        self.retention = Retention(root, self.journal, self.store,
                                   RetentionPolicy(config.retain_age, config.retain_bytes),
                                   config.gc_interval, self.telemetry.log)
        self.telemetry.watch_core(self.counts)

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        self.telemetry.log("containment", mode=self.containment.name, how=self.containment.describe())
        self._recover()
        self.on_recovered()
        with self._lock:
            running = set(self._busy)
        stale = self.supervisor.sweep(running)  # cgroups of jobs that ended while the agent was down
        if stale:
            self.telemetry.log("containment", event="cleaned up", jobs=len(stale), first=stale[0])
        self.interpreters.available()  # probe once, now, not during the first RunJob
        self._scheduler = threading.Thread(target=self._schedule_loop, name="agent-scheduler", daemon=True)
        self._scheduler.start()
        self.retention.start()  # background passes, when a policy is set

    def close(self, stop_jobs: bool | None = None, timeout: float = 10.0) -> None:
        """Stop scheduling. Running jobs are left running (adopted at the next start) unless
        `stop_jobs` (default: config.stop_jobs_on_exit), then they end DONE (interrupted)."""
        stop = self.config.stop_jobs_on_exit if stop_jobs is None else stop_jobs
        self.retention.stop(timeout)
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
            self.supervisor.join(timeout)
        left = self.pending_ends.stop()
        if left:
            self.telemetry.log("journal", event="ends not recorded at stop", jobs=left,
                               note="the next start records them DONE: their processes are gone")
        with self._lock:
            self._closed = True
            self.journal.close()
        self.containment.close()  # the agent's cgroup directories, when no job is left in them
        self.state_lock.release()

    def _journal_error(self, op: str, exc: BaseException) -> None:
        """The cause of a journal write that failed, for the log (the wire says only RESOURCE_EXHAUSTED
        or UNAVAILABLE, never SQLite's text)."""
        self.telemetry.log("error", where="journal", op=op, disk_full=is_disk_full(exc), error=str(exc)[:200])

    @contextmanager
    def serving(self, alive: Callable[[], bool]):
        """While the servicer serves one RPC on this thread: `alive()` says whether its client
        still waits (False once cancelled or past its deadline); long staging stops then."""
        self._call.alive = alive
        try:
            yield
        finally:
            self._call.alive = None

    def _caller_waiting(self) -> bool:
        alive = getattr(self._call, "alive", None)
        return alive is None or alive()

    def _copy_may_go_on(self) -> bool:
        """Asked between chunks of one file's copy (not a hook: `_caller_waiting` is the one that
        decides between files): False once the client of this RPC stopped waiting."""
        return AgentCore._caller_waiting(self)

    # --- requests (the servicer calls these) ----------------------------------------------
    def parse_stage_request(self, message) -> StageRequest:
        return validation.validate_stage_request(message)

    def parse_run_request(self, message) -> RunRequest:
        return validation.validate_run_request(message)

    def stage_in(self, req: StageRequest) -> list[str]:
        """Stage files for a job not yet submitted; return those staged, once each (AGT-STAGE-1).

        Files are journalled in chunks (one transaction each) and count as staged once their
        chunk is committed. When the client stops waiting (deadline, cancel) staging stops
        after committing what was placed: those files stay staged (AGT-STAGE-2 lists them on a
        repeat). A full disk ends the call with RESOURCE_EXHAUSTED, earlier chunks kept."""
        with self._submission_lock(req.job), self.journal.deferring():
            self.check_stage_allowed(req.job)
            staged, placed = [], []
            flushed_at = time.monotonic()
            for file in self.unique_files(req.files):
                if self._is_staged(req.job, file):
                    staged.append(file)
                    continue
                if len(placed) >= STAGE_CHUNK or time.monotonic() - flushed_at > STAGE_CHUNK_SECONDS:
                    self._record_staged(req.job, placed)
                    flushed_at, placed = time.monotonic(), []
                    if not self._caller_waiting():
                        break
                if self.stage_file(req.job, file):
                    staged.append(file)
                    placed.append(file)
            self._record_staged(req.job, placed)
            return staged

    def _record_staged(self, job_id: str, files: list[str]) -> None:
        """Journal placed files as staged (one transaction), then make them visible."""
        if not files:
            return  # and no entry for the job: refused or empty requests leave nothing behind
        self.journal.add_staged_many(job_id, files)  # StorageError: none of these is staged
        with self._lock:
            known = self._staged.setdefault(job_id, {})
            for file in files:
                known[file] = None
        self.telemetry.staged_files.inc(len(files))
        self.telemetry.log("stage", job=job_id, files=len(files), first=files[0], ok=True)

    def run_job(self, req: RunRequest) -> JobState:
        """Submit a new job (AGT-RUN-1..6) or answer a status query (AGT-RUN-7/8)."""
        job = self._lookup(req.job)
        if job is not None:
            return self.status_query(job, req)
        with self._submission_lock(req.job):  # one submission per id, however many callers (AGT-RUN-9)
            job = self._lookup(req.job)
            if job is not None:
                return self.status_query(job, req)
            return self.submit(req)

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

    def check_stage_allowed(self, job_id: str) -> None:
        submission.check_stage_allowed(job_id, self._lookup(job_id) is not None)

    def unique_files(self, files) -> list[str]:
        return validation.dedupe(files)

    def _is_staged(self, job_id: str, file: str) -> bool:
        with self._lock:
            return file in self._staged.get(job_id, {})

    def stage_file(self, job_id: str, file: str) -> bool:
        """Copy one file from the source (or the cache) into the job's directory; True when
        placed (stage_in then journals it). A file the source does not give (SourceError) is
        not staged; a write that fails in the agent's own directories raises StorageError
        (RESOURCE_EXHAUSTED when the disk is full, else UNAVAILABLE): that is not a file
        absent from the source."""
        try:
            self.store.place(file, self._workdir(job_id), active=self._copy_may_go_on)
        except (SourceError, OSError) as exc:
            # copy_file_range both reads and writes: the source wraps its ENOSPC in a SourceError.
            full = isinstance(exc, SourceError) and "No space left" in str(exc)
            if full or not isinstance(exc, SourceError):
                self._journal_error("stage", exc)
                raise StorageError(OSError(28, str(exc)) if full else exc,
                                   f"file {file} for job {job_id}") from None
            self.telemetry.log("stage", job=job_id, file=file, ok=False, error=str(exc))
            return False
        return True

    # --- submission hooks -------------------------------------------------------------------
    def status_query(self, job: Job, req: RunRequest) -> JobState:
        self.check_repeat(job, req)
        return self.report_state(job)

    def check_repeat(self, job: Job, req: RunRequest) -> None:
        submission.check_repeat(req, job.files, job.requirements)

    def submit(self, req: RunRequest) -> JobState:
        self.check_has_files(req)
        self.check_staged(req.job, req.files)
        interpreter = self.choose_interpreter(req)
        job = self._create_job(req, interpreter)
        return self.report_state(job)

    def check_has_files(self, req: RunRequest) -> None:
        submission.check_has_files(req)

    def check_staged(self, job_id: str, files) -> None:
        with self._lock:
            staged = set(self._staged.get(job_id, {}))
        submission.check_staged(job_id, files, staged)

    def choose_interpreter(self, req: RunRequest) -> Interpreter:
        chosen = self.interpreters.choose(req.requirements)
        if chosen is None:
            raise errors.no_interpreter(req.requirement_texts, self.interpreters.versions())
        return chosen

    def _create_job(self, req: RunRequest, interpreter: Interpreter) -> Job:
        base = self.jobs_dir / checked_name(req.job)
        workdir = self._workdir(req.job)
        try:
            private_dir(workdir)
        except OSError as exc:
            self._journal_error("submit", exc)
            raise StorageError(exc, f"job {req.job}") from None
        now = time.time()
        row = JobRow(0, req.job, tuple(req.files), tuple(req.requirement_texts), interpreter.path,
                     interpreter.version, int(JobState.WAIT), None, None, None, None, None, now, None, None,
                     str(workdir), str(base / "stdout"), str(base / "stderr"))
        with self._wake:
            # Journal first: a crash now still runs it later; StorageError: nothing was submitted.
            row.seq = self.journal.insert_row(row)
            job = Job.from_row(row)
            self._jobs[req.job] = job
            self._queue.append(req.job)
            self.telemetry.log("job", job=req.job, old=None, new="WAIT", event="submit",
                               python=interpreter.version, interpreter=interpreter.path)
            now_startable = self._take_next()  # a free slot: start here, no scheduler wake-up
            self._wake.notify_all()
        if now_startable is not None:
            self._start_safely(now_startable)
        return job

    def report_state(self, job: Job) -> JobState:
        with self._lock:
            return job.state

    def _workdir(self, job_id: str) -> Path:
        return self.jobs_dir / checked_name(job_id) / "work"

    # --- scheduling hooks -------------------------------------------------------------------
    def free_slots(self) -> int:
        return self.config.slots - len(self._busy)

    def next_job(self) -> Job | None:
        """The job to start next: the oldest waiting one (AGT-SCHED-3). Called under the lock."""
        return self._jobs[self._queue[0]] if self._queue else None

    def _take_next(self) -> Job | None:
        """Under the lock: the job to start now, out of the queue and holding a slot, or None."""
        if self._stopping or self.free_slots() <= 0 or time.monotonic() < self._hold_starts_until:
            return None
        job = self.next_job()
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
                    held = self._hold_starts_until - time.monotonic()
                    self._wake.wait(held if held > 0 and self._queue else None)
            self._start_safely(job)

    def _start_safely(self, job: Job) -> None:
        try:
            self.start_job(job)
        except Exception as exc:  # noqa: BLE001 - the scheduler must outlive any one job
            self.telemetry.log("error", where="scheduler", job=job.job, error=repr(exc))

    def launch(self, job: Job) -> Launch:
        """Create the job's process, paused until `go()`; no bookkeeping (see start_job)."""
        if self.job_user is not None:  # its work directory is the one place the job user may write
            # Search-only (0711) on the way there: Python opens the entry point by absolute path.
            # Listing stays refused, and every other job's directory, the cache and the journal
            # stay the agent's own (0700/0600).
            for directory in (self.root, self.jobs_dir, job.workdir.parent):
                os.chmod(directory, 0o711)
            os.chown(job.workdir, self.job_user.uid, self.job_user.gid, follow_symlinks=False)
        return Launch(job.interpreter, job.files[0], job.workdir, job.stdout, job.stderr,
                      job.status_file, clean_env(job.workdir, self.config.job_env), self.limits,
                      user=self.job_user)

    def start_job(self, job: Job) -> None:
        """Launch the job's process paused, journal RUN with its pid, then let it go."""
        try:
            launch = self.launch(job)
            self.supervisor.contain(job, launch)  # into its cgroup before it runs anything
        except Exception as exc:  # noqa: BLE001 - e.g. the interpreter vanished: DONE (failed)
            self._fail_start(job, exc)
            return
        try:
            with self._lock:
                started = time.time()
                self._transition(job, Event.START, pid=launch.pid, proc_start=launch.identity,
                                 started=started)
                job.pid, job.started = launch.pid, started
        except StorageError as exc:  # RUN not journalled (disk full): it waits, first in line
            launch.abort()
            self._requeue(job, exc)
            return
        except Exception as exc:  # noqa: BLE001 - not journalled as RUN: it must never run
            launch.abort()
            self._fail_start(job, exc)
            return
        launch.go()
        self._watch(job, launch=launch)

    def _requeue(self, job: Job, exc: BaseException) -> None:
        """A job whose RUN could not be journalled goes back to the head of the queue and its slot
        is freed; no job starts for START_RETRY_SECONDS (its RUN could not be journalled either)."""
        with self._wake:
            self._busy.discard(job.job)
            if job.state is JobState.WAIT and job.job not in self._queue:
                self._queue.appendleft(job.job)
            self._hold_starts_until = time.monotonic() + START_RETRY_SECONDS
            self._wake.notify_all()
        self.telemetry.log("job", job=job.job, old="WAIT", new="WAIT", event="start deferred",
                           error=str(exc)[:200])

    def _fail_start(self, job: Job, exc: BaseException) -> None:
        if is_disk_full(exc):  # the agent's disk, not the job: try again later
            self._requeue(job, exc)
            return
        with self._wake:
            try:
                now = time.time()
                if job.state is JobState.WAIT:
                    self._transition(job, Event.START, started=now)
                self._transition(job, Event.FAIL, ended=now, note=f"could not start: {str(exc)[:300]}")
            except StorageError as store_exc:  # its RUN could not be journalled: nothing changed
                self._requeue(job, store_exc)
            finally:
                self._busy.discard(job.job)
                self._wake.notify_all()

    def _transition(self, job: Job, event: Event, **columns) -> None:
        """Journal the new state, then make it visible (AGT-STATE-1 via the one state machine)."""
        old = job.state
        new, reason = next_state(old, event)
        values = dict(state=int(new), reason=reason.value if reason else None, **columns)
        try:
            self.journal.update_job(job.job, **values)
        except StorageError:
            if not (old is JobState.RUN and new is JobState.DONE):
                raise  # nothing changed: the caller answers or retries
            # The process has ended: a fact that a restart would also find (RUN in the journal,
            # process gone -> DONE). Report it and free the slot now; write the record later.
            self.pending_ends.add(job.job, values)
        job.machine.advance(event)
        extra = {k: v for k, v in columns.items() if k in ("pid", "exit_status", "note") and v is not None}
        self.telemetry.job_transition(job.job, old, new, event.value,
                                      reason=reason.value if reason else None, **extra)

    # --- process ends (reported by self.supervisor) -----------------------------------------
    def _watch(self, job: Job, launch: Launch | None = None, adopted: Adopted | None = None) -> None:
        self.supervisor.watch(job, launch=launch, adopted=adopted)

    def _exit_event(self, job: Job, returncode: int | None, status: int | None) -> Event:
        return exit_event(job.kill_reason, returncode, status)

    def _reclaim_workdir(self, job: Job) -> None:
        """With --job-user: an ended job's work directory goes back to the agent's user, so that
        later jobs (the same job user) cannot enter it."""
        if self.job_user is not None:
            try:
                os.chown(job.workdir, os.geteuid(), os.getegid(), follow_symlinks=False)
            except OSError:
                pass

    def _on_exit(self, job: Job, returncode: int | None, status: int | None) -> None:
        self._reclaim_workdir(job)
        with self._wake:
            if self._closed or job.machine.done:
                return  # closed: the next start finds the ended process and records it
            event = self._exit_event(job, returncode, status)
            job.exit_status = status if status is not None else returncode
            job.ended = time.time()
            note = f"killed: {job.kill_reason}" if job.kill_reason else None
            self._transition(job, event, exit_status=job.exit_status, ended=job.ended, note=note)
            self._busy.discard(job.job)
            self._wake.notify_all()

    # --- public extension hooks (docs/AGENT.md "Extension hooks"): snapshots and a recovery hook, so
    # a subclass never touches the core's lock or tables ----------------------------------------
    def waiting_jobs(self) -> list[Job]:
        """The jobs in WAIT, oldest submission first (a snapshot taken under the core's lock)."""
        with self._lock:
            return [self._jobs[j] for j in self._queue]

    def unsubmitted_staging(self) -> dict[str, list[str]]:
        """Job id -> the files staged for it, for every job not submitted yet (a snapshot)."""
        with self._lock:
            return {j: list(files) for j, files in self._staged.items() if j not in self._jobs}

    def discard_job(self, job_id: str) -> None:
        """Drop a DONE job from memory (not from the journal): the core answers as if it never existed."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is not None and job.state is not JobState.DONE:
                raise ValueError(f"job {job_id} is {job.state.name}: only a DONE job can be discarded")
            self._jobs.pop(job_id, None)

    def on_recovered(self) -> None:
        """Called once by start() after recovery from the journal, before the scheduler runs. Does nothing."""

    # --- recovery (AGT-DUR-1) -----------------------------------------------------------------
    def _recover(self) -> None:
        with self._wake:
            for file_job, file in self.journal.staged():
                self._staged.setdefault(file_job, {})[file] = None
            for row in self.journal.jobs():
                job = self._restore_job(row)
                self._jobs[job.job] = job
                if job.state is JobState.WAIT:
                    self._queue.append(job.job)
                elif job.state is JobState.RUN:
                    self._resume_running(job, row)

    def _resume_running(self, job: Job, row: JobRow) -> None:
        """Adopt a RUN job whose process is alive; otherwise it ended while we were away (and
        what it left in its cgroup is killed; by pid only an adopted leader is trusted)."""
        if self.supervisor.adopt(job, row.pid, row.proc_start):
            self._busy.add(job.job)
            self.telemetry.log("job", job=job.job, old="RUN", new="RUN", event="adopt", pid=row.pid)
            return
        self.supervisor.clean_up(job.job, None)
        self._reclaim_workdir(job)
        status = read_status(job.status_file)
        event = Event.INTERRUPT if status is None else (Event.SUCCEED if status == 0 else Event.FAIL)
        job.exit_status, job.ended = status, time.time()
        self._transition(job, event, exit_status=status, ended=job.ended,
                         note="ended while the agent was down")

    def _restore_job(self, row: JobRow) -> Job:
        return Job.from_row(row)
