"""Broken agents that get identifiers or the wire wrong (AGT-ID-*, AGT-WIRE-*)."""
from __future__ import annotations

import dataclasses
import uuid

import grpc
from google.protobuf.message import DecodeError

from fakes.broken._registry import register
from protos import RunJob_pb2, StageInFile_pb2, validation
from protos.states import JobState
from reference_agent.domain import AgentCore
from reference_agent.server import AgentServer
from reference_agent.servicer import SERVICE, AgentServicer, RawAgentHandler

NIL_UUID = "00000000-0000-0000-0000-000000000000"


def _copy(message):
    clone = type(message)()
    clone.CopyFrom(message)
    return clone


def _lenient(text: str) -> str:
    """What uuid.UUID() makes of a text (hyphenless, {braces}, urn:uuid:), else the text as is."""
    try:
        return str(uuid.UUID(text))
    except (ValueError, TypeError, AttributeError):
        return text


@register
class AcceptsMalformedUuid(AgentCore):
    """Parses UUIDs with Python's uuid.UUID(): hyphenless, {braced} and urn:uuid: forms are accepted."""

    violates = ("AGT-ID-1",)

    def _normalized(self, message):
        clone = _copy(message)
        if clone.HasField("job") and clone.job.HasField("uuid"):
            clone.job.uuid = _lenient(clone.job.uuid)
        for f in clone.files:
            if f.HasField("uuid"):
                f.uuid = _lenient(f.uuid)
        return clone

    def parse_stage_request(self, message):
        return super().parse_stage_request(self._normalized(message))

    def parse_run_request(self, message):
        return super().parse_run_request(self._normalized(message))


@register
class AcceptsMissingJob(AgentCore):
    """Reads a missing `job` (or a JobId without `uuid`) as the nil UUID instead of refusing it."""

    violates = ("AGT-ID-2",)

    def _with_job(self, message):
        if message.HasField("job") and message.job.HasField("uuid"):
            return message
        clone = _copy(message)
        clone.job.uuid = NIL_UUID
        return clone

    def parse_stage_request(self, message):
        return super().parse_stage_request(self._with_job(message))

    def parse_run_request(self, message):
        return super().parse_run_request(self._with_job(message))


@register
class CaseSensitiveUuids(AgentCore):
    """Keeps UUIDs in the case they were sent: JOB and job are two jobs, FILE and file two files."""

    violates = ("AGT-ID-3",)

    def parse_stage_request(self, message):
        super().parse_stage_request(message)  # the same checks, then the case is kept
        return validation.StageRequest(message.job.uuid, tuple(f.uuid for f in message.files))

    def parse_run_request(self, message):
        req = super().parse_run_request(message)
        return dataclasses.replace(req, job=message.job.uuid, files=tuple(f.uuid for f in message.files))


@register
class EchoesUuidCase(AgentServicer):
    """Matches UUIDs case-insensitively but lists success_files in the case the client sent."""

    violates = ("AGT-ID-3",)

    def StageInFiles(self, request, context):
        response = super().StageInFiles(request, context)
        spelled = {}
        for f in request.files:
            spelled.setdefault(f.uuid.lower(), f.uuid)
        for staged in response.success_files:
            staged.file.uuid = spelled.get(staged.file.uuid, staged.file.uuid)
        return response


class _Partial:
    """A response whose bytes leave out missing required fields (SerializePartialToString)."""

    def __init__(self, message):
        self.message = message

    def SerializeToString(self) -> bytes:  # noqa: N802 - the name the handler calls
        return self.message.SerializePartialToString()


@register
class OkWithoutCode(AgentServicer):
    """Leaves RunJobResponse.code off the wire when the state is WAIT (as if proto3 omitted defaults)."""

    violates = ("AGT-WIRE-2",)

    def RunJob(self, request, context):
        response = super().RunJob(request, context)
        if response.code == JobState.WAIT:
            return _Partial(RunJob_pb2.RunJobResponse())
        return response


class _NotFound(AgentServicer):
    """What a client of /Agent/... meets when the service lives under another name."""

    def StageInFiles(self, request, context):
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not found!")

    def RunJob(self, request, context):
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not found!")


class _Details:
    def __init__(self, method: str, metadata):
        self.method = method
        self.invocation_metadata = metadata


class _PackagedHandler(RawAgentHandler):
    """The reference handler, reachable only under /agent.Agent/..."""

    PREFIX = "/agent.Agent/"

    def service(self, handler_call_details):
        method = handler_call_details.method
        if not method.startswith(self.PREFIX):
            return None
        name = f"/{SERVICE.full_name}/{method[len(self.PREFIX):]}"
        return super().service(_Details(name, handler_call_details.invocation_metadata))


@register
class ServesUnderPackage(AgentServer):
    """Serves the service as agent.Agent (a `package agent;` crept into the .proto): /Agent/... is UNIMPLEMENTED."""

    violates = ("AGT-WIRE-1",)

    def __init__(self, config, telemetry=None, **kwargs):
        super().__init__(config, servicer_factory=_NotFound, telemetry=telemetry, **kwargs)

    def build_server(self):
        server = super().build_server()
        server.add_generic_rpc_handlers((self.agent_handler(AgentServicer(self.core), _PackagedHandler),))
        return server


@register
class OkForUnparseableBytes(AgentServer):
    """Answers bytes that do not parse as the request with OK and an empty answer (WAIT, no files)."""

    violates = ("AGT-ERR-1",)
    EMPTY = {"StageInFiles": StageInFile_pb2.StageInFilesResponse(),
             "RunJob": RunJob_pb2.RunJobResponse(code=RunJob_pb2.WAIT)}

    def agent_handler(self, servicer, handler_class=None):
        return super().agent_handler(servicer, _LenientHandler)


class _LenientHandler(RawAgentHandler):
    """The reference handler, except that bytes which do not parse get OK and an empty answer."""

    def bytes_call(self, name, request_class, behaviour):
        strict = super().bytes_call(name, request_class, behaviour)
        empty = OkForUnparseableBytes.EMPTY[name].SerializeToString()

        def call(data: bytes, context):
            try:
                request_class.FromString(data)
            except DecodeError:
                return empty
            return strict(data, context)
        return call


@register
class IgnoresSizeLimit(AgentServer):
    """Ignores its configured request size limit (max_request_bytes): takes requests of up to 2 GiB."""

    violates = ("AGT-ERR-2",)

    def __init__(self, config, telemetry=None, **kwargs):
        self.configured_limit = config.max_request_bytes
        super().__init__(dataclasses.replace(config, max_request_bytes=2**31 - 1), telemetry=telemetry, **kwargs)
