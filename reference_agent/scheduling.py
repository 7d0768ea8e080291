"""The FIFO scheduler: slots, the queue, starting a job's process and freeing its slot at its end."""
from __future__ import annotations

import threading
import time
from typing import Callable

from protos.states import Event, JobState
from reference_agent.hooks import AgentHooks
from reference_agent.job import Job
from reference_agent.journal import StorageError
from reference_agent.launchretry import JobCannotStart, StartBackoff, cause
from reference_agent.processes import INTERPRETER_NOT_RUN, LauncherLost
from reference_agent.supervision import JobSupervisor, exit_event
from reference_agent.tables import JobTables
from reference_agent.telemetry import Telemetry
from reference_agent.transitions import Transitions

# After a RUN could not be journalled (disk full), no job starts for this long.
START_RETRY_SECONDS = 0.2


class Scheduler:
    """Starts the oldest waiting job whenever a slot is free (AGT-SCHED-1..3).

    The decisions are the core's hooks (`free_slots`, `next_job`, `launch`, `start_job`); this
    object owns the mechanics: the scheduler thread, the hold after a RUN that could not be
    journalled, the start itself, and the end of each process (reported by the supervisor)."""

    def __init__(self, tables: JobTables, hooks: AgentHooks, transitions: Transitions,
                 supervisor: JobSupervisor, telemetry: Telemetry, reclaim: Callable[[Job], None]):
        self.tables, self.hooks, self.transitions = tables, hooks, transitions
        self.supervisor, self.telemetry, self.reclaim = supervisor, telemetry, reclaim
        self.stopping = False
        self.closed = False
        self.hold_starts_until = 0.0  # monotonic; set when the agent could not start a job
        self.backoff = StartBackoff(START_RETRY_SECONDS)  # doubles while starts keep failing for the agent's reasons
        self._thread: threading.Thread | None = None

    # --- the thread ------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="agent-scheduler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """No job starts any more; a launch in progress completes first."""
        with self.tables.wake:
            self.stopping = True
            self.tables.wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        wake = self.tables.wake
        while True:
            with wake:
                while (job := self.take_next()) is None:
                    if self.stopping:
                        return
                    held = self.hold_starts_until - time.monotonic()
                    wake.wait(held if held > 0 and self.tables.queue else None)
            self.start_safely(job)

    def take_next(self) -> Job | None:
        """Under the lock: the job to start now, out of the queue and holding a slot, or None."""
        if self.stopping or self.hooks.free_slots() <= 0 or time.monotonic() < self.hold_starts_until:
            return None
        job = self.hooks.next_job()
        if job is not None:
            self.tables.queue.remove(job.job)
            self.tables.busy.add(job.job)
        return job

    def enqueue(self, job: Job) -> Job | None:
        """Under the lock: a new WAIT job joins the queue; returns it (or another) when a slot is
        free now, for the caller to start at once, outside the lock (no scheduler wake-up)."""
        self.tables.jobs[job.job] = job
        self.tables.queue.append(job.job)
        startable = self.take_next()
        self.tables.wake.notify_all()
        return startable

    def start_safely(self, job: Job) -> None:
        try:
            self.hooks.start_job(job)
        except Exception as exc:  # noqa: BLE001 - the scheduler must outlive any one job
            self.telemetry.log("error", where="scheduler", job=job.job, error=repr(exc))

    # --- one start -------------------------------------------------------------------------
    def start_job(self, job: Job) -> None:
        """Launch the job's process paused, journal RUN with its pid, then let it go."""
        try:
            launch = self.hooks.launch(job)
        except JobCannotStart as exc:  # the job's own defect (e.g. no entry file): DONE (failed)
            self.fail_start(job, exc)
            return
        except Exception as exc:  # noqa: BLE001 - EMFILE, EROFS, EAGAIN...: the agent's, it waits
            self.requeue(job, exc)
            return
        try:
            self.supervisor.contain(job, launch)  # into its cgroup before it runs anything
            # The reaper's thread exists before the job may run: a thread refused after `go`
            # (a process limit) would leave a running job that nobody reports DONE.
            watcher = self.supervisor.prepare(job, launch)
        except Exception as exc:  # noqa: BLE001 - the agent's: the paused launcher ends unrun, it waits
            launch.abort()
            self.requeue(job, exc)
            return
        try:  # RUN only once the job's interpreter runs, paused (AGT-STATE-2: RUN means started)
            launch.wait_ready()
        except Exception as exc:  # noqa: BLE001 - died or stalled before anything of the job ran
            watcher.cancel()
            launch.abort()
            if isinstance(exc, LauncherLost) and exc.returncode in INTERPRETER_NOT_RUN:
                self.fail_start(job, JobCannotStart(f"its interpreter {job.interpreter} could not be run "
                                                    f"(the shell's exit {exc.returncode})"))
            else:  # a fork child aborted at a process limit, a mount refused...: the agent's, it waits
                self.requeue(job, exc)
            return
        try:
            with self.tables.lock:
                self.transitions.apply(job, Event.START, pid=launch.pid, proc_start=launch.identity,
                                       started=time.time())
        except Exception as exc:  # noqa: BLE001 - RUN not journalled (disk full...): never runs; it waits
            watcher.cancel()
            launch.abort()
            self.requeue(job, exc)
            return
        self.backoff.succeeded()
        launch.go()
        watcher.release()

    def requeue(self, job: Job, exc: BaseException) -> None:
        """The agent could not start the job (its RUN not journalled, EMFILE, EROFS, fork refused):
        the job has not ended. It goes back to the head of the queue, WAIT, its slot freed; no job
        starts before the backoff's delay (START_RETRY_SECONDS, doubling up to launchretry.MAX_DELAY
        while starts keep failing). The cause is logged and counted (agent_start_faults)."""
        tables = self.tables
        label = cause(exc)
        with tables.wake:
            tables.busy.discard(job.job)
            if job.state is JobState.WAIT and job.job not in tables.queue:
                tables.queue.appendleft(job.job)
            self.hold_starts_until = self.backoff.failed()
            tables.wake.notify_all()
        self.telemetry.start_faults.labels(label).inc()
        self.telemetry.log("job", job=job.job, old="WAIT", new="WAIT", event="start deferred", cause=label,
                           retry_in=round(self.hold_starts_until - time.monotonic(), 3), error=str(exc)[:200])

    def fail_start(self, job: Job, exc: JobCannotStart) -> None:
        """A job that can never start, by a defect of its own: DONE (failed), the reason in its note."""
        with self.tables.wake:
            try:
                now = time.time()
                if job.state is JobState.WAIT:
                    self.transitions.apply(job, Event.START, started=now)
                self.transitions.apply(job, Event.FAIL, ended=now, note=f"could not start: {str(exc)[:300]}")
            except StorageError as store_exc:  # its RUN could not be journalled: nothing changed
                self.requeue(job, store_exc)
            finally:
                self.tables.busy.discard(job.job)
                self.tables.wake.notify_all()

    # --- one end (reported by the supervisor) ------------------------------------------------
    def on_exit(self, job: Job, returncode: int | None, status: int | None) -> None:
        """DONE at once (AGT-STATE-3), its slot freed."""
        self.reclaim(job)
        with self.tables.wake:
            if self.closed or job.machine.done:
                return  # closed: the next start finds the ended process and records it
            event = exit_event(job.kill_reason, returncode, status)
            exit_status = status if status is not None else returncode
            note = f"killed: {job.kill_reason}" if job.kill_reason else None
            self.transitions.apply(job, event, exit_status=exit_status, ended=time.time(), note=note)
            self.tables.busy.discard(job.job)
            self.tables.wake.notify_all()
