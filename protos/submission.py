"""The submission rules of v1, once: what a first RunJob may contain and what a repeat may differ in."""
from __future__ import annotations

from collections.abc import Container, Sequence

from protos import errors, validation
from protos.validation import RunRequest


def check_stage_allowed(job: str, submitted: bool) -> None:
    """AGT-STAGE-4: a submitted job's inputs are frozen; staging for it is FAILED_PRECONDITION."""
    if submitted:
        raise errors.stage_after_submit(job)


def check_first_run(request: RunRequest, staged: Container[str]) -> None:
    """The first RunJob's own rules, in the contract's order: it names files (AGT-RUN-2), and
    every one of them is staged for this job (AGT-RUN-3). Interpreter choice comes after."""
    check_has_files(request)
    check_staged(request.job, request.files, staged)


def check_has_files(request: RunRequest) -> None:
    """AGT-RUN-2: a first RunJob without files has nothing to run: INVALID_ARGUMENT."""
    if not request.files:
        raise errors.no_files(request.job)


def check_staged(job: str, files: Sequence[str], staged: Container[str]) -> None:
    """AGT-RUN-3: FAILED_PRECONDITION naming the unstaged files, each once, in request order."""
    missing = validation.dedupe(f for f in files if f not in staged)
    if missing:
        raise errors.unstaged_files(job, missing)


def check_repeat(request: RunRequest, files: Sequence[str], requirements: Sequence[str]) -> None:
    """AGT-RUN-8: a repeat is a status query when its files and requirements are each empty or
    equal (as ordered lists) to the submission's; anything else is ALREADY_EXISTS."""
    if request.files and tuple(request.files) != tuple(files):
        raise errors.repeat_mismatch(request.job, "files", list(request.files), list(files))
    if request.requirement_texts and tuple(request.requirement_texts) != tuple(requirements):
        raise errors.repeat_mismatch(request.job, "requirements", list(request.requirement_texts),
                                     list(requirements))
