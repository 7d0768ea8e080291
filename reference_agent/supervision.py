"""Supervision of job processes: their end, the wall-clock and process limits, and containment."""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

from protos.states import Event
from reference_agent.containment import SessionContainment, wait_contained
from reference_agent.processes import NOT_LAUNCHED, Adopted, Launch, kill_group, read_status, wait_fd


class WatchedJob(Protocol):
    """What the supervisor reads of a job (reference_agent.domain.Job has it) and one thing
    it sets: `kill_reason`, when the supervisor ends the job's processes itself."""

    job: str
    started: float | None
    status_file: Path
    kill_reason: str | None


# Called once per watched job when its processes have ended: (job, returncode, exit status
# the launcher wrote). returncode is None for an adopted job (not the agent's child).
EndReport = Callable[[WatchedJob, "int | None", "int | None"], None]


def exit_event(kill_reason: str | None, returncode: int | None, status: int | None) -> Event:
    """How a job's end is classified: stopped by the agent, killed at a limit, or by its status."""
    if kill_reason == "stop":
        return Event.INTERRUPT
    if kill_reason:
        return Event.KILL
    if status is not None:
        return Event.SUCCEED if status == 0 else Event.FAIL
    if returncode is None or returncode == NOT_LAUNCHED:
        return Event.INTERRUPT
    if returncode < 0:
        return Event.KILL
    # No status file (e.g. a full disk), but the launcher exits with the job's own status.
    return Event.SUCCEED if returncode == 0 else Event.FAIL


@dataclass(frozen=True)
class SupervisionLimits:
    job_timeout: float | None  # wall clock per job, seconds
    kill_grace: float          # SIGTERM -> SIGKILL delay at the wall-clock limit
    max_processes: int | None  # more than this and the job is killed at once


class JobSupervisor:
    """One reaper thread per running job waits on a pidfd (DONE is reported as soon as the
    process ends, AGT-STATE-3), enforces the limits, kills every process the job left (its
    cgroup, or its session as the fallback: `containment`), and reports the end to `on_end`.
    Owned by AgentCore, which keeps the jobs' states; the supervisor keeps only its threads."""

    def __init__(self, limits: SupervisionLimits, on_end: EndReport, log: Callable[..., None],
                 containment: SessionContainment | None = None):
        self.limits = limits
        self.on_end = on_end
        self.log = log
        self.containment = containment or SessionContainment()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def contain(self, job: WatchedJob, launch: Launch) -> None:
        """Before the paused launcher is let go: put it where its processes will be counted."""
        self.containment.enter(job.job, launch.pid)

    def watch(self, job: WatchedJob, launch: Launch | None = None, adopted: Adopted | None = None) -> None:
        thread = threading.Thread(target=self._reap, args=(job, launch, adopted),
                                  name=f"reaper-{job.job[:8]}", daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def prepare(self, job: WatchedJob, launch: Launch) -> "PendingWatch":
        """The reaper of a launched, paused job, its thread started now (RuntimeError when no
        thread can be started) and waiting for `release()` (or `cancel()`: it ends unreported)."""
        pending = PendingWatch(self, job, launch)
        thread = threading.Thread(target=pending.run, name=f"reaper-{job.job[:8]}", daemon=True)
        thread.start()
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        return pending

    def join(self, timeout: float) -> None:
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout)

    def adopt(self, job: WatchedJob, pid: int | None, identity: str | None) -> bool:
        """Watch a job left running by an earlier agent, if its process is the one recorded."""
        adopted = Adopted.attach(pid, identity)
        if adopted is None:
            return False
        self.watch(job, adopted=adopted)
        return True

    def clean_up(self, job_id: str, pid: int | None) -> None:
        """Kill whatever a job that has ended left behind (a job that ended while the agent was
        down may have left processes in its cgroup or session) and remove its cgroup."""
        self.containment.kill_all(job_id, pid)
        self.containment.release(job_id)

    def sweep(self, running: set[str]) -> list[str]:
        """At start: clean up the cgroups of jobs that are not running. Returns their ids."""
        stale = sorted(self.containment.leftovers() - running)
        for job_id in stale:
            self.clean_up(job_id, None)
        return stale

    def _reap(self, job: WatchedJob, launch: Launch | None, adopted: Adopted | None) -> None:
        try:
            self._wait_and_report(job, launch, adopted)
        except Exception as exc:  # noqa: BLE001 - log, and free the slot if we still can
            self.log("error", where="reaper", job=job.job, error=repr(exc))
            try:
                self.on_end(job, None, None)
            except Exception:  # noqa: BLE001 - already reported DONE
                pass

    def _wait_and_report(self, job: WatchedJob, launch: Launch | None, adopted: Adopted | None) -> None:
        """Wait for the job's process (pidfd), enforce the wall-clock and process limits, report."""
        pid, pidfd = (launch.pid, launch.pidfd) if launch else (adopted.pid, adopted.pidfd)
        limit = self.limits.job_timeout
        remaining = None if limit is None else max(0.0, job.started + limit - time.time())
        outcome = wait_contained(pidfd, pid, remaining, self.limits.max_processes, job.started,
                                 count=self.containment.counter(job.job, pid))
        if outcome != "ended":
            job.kill_reason = outcome  # "timeout", or "processes": more than the limit
            if outcome == "processes":
                self.containment.kill_all(job.job, pid)  # a fork bomb gets no grace
            else:
                kill_group(pid, 15)
            if not wait_fd(pidfd, pid, self.limits.kill_grace):
                kill_group(pid)
                wait_fd(pidfd, pid, None)
        # Stragglers: its cgroup, or its session (also other groups). For the agent's own child
        # the leader is a zombie until waited for (its pid is not reused); an adopted leader is
        # gone, but a session id stays reserved while any member lives.
        self.containment.kill_all(job.job, pid)
        returncode = launch.proc.wait() if launch is not None else None
        if pidfd is not None:
            os.close(pidfd)
        self.containment.release(job.job)
        self.on_end(job, returncode, read_status(job.status_file))


class PendingWatch:
    """A reaper thread started before its job may run (JobSupervisor.prepare)."""

    def __init__(self, supervisor: JobSupervisor, job: WatchedJob, launch: Launch):
        self.supervisor, self.job, self.launch = supervisor, job, launch
        self._go = threading.Event()
        self._cancelled = False

    def run(self) -> None:
        self._go.wait()
        if not self._cancelled:
            self.supervisor._reap(self.job, self.launch, None)

    def release(self) -> None:
        self._go.set()

    def cancel(self) -> None:
        self._cancelled = True
        self._go.set()
