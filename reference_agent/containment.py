"""Containment of a job's processes by session: count them (a per-job process limit that holds
for root too, unlike RLIMIT_NPROC) and kill them all when the job ends or breaks a limit."""
from __future__ import annotations

import os
import signal
import time

from reference_agent.processes import wait_fd

# How often a running job's processes are counted: often while the job is young (fork bombs
# start at once), then rarely, so that a long job costs almost nothing.
# A scan of /proc costs a few milliseconds, so a job shorter than FAST_INTERVAL costs one scan
# (the cleanup at its end) and nothing more.
FAST_INTERVAL, SLOW_INTERVAL, FAST_PERIOD = 0.1, 0.5, 1.0


def session_members(sid: int) -> list[int]:
    """Pids of every process (zombies included: they hold a pid) whose session id is sid."""
    members = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return members
    for entry in entries:
        if not entry.isdigit():
            continue
        try:  # os.open/os.read: half the cost of open() for these tiny files
            fd = os.open(f"/proc/{entry}/stat", os.O_RDONLY)
            try:
                data = os.read(fd, 1024)
            finally:
                os.close(fd)
            fields = data[data.rindex(b")") + 2:].split(b" ", 4)  # state ppid pgrp session ...
            if int(fields[3]) == sid:
                members.append(int(entry))
        except (OSError, ValueError, IndexError):
            continue
    return members


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
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(min(0.001 * 2 ** attempt, 0.05))
    return len(left)


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X")
    except (OSError, IndexError):
        return True


def wait_contained(pidfd: int | None, pid: int, timeout: float | None, max_processes: int | None,
                   started: float | None = None) -> str:
    """Wait for the job whose session leader is pid: "ended" when the leader ends, "timeout"
    when `timeout` seconds pass first, "processes" as soon as the session holds more than
    `max_processes` processes. Without a process limit this is one blocking wait on the pidfd."""
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
        if len(session_members(pid)) > max_processes:
            return "processes"
        if deadline is not None and time.monotonic() >= deadline:
            return "timeout"
