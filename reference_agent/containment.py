"""Containment of a job's processes: count them (a per-job process limit that holds for root
too, unlike RLIMIT_NPROC) and kill them all when the job ends or breaks a limit. Per-job cgroups
where the machine allows them (reference_agent.cgroups), else the processes of the job's session."""
from __future__ import annotations

import collections
import os
import signal
import threading
import time
from pathlib import Path
from typing import Callable

from reference_agent.cgroups import AGENT_RESERVE, BudgetError, Cgroups, pids_cap
from reference_agent.config import StateError
from reference_agent.processes import wait_fd

# How often a running job's processes are counted: often while the job is young (fork bombs
# start at once), then rarely. A scan of /proc costs a few milliseconds, so a job shorter than
# FAST_INTERVAL costs one scan (the cleanup at its end) and a long job almost nothing.
FAST_INTERVAL, SLOW_INTERVAL, FAST_PERIOD = 0.1, 0.5, 1.0


def session_members(sid: int) -> list[int]:
    """Pids of every process (zombies included: they hold a pid) whose session id is sid."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    return session_members_of([int(e) for e in entries if e.isdigit()], sid)


class _Census:
    """Process counts of every session from one scan of /proc, shared by all the running jobs'
    watchers and refreshed at most every `max_age` seconds: the cost is one scan per interval
    however many jobs run (a scan of a few thousand processes takes tens of milliseconds)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._at = float("-inf")
        self._counts: collections.Counter = collections.Counter()

    def count(self, sid: int, max_age: float) -> int:
        with self._lock:
            if time.monotonic() - self._at > max_age:
                self._counts = collections.Counter(_sessions())
                self._at = time.monotonic()
            return self._counts[sid]


