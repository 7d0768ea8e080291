"""The agent's domain: AgentCore, the reference agent without gRPC.

AgentCore wires the parts together and carries the default of every hook (reference_agent.hooks);
the mechanics live in their own modules: `tables.py` (what is known now, under one lock),
`stagein.py` (StageInFiles), `scheduling.py` (slots, queue, starts and ends), `transitions.py`
(journal first, then visible), `recovery.py` (AGT-DUR-1)."""
from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

from protos import errors, extensions, submission, validation
from protos.states import JobState
from protos.validation import RunRequest, StageRequest

from reference_agent.cancel import Canceller
from reference_agent.config import AgentConfig
from reference_agent.containment import choose_containment
from reference_agent.copying import private_dir, private_files
from reference_agent.hooks import AgentHooks, CoreServices
from reference_agent.interpreters import Interpreter, InterpreterRegistry
from reference_agent.job import Job
from reference_agent.journal import JobRow, Journal, StorageError, is_disk_full
from reference_agent.outcomes import outcome_of
from reference_agent.pending import PendingEnds
from reference_agent.processes import Launch, Limits, clean_env, kill_group
from reference_agent.recovery import Recovery
from reference_agent.retention import Retention, RetentionPolicy
from reference_agent.launchretry import JobCannotStart
from reference_agent.scheduling import START_RETRY_SECONDS, Scheduler
from reference_agent.stagein import STAGE_CHUNK, STAGE_CHUNK_SECONDS, StageIn
from reference_agent.staging import ContentStore, checked_name, make_source
from reference_agent.statedir import JOURNAL_NAME, StateLock, check_journal_present
from reference_agent.supervision import JobSupervisor, SupervisionLimits
from reference_agent.tables import JobTables
from reference_agent.telemetry import Telemetry
from reference_agent.transitions import Transitions
from reference_agent.watch import EventHub, Subscription

__all__ = ["AgentCore", "Job", "JobRow", "START_RETRY_SECONDS", "STAGE_CHUNK", "STAGE_CHUNK_SECONDS"]


