"""The fake agent's AgentExtensions servicer: capabilities, outcome, cancel and watch over a FakeBackend."""
from __future__ import annotations

import grpc

from protos import AgentExtensions_pb2, AgentExtensions_pb2_grpc, Common_pb2, errors, extensions, validation
from protos.errors import ProtocolError
from protos.extensions import CANCEL, OUTCOME, WATCH
from protos.states import JobState

EXT_SERVICE = AgentExtensions_pb2.DESCRIPTOR.services_by_name[extensions.SERVICE]


class FakeExtensions(AgentExtensions_pb2_grpc.AgentExtensionsServicer):
    """AgentExtensions for one FakeAgent (PROTOCOL-EXT): thin steps over its backend, each call
    through the agent's one place for faults and recording. The backend's `extensions` decides
    what is offered, at call time: a method of an extension not offered answers UNIMPLEMENTED
    (AGT-EXT-2), every method does when `extensions` is None (a v1 agent, no such service)."""

    def __init__(self, agent):
        self.agent = agent

    @property
    def backend(self):
        return self.agent.backend

    def _offered(self, capability: str | None) -> None:
        offered = self.backend.extensions
        if offered is None:
            raise extensions.Unimplemented("Method not found! (this agent has no AgentExtensions service)")
        if capability is not None and capability not in offered:
            raise extensions.not_offered(capability)

    # --- unary RPCs -----------------------------------------------------------------------------

    def _absent(self, context) -> None:
        """A v1 agent has no such service: grpc's own answer, and the call never reaches the agent."""
        if self.backend.extensions is None:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not found!")

    def GetCapabilities(self, request, context):
        self._absent(context)
        return self.agent.handle("GetCapabilities", request, context, self.get_capabilities)

    def GetOutcome(self, request, context):
        self._absent(context)
        return self.agent.handle("GetOutcome", request, context, self.get_outcome)

    def CancelJob(self, request, context):
        self._absent(context)
        return self.agent.handle("CancelJob", request, context, self.cancel_job)

    def get_capabilities(self, request) -> AgentExtensions_pb2.Capabilities:
        self._offered(None)
        return extensions.capabilities_message(self.backend.extensions)

    def get_outcome(self, request) -> AgentExtensions_pb2.JobOutcome:
        self._offered(OUTCOME)
        return self.backend.outcome(_job_id(request)).to_proto()

    def cancel_job(self, request) -> AgentExtensions_pb2.CancelResponse:
        self._offered(CANCEL)
        return AgentExtensions_pb2.CancelResponse(code=int(self.backend.cancel(_job_id(request))))

    # --- the stream -------------------------------------------------------------------------------

    def WatchJobs(self, request, context):
        """Current states first, then each change once, until every job is DONE (AGT-EXT-7); a fault
        from FaultPlan.break_stream ends the stream after its number of events."""
        backend, agent = self.backend, self.agent
        self._absent(context)
        sent: list = []
        try:
            fault = agent.prelude("WatchJobs")
            if fault is not None and fault.after_events is None:   # acted-then-lost or slow: no stream
                raise agent.abort_with(fault.code, fault.details)
            jobs = self._watched(request)
            last: dict[str, JobState] = {}
            first = True
            while any(last.get(j) is not JobState.DONE for j in jobs):
                if not backend.connected:
                    raise agent.abort_with(grpc.StatusCode.UNAVAILABLE, "fake agent is disconnected (connected=False)")
                if not context.is_active():
                    agent.record_call("WatchJobs", request, grpc.StatusCode.CANCELLED, "cancelled by the client",
                                      tuple(sent), context)
                    return
                states = backend.watch_step(jobs, last, first=first)
                first = False
                for key, state in ((k, st) for k, sts in zip(jobs, states) for st in sts):
                    if fault is not None and fault.after_events is not None and len(sent) >= fault.after_events:
                        raise agent.abort_with(fault.code, fault.details)
                    event = self._event(key, state)
                    last[key] = state
                    sent.append(event)
                    yield event
                    cut = agent.after_event("WatchJobs", len(sent))
                    if cut is not None:
                        raise agent.abort_with(*cut)
            if fault is not None and fault.after_events is not None and len(sent) >= fault.after_events:
                raise agent.abort_with(fault.code, fault.details)   # broken right after the last event
        except Exception as exc:  # noqa: BLE001 - _Abort from the agent's helpers
            agent.abort_stream("WatchJobs", request, exc, tuple(sent), context)
            raise
        agent.record_call("WatchJobs", request, grpc.StatusCode.OK, "", tuple(sent), context)

    def _watched(self, request) -> tuple[str, ...]:
        try:
            self._offered(WATCH)
            jobs = extensions.watch_jobs(request.jobs)
            with self.backend.lock:
                unknown = [j for j in jobs if self.backend.job(j) is None]
            if unknown:
                raise extensions.unknown_jobs(unknown)
            return jobs
        except ProtocolError as exc:
            raise self.agent.abort_with(exc.code, exc.message, injected=False) from None

    def _event(self, key: str, state: JobState) -> AgentExtensions_pb2.JobEvent:
        event = AgentExtensions_pb2.JobEvent(job=Common_pb2.JobId(uuid=key), code=int(state))
        if state is JobState.DONE and OUTCOME in (self.backend.extensions or ()):
            event.outcome.CopyFrom(self.backend.outcome(key).to_proto())
        return event


def _job_id(request: Common_pb2.JobId) -> str:
    if not request.HasField("uuid"):
        raise errors.missing_field("uuid")
    return validation.parse_uuid(request.uuid, "uuid")
