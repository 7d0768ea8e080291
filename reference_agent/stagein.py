"""StageInFiles: files placed in a job's directory and journalled in chunks (AGT-STAGE-1..5)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from protos.validation import StageRequest
from reference_agent.hooks import AgentHooks
from reference_agent.journal import Journal, StorageError
from reference_agent.staging import ContentStore, SourceError
from reference_agent.tables import JobTables
from reference_agent.telemetry import Telemetry

# Staging records files in the journal per chunk, not per file: one commit per STAGE_CHUNK
# files or STAGE_CHUNK_SECONDS, whichever comes first (16,000 files took 52 s one by one).
STAGE_CHUNK = 2000
STAGE_CHUNK_SECONDS = 0.5


class StageIn:
    """The mechanics of staging; the decisions are the core's hooks (`check_stage_allowed`,
    `unique_files`, `stage_file`)."""

    def __init__(self, tables: JobTables, journal: Journal, telemetry: Telemetry,
                 hooks: AgentHooks, caller_waiting: Callable[[], bool],
                 journal_error: Callable[[str, BaseException], None]):
        self.tables, self.journal, self.telemetry = tables, journal, telemetry
        self.hooks, self.caller_waiting, self.journal_error = hooks, caller_waiting, journal_error

    def stage_in(self, req: StageRequest) -> list[str]:
        """Stage files for a job not yet submitted; return those staged, once each (AGT-STAGE-1).

        Files are journalled in chunks (one transaction each) and count as staged once their
        chunk is committed. When the client stops waiting (deadline, cancel) staging stops
        after committing what was placed: those files stay staged (AGT-STAGE-2 lists them on a
        repeat). A full disk ends the call with RESOURCE_EXHAUSTED, earlier chunks kept."""
        hooks = self.hooks
        with self.tables.submission_lock(req.job), self.journal.deferring():
            hooks.check_stage_allowed(req.job)
            staged, placed = [], []
            flushed_at = time.monotonic()
            for file in hooks.unique_files(req.files):
                if self.tables.is_staged(req.job, file):
                    staged.append(file)
                    continue
                if len(placed) >= STAGE_CHUNK or time.monotonic() - flushed_at > STAGE_CHUNK_SECONDS:
                    self.record(req.job, placed)
                    flushed_at, placed = time.monotonic(), []
                    if not self.caller_waiting():
                        break
                if hooks.stage_file(req.job, file):
                    staged.append(file)
                    placed.append(file)
            self.record(req.job, placed)
            return staged

    def record(self, job_id: str, files: list[str]) -> None:
        """Journal placed files as staged (one transaction), then make them visible."""
        if not files:
            return  # and no entry for the job: refused or empty requests leave nothing behind
        store = getattr(self.hooks, "store", None)
        if store is not None:
            store.sync()  # the placed files' directory entries on disk before the journal says staged
        self.journal.add_staged_many(job_id, files)  # StorageError: none of these is staged
        self.tables.add_staged(job_id, files)
        self.telemetry.staged_files.inc(len(files))
        self.telemetry.log("stage", job=job_id, files=len(files), first=files[0], ok=True)

    def place(self, store: ContentStore, job_id: str, file: str, workdir: Path,
              active: Callable[[], bool]) -> bool:
        """Copy one file from `store` (its cache, else its source) into `workdir`; True when placed. A file
        the source does not give (SourceError) is not staged; a write that fails in the agent's
        own directories raises StorageError (RESOURCE_EXHAUSTED when the disk is full, else
        UNAVAILABLE): that is not a file absent from the source."""
        try:
            store.place(file, workdir, active=active)
        except (SourceError, OSError) as exc:
            # copy_file_range both reads and writes: the source wraps its ENOSPC in a SourceError.
            full = isinstance(exc, SourceError) and "No space left" in str(exc)
            if full or not isinstance(exc, SourceError):
                self.journal_error("stage", exc)
                raise StorageError(OSError(28, str(exc)) if full else exc,
                                   f"file {file} for job {job_id}") from None
            self.telemetry.log("stage", job=job_id, file=file, ok=False, error=str(exc))
            return False
        return True
