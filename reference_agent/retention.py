"""Retention: DONE jobs' directories and cache entries removed by age and total size, in the
background and by `reference-agent gc`. The journal keeps every job's row (AGT-DUR-1, AGT-RUN-7)."""
from __future__ import annotations

import os
import shutil
import stat
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, ContextManager, Iterable

from protos.states import JobState
from protos.validation import is_uuid


@dataclass(frozen=True)
class RetentionPolicy:
    """What to keep. `max_age` seconds: DONE jobs' directories (by their end) and cache entries
    (by their fetch) older than this go. `max_bytes`: while jobs/ and cache/ hold more, the
    oldest DONE jobs' directories go first, then the oldest cache entries. None: no bound."""

    max_age: float | None = None
    max_bytes: int | None = None

    def __post_init__(self):
        if self.max_age is not None and not (self.max_age > 0 and self.max_age != float("inf")):
            raise ValueError(f"retention max age {self.max_age!r}: must be a finite number of seconds > 0")
        if self.max_bytes is not None and self.max_bytes < 1:
            raise ValueError(f"retention max bytes {self.max_bytes!r}: must be >= 1")

    @property
    def active(self) -> bool:
        return self.max_age is not None or self.max_bytes is not None


@dataclass(frozen=True)
class Removal:
    kind: str    # "job" (its directory: inputs, outputs) or "cache" (one entry)
    name: str    # the job's or the file's UUID
    bytes: int
    age: float   # seconds
    why: str     # "age" or "size"


@dataclass
class GcReport:
    removed: list[Removal] = field(default_factory=list)
    total_before: int = 0
    total_after: int = 0
    protected: int = 0        # cache entries kept because a WAIT or unsubmitted job staged them
    dry_run: bool = False
    skipped: str | None = None  # what was not considered, and why

    def summary(self) -> str:
        jobs = sum(1 for r in self.removed if r.kind == "job")
        verb = "would remove" if self.dry_run else "removed"
        text = (f"{verb} {jobs} job directories and {len(self.removed) - jobs} cache entries, "
                f"{sum(r.bytes for r in self.removed)} bytes; {self.total_before} -> {self.total_after} "
                f"bytes in jobs/ and cache/; {self.protected} cache entries kept for waiting or "
                f"unsubmitted jobs")
        return text + (f"; {self.skipped}" if self.skipped else "")

    def as_dict(self) -> dict:
        return {**asdict(self), "summary": self.summary()}


def tree_bytes(path: Path) -> int:
    """Bytes allocated under path, never following symlinks (a job may plant them)."""
    total = 0
    for directory, dirs, files in os.walk(path):
        for name in dirs + files:
            try:
                st = os.lstat(os.path.join(directory, name))
            except OSError:
                continue
            if not stat.S_ISDIR(st.st_mode):
                total += st.st_blocks * 512
    return total


def plan(root: Path, rows, staged: Iterable[tuple[str, str]], policy: RetentionPolicy,
         now: float | None = None, include_cache: bool = True) -> GcReport:
    """What the policy removes, from the journal's rows and staged files and what is on disk."""
    now = time.time() if now is None else now
    report = GcReport()
    states = {row.job: row for row in rows}
    done = [r for r in rows if r.state == JobState.DONE and (root / "jobs" / r.job).is_dir()]
    # Files staged for a job that is not DONE (WAIT, RUN, or not submitted yet): never removed.
    protected = {file for job, file in staged if job not in states or states[job].state != JobState.DONE}
    jobs = [(r.job, tree_bytes(root / "jobs" / r.job), now - (r.ended or r.submitted)) for r in done]
    others = tree_bytes(root / "jobs") - sum(size for _, size, _ in jobs)
    cache = []
    for entry in _cache_entries(root / "cache"):
        if entry[0] in protected:
            report.protected += 1
        cache.append((*entry, now - entry[2]))
    total = others + sum(s for _, s, _ in jobs) + sum(c[1] for c in cache)
    report.total_before = report.total_after = total
    candidates = sorted(((age, "job", name, size) for name, size, age in jobs), reverse=True)
    if include_cache:
        candidates += sorted(((age, "cache", name, size) for name, size, _, age in cache
                              if name not in protected), reverse=True)
    else:
        report.skipped = "cache entries not considered: a running agent owns the cache"
    for age, kind, name, size in candidates:
        if policy.max_age is not None and age > policy.max_age:
            why = "age"
        elif policy.max_bytes is not None and report.total_after > policy.max_bytes:
            why = "size"
        else:
            continue
        report.removed.append(Removal(kind, name, size, round(age, 3), why))
        report.total_after -= size
    return report


def _cache_entries(cache_dir: Path) -> list[tuple[str, int, float]]:
    out = []
    try:
        entries = list(os.scandir(cache_dir))
    except FileNotFoundError:
        return out
    for entry in entries:
        if is_uuid(entry.name) and entry.is_file(follow_symlinks=False):
            st = entry.stat(follow_symlinks=False)
            out.append((entry.name, st.st_blocks * 512, st.st_mtime))
    return out


def apply(root: Path, report: GcReport, cache_lock: Callable[[str], ContextManager] | None = None,
          forget: Callable[[str], None] | None = None) -> None:
    """Remove what `report` names. A cache entry is removed under `cache_lock(file)` (the
    agent's own lock, so no placement reads it meanwhile); a job's directory with rmtree, which
    never follows symlinks."""
    for removal in report.removed:
        if removal.kind == "job":
            shutil.rmtree(root / "jobs" / removal.name, ignore_errors=True)
            continue
        lock = cache_lock(removal.name) if cache_lock else _nothing()
        with lock:
            try:
                os.unlink(root / "cache" / removal.name)
            except FileNotFoundError:
                pass
            if forget is not None:
                forget(removal.name)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class Retention:
    """The agent's background enforcement: one pass every `interval` seconds, logged.

    `clock()` is the wall-clock time ages are measured against (time.time; a test sets it ahead
    instead of sleeping); `passes` counts the passes made, `wait_passes(n)` waits for n more."""

    def __init__(self, root: Path, journal, store, policy: RetentionPolicy, interval: float, log,
                 clock: Callable[[], float] = time.time):
        self.root, self.journal, self.store = root, journal, store
        self.policy, self.interval, self.log, self.clock = policy, interval, log, clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._passed = threading.Condition()
        self.passes = 0

    def wait_passes(self, count: int, timeout: float) -> bool:
        """Wait until `count` more background passes have ended (True), or `timeout` seconds (False)."""
        with self._passed:
            target = self.passes + count
            return self._passed.wait_for(lambda: self.passes >= target, timeout)

    def run_once(self, dry_run: bool = False) -> GcReport:
        report = plan(self.root, self.journal.jobs(), list(self.journal.staged()), self.policy, now=self.clock())
        report.dry_run = dry_run
        if not dry_run:
            apply(self.root, report, self.store.lock, self.store.forget)
        if report.removed:
            self.log("retention", **{k: v for k, v in report.as_dict().items() if k != "removed"},
                     first=report.removed[0].name)
        return report

    def start(self) -> None:
        if not self.policy.active:
            return
        self._thread = threading.Thread(target=self._loop, name="agent-retention", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.run_once()
            except Exception as exc:  # noqa: BLE001 - the next pass tries again
                self.log("error", where="retention", error=repr(exc)[:300])
            with self._passed:
                self.passes += 1
                self._passed.notify_all()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
