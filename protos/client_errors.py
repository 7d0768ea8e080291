"""The client's typed errors: one class per situation, told apart by status code and the contract."""
from __future__ import annotations

import grpc

from protos import errors as errors_module
from protos import extensions, validation
from protos.errors import ProtocolError

class AgentCallError(Exception):
    """A call that did not give an answer the client can use.

    `method` is the RPC (or client step), `code` the grpc.StatusCode, `code_name` its name,
    `details` the agent's message, `requirement` the PROTOCOL-V1 requirement ID that the
    situation falls under (None when there is none), `job` the job id sent. `transient` says
    whether the same call may simply be sent again later.
    """

    transient = False
    requirement_id: str | None = None

    def __init__(self, method: str, code: grpc.StatusCode | None, details: str, *,
                 requirement: str | None = None, job: str | None = None):
        self.method = method
        self.code = code
        self.code_name = code.name if code is not None else "UNKNOWN"
        self.details = details or ""
        self.requirement = requirement if requirement is not None else self.requirement_id
        self.job = job
        super().__init__(f"{method} failed with {self.code_name}: {self.details}")


class InvalidRequest(AgentCallError):
    """INVALID_ARGUMENT: the request is wrong on its own (UUID form, missing field, python_version
    syntax). `requirement` is the rule the client's own copy of the checks finds broken."""


class UnknownJob(InvalidRequest):
    """The agent does not know this job: INVALID_ARGUMENT to a well-formed status query, which v1
    reads as a first RunJob with no files (docs/SPEC.md, resolution 2). Submit it (with files)
    if you meant to; a correct agent never forgets a job it accepted (AGT-DUR-1)."""

    requirement_id = "AGT-RUN-2"


class PreconditionFailed(AgentCallError):
    """FAILED_PRECONDITION: well formed, but the agent's state does not allow it."""


class Unstaged(PreconditionFailed):
    """Files of a first RunJob are not staged for the job (AGT-RUN-3), or StageInFiles left them
    out (AGT-STAGE-1: absent from the agent's file source or unreadable). `files` are the ones
    the agent named (it names the first few) or left out, in lower case."""

    requirement_id = "AGT-RUN-3"

    def __init__(self, method: str, code: grpc.StatusCode | None, details: str, *, files=(), **kwargs):
        super().__init__(method, code, details, **kwargs)
        self.files = list(files)


class NoInterpreter(PreconditionFailed):
    """No interpreter on the agent satisfies the job's python_version requirements (AGT-RUN-4)."""

    requirement_id = "AGT-RUN-4"


class StageAfterSubmit(PreconditionFailed):
    """StageInFiles for a job already submitted: its inputs are frozen (AGT-STAGE-4)."""

    requirement_id = "AGT-STAGE-4"


class AlreadySubmitted(AgentCallError):
    """ALREADY_EXISTS: the job id was submitted with other files or requirements (AGT-RUN-8).
    Each job id names one job for ever: use a new id for other work."""

    requirement_id = "AGT-RUN-8"


class ResourceExhausted(AgentCallError):
    """RESOURCE_EXHAUSTED: a request over the agent's size limit (AGT-ERR-2), a full queue, or an
    agent that cannot record the change (out of disk). Not retried by the client on its own."""


class AgentUnavailable(AgentCallError):
    """UNAVAILABLE or DEADLINE_EXCEEDED: no answer (agent down or restarting, network, an answer
    slower than the call's timeout). Safe to send again: StageInFiles is idempotent (AGT-STAGE-2)
    and a verbatim repeat of RunJob is a status query (AGT-RUN-7, AGT-RUN-8)."""

    transient = True


class NotAuthorized(AgentCallError):
    """UNAUTHENTICATED or PERMISSION_DENIED: a token or certificate the agent does not accept."""


class NotOffered(AgentCallError):
    """UNIMPLEMENTED from an AgentExtensions method: the agent does not offer that extension (or the
    service at all: a v1 agent). `capabilities()` tells beforehand (AGT-EXT-2)."""

    requirement_id = "AGT-EXT-2"


class ProtocolViolation(AgentCallError):
    """An answer that breaks the contract (an outcome or a watch stream against AGT-EXT-3/7/8):
    `requirement` names the rule. The agent is at fault; report it to its operator."""