def _sessions():
    """The session id of every process, zombies included."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return
    for entry in entries:
        if entry.isdigit():
            sid = _session_of(int(entry))
            if sid is not None:
                yield sid


def _session_of(pid: int) -> int | None:
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY)
        try:
            data = os.read(fd, 1024)
        finally:
            os.close(fd)
        return int(data[data.rindex(b")") + 2:].split(b" ", 4)[3])  # state ppid pgrp session
    except (OSError, ValueError, IndexError):
        return None


CENSUS = _Census()


def kill_session(sid: int, rounds: int = 100) -> int:
    """SIGKILL the process group sid and every process of session sid, until none is left alive
    but zombies (at most `rounds` passes). Returns how many live processes were left."""
    left: list[int] = []
    for attempt in range(rounds):
        try:
            os.killpg(sid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        left = [pid for pid in session_members(sid) if pid != sid and not _zombie(pid)]
        if not left:
            return 0
        for pid in left:
            _kill_member(pid, sid)
        time.sleep(min(0.001 * 2 ** attempt, 0.05))
    return len(left)


def _kill_member(pid: int, sid: int) -> None:
    """SIGKILL pid only if it is still in session sid: the pidfd pins the process, so a pid
    reused by another process between the scan and the kill is never signalled."""
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        return
    try:
        if pid in session_members_of((pid,), sid):
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    except OSError:
        pass
    finally:
        os.close(pidfd)


def session_members_of(pids, sid: int) -> list[int]:
    """Those of pids whose session id is sid now."""
    return [pid for pid in pids if _session_of(pid) == sid]


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X")
    except (OSError, IndexError):
        return True


def wait_contained(pidfd: int | None, pid: int, timeout: float | None, max_processes: int | None,
                   started: float | None = None, count: Callable[[float], int] | None = None) -> str:
    """Wait for the job whose session leader is pid: "ended" when the leader ends, "timeout"
    when `timeout` seconds pass first, "processes" as soon as the job holds more than
    `max_processes` processes (`count(max_age)`, default: its session in the shared census).
    Without a process limit this is one blocking wait on the pidfd."""
    if count is None:
        count = lambda max_age: CENSUS.count(pid, max_age)  # noqa: E731
    if max_processes is None:
        return "ended" if wait_fd(pidfd, pid, timeout) else "timeout"
    deadline = None if timeout is None else time.monotonic() + timeout
    born = time.monotonic() - (0.0 if started is None else max(0.0, time.time() - started))
    while True:
        now = time.monotonic()
        interval = FAST_INTERVAL if now - born < FAST_PERIOD else SLOW_INTERVAL
        step = interval if deadline is None else max(0.0, min(interval, deadline - now))
        if wait_fd(pidfd, pid, step):
            return "ended"
        if count(interval / 2) > max_processes:  # at most 2 census scans per interval in all
            return "processes"
        if deadline is not None and time.monotonic() >= deadline:
            return "timeout"


class SessionContainment:
    """The fallback: a job is the processes of its session (a job that calls setsid escapes)."""

    name = "session"

    def describe(self) -> str:
        return "process sessions (no usable cgroups: a job that calls setsid escapes counting and the kill)"

    def enter(self, job: str, pid: int) -> None:
        pass

    def counter(self, job: str, pid: int) -> Callable[[float], int]:
        return lambda max_age: CENSUS.count(pid, max_age)

    def kill_all(self, job: str, pid: int | None) -> int:
        return kill_session(pid) if pid else 0

    def release(self, job: str) -> None:
        pass

    def leftovers(self) -> set[str]:
        return set()

    def close(self) -> None:
        pass


class CgroupContainment(SessionContainment):
    """Each job in its own cgroup (pids and memory limits where the v1 controllers are there):
    a process that leaves the session stays in the cgroup and is counted and killed with it.
    A job that could not be put in a cgroup is contained by session, as in the fallback."""

    name = "cgroup"

    def __init__(self, cgroups: Cgroups, max_processes: int | None, max_memory: int | None, log=None):
        self.cgroups = cgroups
        self.max_processes = max_processes
        self.max_memory = max_memory
        self.log = log or (lambda *a, **k: None)

    def describe(self) -> str:
        return self.cgroups.describe()

    def enter(self, job: str, pid: int) -> None:
        try:
            self.cgroups.create(job, self.max_processes, self.max_memory)
            self.cgroups.enter(job, pid)
        except OSError as exc:  # contained by session only; said in the log
            self.log("error", where="cgroup", job=job, error=str(exc), fallback="session")

    def _has(self, job: str) -> bool:
        return any(h.job_dir(job).is_dir() for h in self.cgroups.hierarchies)

    def counter(self, job: str, pid: int) -> Callable[[float], int]:
        if not self._has(job):
            return super().counter(job, pid)
        return lambda max_age: self.cgroups.count(job)

    def kill_all(self, job: str, pid: int | None) -> int:
        left = self.cgroups.kill(job) if self._has(job) else 0
        return left + super().kill_all(job, pid)

    def release(self, job: str) -> None:
        self.cgroups.remove(job)

    def leftovers(self) -> set[str]:
        return self.cgroups.jobs()

    def close(self) -> None:
        self.cgroups.close()


def choose_containment(state_dir: Path, max_processes: int | None, max_memory: int | None,
                       use_cgroups: bool = True, log=None) -> SessionContainment:
    """Per-job cgroups where the machine allows them, else sessions."""
    cgroups = Cgroups.find(state_dir) if use_cgroups else None
    if cgroups is None:
        return SessionContainment()
    try:
        budget = cgroups.limit_jobs()
    except BudgetError as exc:
        cgroups.close()
        raise StateError(f"cannot keep jobs off the agent's process budget: {exc}") from None
    if budget is not None and log is not None:
        log("containment", event="jobs budget", tasks=budget[0], limited_by=str(budget[1]), reserve=AGENT_RESERVE)
        if max_processes is not None and budget[0] < pids_cap(max_processes):
            log("containment", event="jobs budget below --limit-processes", tasks=budget[0],
                limit_processes=max_processes,
                note="all jobs together may hold fewer tasks than one job's limit allows")
    return CgroupContainment(cgroups, max_processes, max_memory, log)
