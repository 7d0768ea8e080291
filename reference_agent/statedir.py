"""The state directory's guards: one agent per directory (a lock), and no silent start without its journal."""
from __future__ import annotations

import errno
import fcntl
import os
import time
from pathlib import Path

from reference_agent.config import StateError

LOCK_NAME = "agent.lock"
JOURNAL_NAME = "journal.sqlite3"
# What a journal leaves beside itself (SQLite WAL mode), moved aside with it.
JOURNAL_SIDE_FILES = ("-wal", "-shm")
KEPT_DIRS = ("jobs", "cache", "tmp")


class StateLock:
    """An exclusive flock on STATE/agent.lock, which holds the holder's pid.

    flock belongs to the open file description: it ends when the agent's process ends, however
    it ends (SIGKILL too), so a stale lock file never blocks a restart. The descriptor is not
    inherited by jobs (Python opens it close-on-exec), so a job that outlives the agent does not
    keep the directory locked.
    """

    def __init__(self, root: Path):
        self.path = root / LOCK_NAME
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        except OSError as exc:  # a symlink or a directory in its place, an unwritable directory
            raise StateError(f"state directory {str(root)!r}: cannot open the lock file "
                             f"{str(self.path)!r}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_pid(fd)
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                raise StateError(f"state directory {str(root)!r}: cannot lock {self.path.name}: "
                                 f"{exc.strerror}") from None
            who = f"pid {holder}" if holder else "another process (pid not recorded yet)"
            raise StateError(
                f"state directory {str(root)!r} is in use by another agent, {who} "
                f"(it holds {str(self.path)!r}); two agents on one state directory would run the "
                f"same jobs twice. Stop that agent first, or give this one another --state-dir") from None
        try:  # the pid is for the message above; a full disk must not stop the agent here
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            pass
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text.isdigit() else None
    except OSError:
        return None


def _entries(directory: Path) -> int:
    try:
        return sum(1 for _ in os.scandir(directory))
    except FileNotFoundError:
        return 0


def check_journal_present(root: Path, accept_lost: bool, log=lambda kind, **fields: None) -> None:
    """Refuse to start when jobs/ or cache/ hold entries but the journal is missing or empty.

    Without the journal the agent would forget every job it ever accepted, and a client that
    re-submits an old job id would have it run a second time (AGT-DUR-1). With `accept_lost`
    (the operator's --accept-lost-journal) the old jobs/, cache/ and tmp/ and what is left of
    the journal are moved to STATE/lost-TIMESTAMP/ and the agent starts with an empty journal.
    """
    journal = root / JOURNAL_NAME
    try:
        size = journal.stat().st_size
    except FileNotFoundError:
        size = None
    if size:  # a journal with content: whether it opens is Journal's question
        return
    jobs, cache = _entries(root / "jobs"), _entries(root / "cache")
    if not jobs and not cache:
        return  # a new state directory (or one with nothing worth a journal)
    found = "missing" if size is None else "empty (0 bytes)"
    if not accept_lost:
        raise StateError(
            f"state directory {str(root)!r}: the journal {JOURNAL_NAME} is {found}, but jobs/ holds "
            f"{jobs} job directories and cache/ {cache} entries. Starting now would forget those jobs "
            f"and could run a re-submitted job a second time. Restore {JOURNAL_NAME} (with its -wal "
            f"file, if any) from a backup; or, to start afresh, stop every job process left from "
            f"before and start with --accept-lost-journal (the old directories are then moved to "
            f"{str(root)!r}/lost-TIMESTAMP/)")
    stamp = time.strftime("lost-%Y%m%dT%H%M%SZ", time.gmtime())
    aside, n = root / stamp, 1
    while os.path.lexists(aside):
        aside, n = root / f"{stamp}-{n}", n + 1
    aside.mkdir(mode=0o700)
    for name in (*KEPT_DIRS, JOURNAL_NAME, *(JOURNAL_NAME + s for s in JOURNAL_SIDE_FILES)):
        if os.path.lexists(root / name):
            os.replace(root / name, aside / name)
    log("state", event="accepted lost journal", journal=found, job_dirs=jobs, cache_entries=cache,
        moved_to=str(aside))
