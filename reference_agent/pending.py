"""Job ends the journal could not record yet (disk full): kept in memory and retried until written."""
from __future__ import annotations

import threading
from typing import Callable

from reference_agent.journal import Journal, StorageError


class PendingEnds:
    """The journal updates of jobs whose process ended while the journal could not be written.

    The end is a fact (the process is gone), so the core reports it and frees the slot at once;
    only its record waits. Were the agent to die first, the next start finds the job RUN in the
    journal with its process gone and records it DONE then (AGT-DUR-1 holds either way). A
    background thread retries, every `interval` seconds doubling up to `max_interval`, until
    every pending update is written.
    """

    def __init__(self, journal: Journal, log: Callable[..., None], interval: float = 0.1,
                 max_interval: float = 2.0):
        self.journal, self.log = journal, log
        self.interval, self.max_interval = interval, max_interval
        self._updates: dict[str, dict] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __len__(self) -> int:
        with self._lock:
            return len(self._updates)

    def add(self, job: str, values: dict) -> None:
        with self._lock:
            self._updates[job] = values
            if self._thread is None:  # cleared by the thread itself, under this lock, when done
                self._thread = threading.Thread(target=self._retry, name="journal-retry", daemon=True)
                self._thread.start()

    def flush(self) -> int:
        """Try to write every pending update once, oldest first; return how many are left."""
        with self._lock:
            todo = list(self._updates.items())
        for job, values in todo:
            try:
                self.journal.update_job(job, **values)
            except StorageError:
                break
            with self._lock:
                if self._updates.get(job) is values:
                    del self._updates[job]
            self.log("journal", event="end recorded late", job=job)
        return len(self)

    def _retry(self) -> None:
        delay = self.interval
        while not self._stop.wait(delay):
            self.flush()
            with self._lock:
                if not self._updates:
                    self._thread = None
                    return
            delay = min(delay * 2, self.max_interval)

    def stop(self) -> int:
        """Stop retrying after one last try; return how many stay unrecorded (the next start
        records them from the processes' absence)."""
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(5)
        return self.flush()