class AgentCore(AgentHooks, CoreServices):
    """The reference agent without gRPC. Thread-safe; `start()` recovers from the journal.

    Public operations take validated requests (protos.validation) and return results or raise
    protos.errors.ProtocolError. Each rule is one hook of `AgentHooks`, called through `self`,
    so a subclass can override one behaviour (the catalogue of broken agents); a subclass reads
    and changes the core's state only through `CoreServices`.
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
                                                config.discover_path, config.probe_timeout,
                                                user=self.job_user, cache_file=root / "interpreters.json",
                                                log=self.telemetry.log)
        self.limits = Limits(config.limit_address_space, config.limit_open_files, config.limit_processes)
        self._tables = JobTables()
        self._call = threading.local()        # the RPC being served by this thread (see `serving`)
        # Composition, not a mixin: the supervisor watches processes and reports ends to the scheduler.
        try:  # StateError: under a pids limit, too few tasks left for jobs (cgroups.limit_jobs)
            self.containment = choose_containment(root, config.limit_processes, config.limit_memory,
                                                  config.use_cgroups, self.telemetry.log)
        except BaseException:
            self.state_lock.release()
            raise
        self.supervisor = JobSupervisor(
            SupervisionLimits(config.job_timeout, config.kill_grace, config.limit_processes),
            on_end=self._on_exit, log=self.telemetry.log, containment=self.containment)
        self.events = EventHub()  # watch streams, fed by every transition (publish_state)
        transitions = Transitions(self.journal, self.pending_ends, self.telemetry, on_change=self.publish_state)
        self._cancels = Canceller(self._tables, transitions, self)
        self._scheduler = Scheduler(self._tables, self, transitions, self.supervisor, self.telemetry,
                                    reclaim=self._reclaim_workdir)
        self._stagein = StageIn(self._tables, self.journal, self.telemetry, self, self._caller_waiting,
                                self._journal_error)
        self._recovery = Recovery(self._tables, self.journal, self.supervisor, transitions, self.telemetry,
                                  reclaim=self._reclaim_workdir)
        self.retention = Retention(root, self.journal, self.store,
                                   RetentionPolicy(config.retain_age, config.retain_bytes),
                                   config.gc_interval, self.telemetry.log)
        self.telemetry.watch_core(self.counts)

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        self.telemetry.log("containment", mode=self.containment.name, how=self.containment.describe())
        self._recovery.recover()
        self.on_recovered()
        cancelled = self._cancels.resume()  # RUN jobs whose cancel was recorded before a crash
        if cancelled:
            self.telemetry.log("job", event="cancel resumed", jobs=len(cancelled), first=cancelled[0])
        running = {job.job for job in self._tables.running()}
        stale = self.supervisor.sweep(running)  # cgroups of jobs that ended while the agent was down
        if stale:
            self.telemetry.log("containment", event="cleaned up", jobs=len(stale), first=stale[0])
        self.interpreters.start_probing()  # in the background: the agent listens meanwhile
        self._scheduler.start()
        self.retention.start()  # background passes, when a policy is set

    def close(self, stop_jobs: bool | None = None, timeout: float = 10.0) -> None:
        """Stop scheduling. Running jobs are left running (adopted at the next start) unless
        `stop_jobs` (default: config.stop_jobs_on_exit), then they end DONE (interrupted)."""
        stop = self.config.stop_jobs_on_exit if stop_jobs is None else stop_jobs
        self.events.close()  # open watch streams end (UNAVAILABLE), none opens any more
        self.retention.stop(timeout)
        self._scheduler.stop(timeout)  # a launch in progress completes first
        if stop:
            for job in self._tables.running():
                job.kill_reason = "stop"
                if job.pid:
                    kill_group(job.pid)
            self.supervisor.join(timeout)
        left = self.pending_ends.stop()
        if left:
            self.telemetry.log("journal", event="ends not recorded at stop", jobs=left,
                               note="the next start records them DONE: their processes are gone")
        with self._tables.lock:
            self._scheduler.closed = True
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
        """Asked between chunks of one file's copy: False once the client of this RPC stopped waiting."""
        return AgentCore._caller_waiting(self)

    # --- hooks: requests and staging (AgentHooks has each one's contract) -----------------------
    def parse_stage_request(self, message) -> StageRequest:
        return validation.validate_stage_request(message)

    def parse_run_request(self, message) -> RunRequest:
        return validation.validate_run_request(message)

    def stage_in(self, req: StageRequest) -> list[str]:
        return self._stagein.stage_in(req)

    def check_stage_allowed(self, job_id: str) -> None:
        submission.check_stage_allowed(job_id, self._tables.lookup(job_id) is not None)

    def unique_files(self, files) -> list[str]:
        return validation.dedupe(files)

    def stage_file(self, job_id: str, file: str) -> bool:
        return self._stagein.place(self.store, job_id, file, self.workdir(job_id), self._copy_may_go_on)

    # --- hooks: submission ----------------------------------------------------------------------
    def run_job(self, req: RunRequest) -> JobState:
        job = self._tables.lookup(req.job)
        if job is not None:
            return self.status_query(job, req)
        with self.submission_lock(req.job):  # one submission per id, however many callers (AGT-RUN-9)
            job = self._tables.lookup(req.job)
            if job is not None:
                return self.status_query(job, req)
            return self.submit(req)

    def status_if_free(self, req: RunRequest) -> JobState | None:
        """What `run_job(req)` answers when it is a status query that needs no wait, else None.

        Called on the server's event loop (reference_agent.servicer, the reference agent only):
        it never waits for the tables' lock (a journal commit may hold it) and never submits.
        None (the work thread answers, with its errors): the lock is held, the job is unknown
        (a submission), or the repeat differs from the submission (AGT-RUN-8's error)."""
        lock = self._tables.lock
        if not lock.acquire(blocking=False):
            return None
        try:
            job = self._tables.jobs.get(req.job)
            if job is None:
                return None
            try:
                self.check_repeat(job, req)
            except errors.ProtocolError:
                return None
            return job.state
        finally:
            lock.release()

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
        submission.check_staged(job_id, files, self._tables.staged_set(job_id))

    def choose_interpreter(self, req: RunRequest) -> Interpreter:
        chosen = self.interpreters.choose(req.requirements)
        if chosen is None:
            raise errors.no_interpreter(req.requirement_texts, self.interpreters.versions())
        return chosen

    def report_state(self, job: Job) -> JobState:
        with self._tables.lock:
            return job.state

    def _create_job(self, req: RunRequest, interpreter: Interpreter) -> Job:
        """Journal first (a crash now still runs it later), then visible, then queued; started
        here when a slot is free. StorageError: nothing was submitted."""
        base = self.jobs_dir / checked_name(req.job)
        workdir = self.workdir(req.job)
        try:
            private_dir(workdir)
        except OSError as exc:
            self._journal_error("submit", exc)
            raise StorageError(exc, f"job {req.job}") from None
        row = JobRow(job=req.job, files=tuple(req.files), requirements=tuple(req.requirement_texts),
                     interpreter=interpreter.path, python_version=interpreter.version,
                     state=int(JobState.WAIT), submitted=time.time(), workdir=str(workdir),
                     stdout=str(base / "stdout"), stderr=str(base / "stderr"))
        with self._tables.wake:
            row.seq = self.journal.insert_row(row)
            job = Job.from_row(row)
            self.telemetry.log("job", job=req.job, old=None, new="WAIT", event="submit",
                               python=interpreter.version, interpreter=interpreter.path)
            now_startable = self._scheduler.enqueue(job)  # a free slot: start here, no scheduler wake-up
        if now_startable is not None:
            self._scheduler.start_safely(now_startable)
        return job

    # --- hooks: scheduling and processes ----------------------------------------------------------
    def free_slots(self) -> int:
        return self.config.slots - len(self._tables.busy)

    def next_job(self) -> Job | None:
        queue = self._tables.queue
        return self._tables.jobs[queue[0]] if queue else None

    def launch(self, job: Job) -> Launch:
        if not job.files:
            raise JobCannotStart("no files: nothing to run")  # DONE (failed); any other failure: WAIT
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
        self._scheduler.start_job(job)

    def on_recovered(self) -> None:
        """Does nothing."""

    def _on_exit(self, job: Job, returncode: int | None, status: int | None) -> None:
        self._scheduler.on_exit(job, returncode, status)

    def _reclaim_workdir(self, job: Job) -> None:
        """With --job-user: an ended job's work directory goes back to the agent's user, so that
        later jobs (the same job user) cannot enter it."""
        if self.job_user is not None:
            try:
                os.chown(job.workdir, os.geteuid(), os.getegid(), follow_symlinks=False)
            except OSError:
                pass

    # --- hooks: extensions (cancel.py, outcomes.py, watch.py own the mechanics) ----------------------
    def capabilities(self) -> tuple[str, ...]:
        return extensions.CAPABILITIES

    def get_outcome(self, job_id: str) -> extensions.Outcome:
        job = self.job(job_id)
        if job is None:
            raise extensions.unknown_jobs([job_id.lower()], "AGT-EXT-3")
        return outcome_of(job, self.report_state(job))

    def cancel_job(self, job_id: str) -> JobState:
        return self._cancels.cancel(job_id.lower())

    def record_cancel(self, job: Job, columns: dict) -> None:
        self.journal.update_job(job.job, **columns)

    def end_process_tree(self, job: Job) -> None:
        self.containment.kill_all(job.job, job.pid)

    def watch_jobs(self, job_ids: list[str], caller: str) -> Subscription:
        with self._tables.lock:  # no change between the snapshot and the subscription is lost
            known = {j: self._tables.jobs.get(j.lower()) for j in job_ids}
            missing = [j for j, job in known.items() if job is None]
            if missing:
                raise extensions.unknown_jobs(missing)
            return self.events.subscribe(caller, {j.lower(): self.report_state(job) for j, job in known.items()})

    def publish_state(self, job: Job, state: JobState) -> None:
        self.events.publish(job.job, state)

    # --- services (CoreServices has each one's contract) ------------------------------------------
    def job(self, job_id: str) -> Job | None:
        return self._tables.lookup(job_id.lower())

    def staged_files(self, job_id: str) -> list[str]:
        return self._tables.staged_list(job_id.lower())

    def counts(self) -> dict[str, int]:
        return self._tables.counts()

    def waiting_jobs(self) -> list[Job]:
        return self._tables.waiting()

    def unsubmitted_staging(self) -> dict[str, list[str]]:
        return self._tables.unsubmitted_staging()

    def discard_job(self, job_id: str) -> None:
        self._tables.discard(job_id)

    def submission_lock(self, job_id: str) -> threading.Lock:
        return self._tables.submission_lock(job_id)

    def workdir(self, job_id: str) -> Path:
        return self.jobs_dir / checked_name(job_id) / "work"
