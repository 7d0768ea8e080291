"""Broken agents that stage wrongly (AGT-STAGE-*, AGT-RUN-3, AGT-ERR-3)."""
from __future__ import annotations

import os
import uuid as uuidlib
from pathlib import Path

from fakes.broken._registry import register
from reference_agent.domain import AgentCore
from reference_agent.staging import LocalSource, SourceError, checked_name


@register
class ListsUnstagedFiles(AgentCore):
    """Lists every requested file in success_files, also those absent from the source."""

    violates = ("AGT-STAGE-1",)

    def stage_in(self, req):
        super().stage_in(req)
        return self.unique_files(req.files)


@register
class ListsDuplicatesTwice(AgentCore):
    """Lists a file as often as the request names it (no de-duplication of success_files)."""

    violates = ("AGT-STAGE-1",)

    def unique_files(self, files):
        return list(files)


@register
class ListsOnlyNewlyStaged(AgentCore):
    """A repeated StageInFiles lists only the files it staged this time, not those already staged."""

    violates = ("AGT-STAGE-1", "AGT-STAGE-2")

    def stage_in(self, req):
        before = set(self.staged_files(req.job))
        return [f for f in super().stage_in(req) if f not in before]


@register
class LinksInsteadOfCopying(AgentCore):
    """Stages a symlink to the source file instead of a copy, so a job sees later changes of the source."""

    violates = ("AGT-STAGE-3",)

    def stage_file(self, job_id, file):
        if not super().stage_file(job_id, file):
            return False
        if not isinstance(self.source, LocalSource):
            return True  # only a local directory can be linked to
        dest = self.workdir(job_id) / checked_name(file)
        tmp = dest.with_name(f".tmp-{uuidlib.uuid4().hex}")
        tmp.symlink_to(self.source.directory / checked_name(file))
        os.replace(tmp, dest)
        return True


@register
class StageChangesSubmittedJob(AgentCore):
    """Accepts StageInFiles for a job already submitted and adds the files to its directory."""

    violates = ("AGT-STAGE-4",)

    def check_stage_allowed(self, job_id):
        pass


@register
class AcceptsUnstagedRunJob(AgentCore):
    """Submits a RunJob whose files were never staged for the job (the job then fails to find them)."""

    violates = ("AGT-RUN-3",)

    def check_staged(self, job_id, files):
        pass


class _FollowingSource(LocalSource):
    """A local source that opens entries by path: symlinks are followed, anything readable is read."""

    def _open(self, file):
        try:
            return os.open(self.directory / checked_name(file), os.O_RDONLY)
        except OSError as exc:
            raise SourceError(f"{file}: {exc.strerror}") from None


@register
class FollowsSymlinksInSource(AgentCore):
    """Follows a symlink in the source directory, so staging reads files outside the source."""

    violates = ("AGT-ERR-3",)

    def __init__(self, config, telemetry=None):
        super().__init__(config, telemetry)
        if isinstance(self.source, LocalSource):
            self.source = _FollowingSource(Path(self.source.directory))
            self.store.source = self.source
