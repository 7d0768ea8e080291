"""Protocol errors, their gRPC status codes, and every wire-visible error text in one place."""
from __future__ import annotations

from typing import Iterable

import grpc

# gRPC carries the status message in a trailer; past the peer's metadata limit (8 KiB by
# default) the client gets RESOURCE_EXHAUSTED or INTERNAL instead of the contract's status.
# Every message is cut to MAX_MESSAGE characters, and lists name their first FEW values.
MAX_MESSAGE = 1024
FEW = 8


class ProtocolError(Exception):
    """An error the protocol answers with a non-OK status; `code` is that status."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str, requirement: str | None = None):
        if len(message) > MAX_MESSAGE:
            message = message[: MAX_MESSAGE - 3] + "..."
        super().__init__(message)
        self.message = message
        self.requirement = requirement

    @property
    def code_name(self) -> str:
        return self.code.name


class InvalidArgument(ProtocolError):
    """The request is wrong on its own: UUID form, required field, python_version syntax."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class FailedPrecondition(ProtocolError):
    """The request is well formed but the agent's state does not allow it."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class AlreadyExists(ProtocolError):
    """A repeat RunJob whose files or requirements differ from the submission (AGT-RUN-8)."""

    code = grpc.StatusCode.ALREADY_EXISTS


class ResourceExhausted(ProtocolError):
    """A request over the size limit, or a full queue."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


def _short(value: object, limit: int = 80) -> str:
    """repr() of a value, cut so that a huge bad value cannot flood a status message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "...'"


def _few(values: Iterable[object], limit: int = FEW) -> str:
    """The first `limit` values (each cut short), then how many there are in all."""
    values = list(values)
    shown = ", ".join(str(v) if len(str(v)) <= 80 else _short(v) for v in values[:limit])
    return shown if len(values) <= limit else f"{shown} and {len(values) - limit} more ({len(values)} in all)"


# --- wire-visible texts -------------------------------------------------------------------

def bad_uuid(field: str, value: object) -> InvalidArgument:
    return InvalidArgument(
        f"{field} must be a UUID in canonical 8-4-4-4-12 hex form, got {_short(value)}",
        "AGT-ID-1",
    )


def missing_field(field: str) -> InvalidArgument:
    return InvalidArgument(f"required field {field} is missing", "AGT-ID-2")


def bad_python_version(value: str, why: str) -> InvalidArgument:
    return InvalidArgument(
        f"requirements python_version {_short(value)} is malformed: {why}", "AGT-RUN-4"
    )


def no_files(job: str) -> InvalidArgument:
    return InvalidArgument(f"first RunJob for job {job} names no files: nothing to run", "AGT-RUN-2")


def unstaged_files(job: str, uuids: Iterable[str]) -> FailedPrecondition:
    names = _few(uuids)
    return FailedPrecondition(
        f"files not staged for job {job}: {names}; call StageInFiles first", "AGT-RUN-3"
    )


def no_interpreter(requirements: Iterable[str], available: Iterable[str]) -> FailedPrecondition:
    reqs = list(requirements)
    shown = " AND ".join(_short(r, 40) for r in reqs[:FEW]) or "any Python 3"
    if len(reqs) > FEW:
        shown += f" AND {len(reqs) - FEW} more ({len(reqs)} in all)"
    have = _few(available) or "none"
    return FailedPrecondition(
        f"no interpreter on this agent satisfies python_version {shown} (available: {have})",
        "AGT-RUN-4",
    )


def stage_after_submit(job: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"job {job} is already submitted: its inputs are frozen, StageInFiles refused", "AGT-STAGE-4"
    )


def repeat_mismatch(job: str, what: str, sent: object, submitted: object) -> AlreadyExists:
    return AlreadyExists(
        f"job {job} already exists with other {what}: sent {_short(sent)}, "
        f"submitted {_short(submitted)}",
        "AGT-RUN-8",
    )


def too_large(size: int, limit: int) -> ResourceExhausted:
    return ResourceExhausted(f"request of {size} bytes is over this agent's limit of {limit} bytes", "AGT-ERR-2")


def queue_full(limit: int) -> ResourceExhausted:
    return ResourceExhausted(f"the agent's queue is full ({limit} jobs waiting)", None)
