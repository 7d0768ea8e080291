"""Broken agents: the reference agent with exactly one defect each, named after it (CATALOGUE)."""
from __future__ import annotations

from fakes.broken._registry import CATALOGUE, build_server, describe, layer, register
from fakes.broken.blindspots import (  # importing a module registers its agents
    ForgetsSlotsAfterRestart, ReportsDoneWhileRunningLater, RestagesFromSourceAfterRestart, StopsStagingAfterAChunk,
    TruncatesLargeFiles, TrustsCacheAfterJobWrites,
)
from fakes.broken.jobs import (  # importing a module registers its agents
    AcceptsMalformedPythonVersion, AcceptsMismatchedRepeat, AcceptsRunWithoutFiles,
    AnswersWithoutSubmitting, ExceedsSlots, ForgetsDoneAfterRestart, GoesBackFromDoneToRun,
    IgnoresPythonVersion, LeaksSlots, NeverLeavesWait, ReportsDoneBeforeRun, ReportsDoneLate,
    RunsJobTwiceOnRepeat, RunsLastFile, StartsNewestFirst, TwoExecutionsForConcurrentFirstCalls,
    UsesOnlyFirstRequirement,
)
from fakes.broken.staging import (  # importing a module registers its agents
    AcceptsUnstagedRunJob, FollowsSymlinksInSource, LinksInsteadOfCopying, ListsDuplicatesTwice,
    ListsOnlyNewlyStaged, ListsUnstagedFiles, StageChangesSubmittedJob,
)
from fakes.broken.surface import (  # importing a module registers its agents
    AcceptsMalformedUuid, AcceptsMissingJob, CaseSensitiveUuids, EchoesUuidCase, IgnoresSizeLimit,
    OkForUnparseableBytes, OkWithoutCode, ServesUnderPackage,
)

__all__ = ["CATALOGUE", "build_server", "describe", "layer", "register", *sorted(CATALOGUE)]
