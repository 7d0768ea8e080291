"""The core's in-memory tables (jobs, queue, slots, staged files) and the one lock guarding them."""
from __future__ import annotations

import collections
import threading

from protos.states import JobState
from reference_agent.job import Job


class JobTables:
    """What the core knows of its jobs right now; the journal holds the same facts durably.

    `lock` (reentrant) guards every table; `wake` is its condition, notified whenever a job may
    start (a job queued, a slot freed, a hold over, the core stopping)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.wake = threading.Condition(self.lock)
        self.jobs: dict[str, Job] = {}
        self.queue: collections.deque[str] = collections.deque()  # WAIT, oldest first
        self.busy: set[str] = set()          # jobs holding a slot (starting or RUN)
        self.staged: dict[str, dict[str, None]] = {}  # job -> ordered set of staged files
        # Striped, not one per id: a lock per id ever seen grew without bound (about 200 bytes
        # for every refused or empty request with a new job id).
        self.job_locks = [threading.Lock() for _ in range(256)]

    def submission_lock(self, job_id: str) -> threading.Lock:
        return self.job_locks[hash(job_id) % len(self.job_locks)]

    def lookup(self, job_id: str) -> Job | None:
        with self.lock:
            return self.jobs.get(job_id)

    def is_staged(self, job_id: str, file: str) -> bool:
        with self.lock:
            return file in self.staged.get(job_id, {})

    def staged_set(self, job_id: str) -> set[str]:
        with self.lock:
            return set(self.staged.get(job_id, {}))

    def staged_list(self, job_id: str) -> list[str]:
        with self.lock:
            return list(self.staged.get(job_id, ()))

    def add_staged(self, job_id: str, files) -> None:
        with self.lock:
            known = self.staged.setdefault(job_id, {})
            for file in files:
                known[file] = None

    def counts(self) -> dict[str, int]:
        with self.lock:
            out = collections.Counter(j.state.name for j in self.jobs.values())
            out["queue"] = len(self.queue)
            out["busy"] = len(self.busy)
            return dict(out)

    def waiting(self) -> list[Job]:
        with self.lock:
            return [self.jobs[j] for j in self.queue]

    def running(self) -> list[Job]:
        with self.lock:
            return [self.jobs[j] for j in self.busy]

    def unsubmitted_staging(self) -> dict[str, list[str]]:
        with self.lock:
            return {j: list(files) for j, files in self.staged.items() if j not in self.jobs}

    def discard(self, job_id: str) -> None:
        with self.lock:
            job = self.jobs.get(job_id)
            if job is not None and job.state is not JobState.DONE:
                raise ValueError(f"job {job_id} is {job.state.name}: only a DONE job can be discarded")
            self.jobs.pop(job_id, None)