class JobTimeout(AgentCallError):
    """wait_until_done ran past its overall deadline; `timeline` holds what was observed and
    `last_error` the transient failure of the last poll, if it failed."""

    def __init__(self, job: str, deadline: float, timeline, last_error: AgentCallError | None = None):
        self.timeline = timeline
        self.deadline = deadline
        self.last_error = last_error
        last = timeline[-1][1].name if timeline else "nothing"
        message = f"job {job} not DONE after {deadline:.1f} s (last state: {last})"
        if last_error is not None:
            message += f"; the last poll failed with {last_error.code_name}"
        super().__init__("wait_until_done", grpc.StatusCode.DEADLINE_EXCEEDED, message, job=job)
        self.args = (message,)

    def __str__(self) -> str:
        return self.args[0]


_BY_CODE = {
    grpc.StatusCode.ALREADY_EXISTS: AlreadySubmitted,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.UNAVAILABLE: AgentUnavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: AgentUnavailable,
    grpc.StatusCode.UNAUTHENTICATED: NotAuthorized,
    grpc.StatusCode.PERMISSION_DENIED: NotAuthorized,
}


EXT_METHODS = ("GetCapabilities", "GetOutcome", "CancelJob", "WatchJobs")


def _job_of(request) -> str | None:
    if request is None:
        return None
    fields = request.DESCRIPTOR.fields_by_name
    if "job" in fields:
        return request.job.uuid if request.HasField("job") else None
    if "uuid" in fields:   # a JobId: GetOutcome, CancelJob
        return request.uuid if request.HasField("uuid") else None
    if "jobs" in fields and len(request.jobs) == 1:   # a WatchRequest for one job
        return request.jobs[0].uuid
    return None


def classify(method: str, code: grpc.StatusCode | None, details: str, request=None) -> AgentCallError:
    """The typed error for a non-OK status of `method` answering `request`.

    Derived from the status code and the contract, not from message wording: an
    INVALID_ARGUMENT is checked against the client's own copy of the request checks
    (protos.validation), so a well-formed RunJob without files that gets it names an unknown
    job; a FAILED_PRECONDITION to RunJob is about unstaged files when its message names some of
    the request's files (AGT-RUN-3 requires that), about the interpreter otherwise.
    """
    details = details or ""
    job = _job_of(request)
    kwargs = {"job": job}
    if method in EXT_METHODS:
        return _extension(method, code, details, request, kwargs)
    if code is grpc.StatusCode.INVALID_ARGUMENT:
        return _invalid(method, code, details, request, kwargs)
    if code is grpc.StatusCode.FAILED_PRECONDITION:
        if method == "StageInFiles":
            return StageAfterSubmit(method, code, details, **kwargs)
        files = validation.dedupe(f.uuid.lower() for f in request.files) if request is not None else []
        named = [f for f in files if f in details.lower()]
        if named:
            return Unstaged(method, code, details, files=named, **kwargs)
        if files:
            return NoInterpreter(method, code, details, **kwargs)
        return PreconditionFailed(method, code, details, **kwargs)
    return _BY_CODE.get(code, AgentCallError)(method, code, details, **kwargs)


def _invalid(method, code, details, request, kwargs) -> AgentCallError:
    if request is None:
        return InvalidRequest(method, code, details, **kwargs)
    check = validation.validate_run_request if method == "RunJob" else validation.validate_stage_request
    try:
        checked = check(request)
    except ProtocolError as exc:
        return InvalidRequest(method, code, details, requirement=exc.requirement, **kwargs)
    if method == "RunJob" and not checked.files:
        return UnknownJob(method, code, details, **kwargs)
    return InvalidRequest(method, code, details, **kwargs)


def _extension(method, code, details, request, kwargs) -> AgentCallError:
    """AgentExtensions: NOT_FOUND names an unknown job (AGT-EXT-3/7), UNIMPLEMENTED an extension not
    offered (AGT-EXT-2), INVALID_ARGUMENT a malformed id by the client's own checks."""
    if code is grpc.StatusCode.NOT_FOUND:
        return UnknownJob(method, code, details, requirement="AGT-EXT-7" if method == "WatchJobs" else "AGT-EXT-3",
                          **kwargs)
    if code is grpc.StatusCode.UNIMPLEMENTED:
        return NotOffered(method, code, details, **kwargs)
    if code is grpc.StatusCode.INVALID_ARGUMENT:
        requirement = None
        try:
            if request is not None and "jobs" in request.DESCRIPTOR.fields_by_name:
                extensions.watch_jobs(request.jobs)
            elif request is not None and "uuid" in request.DESCRIPTOR.fields_by_name:
                if not request.HasField("uuid"):
                    raise errors_module.missing_field("uuid")
                validation.parse_uuid(request.uuid)
        except ProtocolError as exc:
            requirement = exc.requirement
        return InvalidRequest(method, code, details, requirement=requirement, **kwargs)
    return _BY_CODE.get(code, AgentCallError)(method, code, details, **kwargs)
