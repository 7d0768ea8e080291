"""Broken agents whose defect shows only late in a job's life, with large inputs or after a restart: the
blind spots that the suite checks wherever a requirement applies (issue 12)."""
from __future__ import annotations

import dataclasses
import os
import time
import uuid as uuidlib

from fakes.broken._registry import register
from protos.states import JobState
from reference_agent.domain import AgentCore
from reference_agent.staging import ContentStore, SourceError, checked_name


@register
class ReportsDoneWhileRunningLater(AgentCore):
    """Reports a job DONE once it has run for AFTER seconds, while its process is still running."""

    violates = ("AGT-STATE-2",)
    AFTER = 1.5

    def report_state(self, job):
        state = super().report_state(job)
        if state is JobState.RUN and job.started is not None and time.time() - job.started > self.AFTER:
            return JobState.DONE
        return state


@register
class ForgetsSlotsAfterRestart(AgentCore):
    """At recovery starts every job that was WAIT at once, ignoring the slots that adopted jobs still hold."""

    violates = ("AGT-SCHED-1",)
    shows_in = ("test_restart_clean",)

    def __init__(self, config, telemetry=None):
        super().__init__(config, telemetry)
        self._recovered_waiting: set[str] = set()

    def on_recovered(self):
        self._recovered_waiting = {job.job for job in self.waiting_jobs()}

    def free_slots(self):  # called under the core's lock, as next_job() is
        nxt = self.next_job()
        if nxt is not None and nxt.job in self._recovered_waiting:
            self._recovered_waiting.discard(nxt.job)
            return 1
        return super().free_slots()


@register
class TruncatesLargeFiles(AgentCore):
    """Stages at most the first LIMIT bytes of a file: larger inputs are cut short in the job's directory."""

    violates = ("AGT-STAGE-3",)
    LIMIT = 1 << 20

    def stage_file(self, job_id, file):
        if not super().stage_file(job_id, file):
            return False
        dest = self.workdir(job_id) / checked_name(file)
        if dest.stat().st_size > self.LIMIT:
            with open(dest, "rb") as f:
                head = f.read(self.LIMIT)
            tmp = dest.with_name(f".tmp-{uuidlib.uuid4().hex}")
            tmp.write_bytes(head)
            os.replace(tmp, dest)
        return True


@register
class RestagesFromSourceAfterRestart(AgentCore):
    """At recovery copies the staged files of jobs not yet submitted again from the source (its current bytes)."""

    violates = ("AGT-STAGE-3",)
    shows_in = ("test_restart_clean",)

    def on_recovered(self):
        for job_id, files in self.unsubmitted_staging().items():
            for file in files:
                dest = self.workdir(job_id) / checked_name(file)
                tmp = dest.with_name(f".tmp-{uuidlib.uuid4().hex}")
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
                try:
                    self.source.copy_to(file, fd)
                except (SourceError, OSError):
                    os.close(fd)
                    tmp.unlink(missing_ok=True)
                    continue
                os.close(fd)
                os.replace(tmp, dest)


@register
class StopsStagingAfterAChunk(AgentCore):
    """A StageInFiles of more than CHUNK files stages and lists only the first CHUNK (then returns)."""

    violates = ("AGT-STAGE-1",)
    shows_in = ("test_large_stage_request_lists_every_file",)
    CHUNK = 1000

    def stage_in(self, req):
        if len(req.files) <= self.CHUNK:
            return super().stage_in(req)
        return super().stage_in(dataclasses.replace(req, files=tuple(req.files[:self.CHUNK])))


class _TrustingStore(ContentStore):
    """A content cache that trusts any cached file, also one that a job has written to (it is hard-linked)."""

    def cached(self, file):
        path = self.cache_dir / checked_name(file)
        return path if path.is_file() else None


@register
class TrustsCacheAfterJobWrites(AgentCore):
    """Hands out its cached copy of a file even after a job wrote to it (the job's copy shares the cache's inode)."""

    violates = ("AGT-STAGE-3",)
    shows_in = ("test_a_job_writing_its_input_does_not_change_another_jobs_copy",)

    def __init__(self, config, telemetry=None):
        super().__init__(config, telemetry)
        old = self.store
        self.store = _TrustingStore(old.source, old.cache_dir, old.tmp_dir, old.journal, on_fetch=old.on_fetch)
