"""Starts the agent could not make: whose fault a failed start is, and when to try again.

A job that never started because the agent could not start it (too many open files, a
read-only or full jobs/ directory, fork refused at a process limit, an I/O error) has not
ended: it stays WAIT, keeps its place at the head of the queue, and starts when the agent can.
Only what the job does once let go (its interpreter exits, its limits kill it) ends it DONE.
"""
from __future__ import annotations

import errno
import threading
import time

# The first retry after a failed start comes after FIRST_DELAY; each further failure doubles
# the delay up to MAX_DELAY; a successful start resets it.
FIRST_DELAY = 0.2
MAX_DELAY = 10.0


class JobCannotStart(Exception):
    """A start that fails by the job's own defect and would fail at every try (a job without an
    entry file): the job ends DONE (failed) instead of waiting forever at the head of the queue."""


def cause(exc: BaseException) -> str:
    """A short, bounded label for the metric and the log: the errno's name (EMFILE, EROFS,
    EAGAIN...) when the OS refused, else the exception's type."""
    number = getattr(exc, "errno", None)
    if isinstance(number, int) and number in errno.errorcode:
        return errno.errorcode[number]
    if isinstance(exc, RuntimeError) and "can't start new thread" in str(exc):
        return "EAGAIN"  # CPython's words for pthread_create refused, at a pids limit: EAGAIN
    cause_of = getattr(exc, "cause", None)  # a StorageError carries the OS's error
    if isinstance(cause_of, BaseException) and cause_of is not exc:
        return cause(cause_of)
    return type(exc).__name__


class StartBackoff:
    """When the next start may be tried after starts failed for the agent's own reasons.

    `failed()` records one failure and returns the monotonic time before which no job starts;
    `succeeded()` resets the delay. Thread-safe."""

    def __init__(self, first: float = FIRST_DELAY, maximum: float = MAX_DELAY,
                 clock=time.monotonic):
        self.first, self.maximum, self.clock = first, maximum, clock
        self.failures = 0
        self._lock = threading.Lock()

    def delay(self) -> float:
        with self._lock:
            return min(self.maximum, self.first * 2 ** max(0, self.failures - 1)) if self.failures else 0.0

    def failed(self) -> float:
        with self._lock:
            self.failures += 1
            delay = min(self.maximum, self.first * 2 ** (self.failures - 1))
        return self.clock() + delay

    def succeeded(self) -> None:
        with self._lock:
            self.failures = 0
