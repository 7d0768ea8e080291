"""Supervision of job processes (their end, the wall-clock limit) and recovery from the journal."""
from __future__ import annotations

import os
import threading
import time

from protos.states import Event, JobState
from reference_agent.containment import kill_session, wait_contained
from reference_agent.journal import JobRow
from reference_agent.processes import NOT_LAUNCHED, Adopted, Launch, kill_group, read_status, wait_fd


class JobSupervisor:
    """Mixin of AgentCore: one reaper thread per running job waits on a pidfd (DONE is reported
    as soon as the process ends, AGT-STATE-3), enforces --job-timeout, and classifies the end;
    `_recover()` rebuilds the jobs from the journal at start (AGT-DUR-1), adopting live ones."""

    def _watch(self, job, launch: Launch | None = None, adopted: Adopted | None = None) -> None:
        thread = threading.Thread(target=self._reap, args=(job, launch, adopted),
                                  name=f"reaper-{job.job[:8]}", daemon=True)
        with self._lock:
            self._watchers = [t for t in self._watchers if t.is_alive()] + [thread]
        thread.start()

    def _reap(self, job, launch: Launch | None, adopted: Adopted | None) -> None:
        try:
            self._wait_and_report(job, launch, adopted)
        except Exception as exc:  # noqa: BLE001 - log, and free the slot if we still can
            self.telemetry.log("error", where="reaper", job=job.job, error=repr(exc))
            if not job.machine.done:
                try:
                    self._on_exit(job, None, None)
                except Exception:  # noqa: BLE001
                    pass

    def _wait_and_report(self, job, launch: Launch | None, adopted: Adopted | None) -> None:
        """Wait for the job's process (pidfd), enforce the wall-clock and process limits, report."""
        pid, pidfd = (launch.pid, launch.pidfd) if launch else (adopted.pid, adopted.pidfd)
        limit = self.config.job_timeout
        remaining = None if limit is None else max(0.0, job.started + limit - time.time())
        outcome = wait_contained(pidfd, pid, remaining, self.config.limit_processes, job.started)
        if outcome != "ended":
            job.kill_reason = outcome  # "timeout", or "processes": more than --limit-processes
            if outcome == "processes":
                kill_session(pid)  # a fork bomb gets no grace
            else:
                kill_group(pid, 15)
            if not wait_fd(pidfd, pid, self.config.kill_grace):
                kill_group(pid)
                wait_fd(pidfd, pid, None)
        returncode = None
        if launch is not None:
            kill_session(pid)  # stragglers, also in other groups; the leader is a zombie: no pid reuse
            returncode = launch.proc.wait()
        if pidfd is not None:
            os.close(pidfd)
        self._on_exit(job, returncode, read_status(job.status_file))

    def _exit_event(self, job, returncode: int | None, status: int | None) -> Event:
        if job.kill_reason == "stop":
            return Event.INTERRUPT
        if job.kill_reason:
            return Event.KILL
        if status is not None:
            return Event.SUCCEED if status == 0 else Event.FAIL
        if returncode is None or returncode == NOT_LAUNCHED:
            return Event.INTERRUPT
        return Event.KILL if returncode < 0 else Event.FAIL

    def _on_exit(self, job, returncode: int | None, status: int | None) -> None:
        with self._wake:
            if self._closed:
                return  # the next start finds the ended process and records it
            event = self._exit_event(job, returncode, status)
            job.exit_status = status if status is not None else returncode
            job.ended = time.time()
            note = f"killed: {job.kill_reason}" if job.kill_reason else None
            self._transition(job, event, exit_status=job.exit_status, ended=job.ended, note=note)
            self._busy.discard(job.job)
            self._wake.notify_all()

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

    def _resume_running(self, job, row: JobRow) -> None:
        """Adopt a RUN job whose process is alive; otherwise it ended while we were away."""
        adopted = Adopted.attach(row.pid, row.proc_start)
        if adopted is not None:
            self._busy.add(job.job)
            self.telemetry.log("job", job=job.job, old="RUN", new="RUN", event="adopt", pid=row.pid)
            self._watch(job, adopted=adopted)
            return
        status = read_status(job.status_file)
        event = Event.INTERRUPT if status is None else (Event.SUCCEED if status == 0 else Event.FAIL)
        job.exit_status, job.ended = status, time.time()
        self._transition(job, event, exit_status=status, ended=job.ended,
                         note="ended while the agent was down")
