"""The extension's calls as the suite makes them: raw bytes on the wire, every answer decoded by hand
against PROTOCOL-EXT (required fields present), transport failures as AgentUnavailable."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import grpc

from conformance.target import TRANSPORT_CODES
from conformance.violations import AgentUnavailable, checked, violation
from protos import AgentExtensions_pb2 as ext_pb2
from protos import Common_pb2
from protos.states import JobState

SERVICE = "/AgentExtensions/"
METHOD = {"outcome": "GetOutcome", "cancel": "CancelJob", "watch": "WatchJobs"}
END = {0: "EXITED", 1: "SIGNALLED", 2: "INTERRUPTED", 3: "CANCELLED"}
OK = grpc.StatusCode.OK


def job_id(job: str) -> bytes:
    return Common_pb2.JobId(uuid=job).SerializeToString()


def call(env, capability: str, payload: bytes) -> tuple[grpc.StatusCode, str, bytes]:
    """One unary call of a listed capability; UNIMPLEMENTED for it breaks AGT-EXT-2."""
    code, details, raw = env.target.call(SERVICE + METHOD[capability], payload)
    if code in TRANSPORT_CODES:
        raise AgentUnavailable(f"{METHOD[capability]} -> {code.name}: {details}")
    checked()
    if code is grpc.StatusCode.UNIMPLEMENTED:
        raise violation("AGT-EXT-2", f"{METHOD[capability]} answers UNIMPLEMENTED although GetCapabilities lists "
                        f"'{capability}'", details)
    return code, details, raw


def parse(rid: str, cls, raw: bytes, what: str):
    """Decode an OK answer; a missing required field or bad bytes break AGT-EXT-1 (and `rid`)."""
    msg = cls()
    try:
        msg.MergeFromString(raw)
    except Exception as exc:   # protobuf's DecodeError
        raise violation(("AGT-EXT-1", rid), f"an OK {what} does not parse as {cls.__name__}", str(exc)) from None
    checked()
    if not msg.IsInitialized():
        raise violation(("AGT-EXT-1", rid), f"an OK {what} lacks a required field",
                        f"missing: {msg.FindInitializationErrors()}")
    return msg


def outcome(env, rid: str, job: str) -> ext_pb2.JobOutcome:
    code, details, raw = call(env, "outcome", job_id(job))
    if code is not OK:
        raise violation(rid, "GetOutcome of a submitted job did not return OK", f"job {job}: {code.name} {details!r}")
    return parse(rid, ext_pb2.JobOutcome, raw, "JobOutcome")


def describe(o: ext_pb2.JobOutcome) -> str:
    fields = {f.name: v for f, v in o.ListFields() if f.name not in ("stdout_tail", "stderr_tail", "job")}
    if o.HasField("end"):
        fields["end"] = END.get(o.end, o.end)
    fields["code"] = JobState(o.code).name
    return f"outcome of {o.job.uuid}: {fields}, stdout tail {len(o.stdout_tail)} B, stderr tail {len(o.stderr_tail)} B"


def cancel(env, rid: str, job: str) -> JobState:
    code, details, raw = call(env, "cancel", job_id(job))
    if code is not OK:
        raise violation(rid, "CancelJob of a submitted job did not return OK", f"job {job}: {code.name} {details!r}")
    return JobState(parse(rid, ext_pb2.CancelResponse, raw, "CancelResponse").code)


@dataclass
class Watch:
    """One WatchJobs stream read in the background: its events (job, state, outcome or None) with the
    v1 state the suite saw just before each arrived, and how it ended (status code, details)."""

    env: object
    jobs: list
    deadline: float
    events: list = field(default_factory=list)
    code: grpc.StatusCode | None = None
    details: str = ""
    done: threading.Event = field(default_factory=threading.Event)
    own_channel: bool = False   # True: a channel of its own, that a restart of the suite's does not close

    def start(self) -> "Watch":
        self.channel = self.env.target.new_channel() if self.own_channel else None
        stub = (self.channel or self.env.target.channel()).unary_stream(SERVICE + METHOD["watch"], request_serializer=None,
                                                      response_deserializer=None)
        payload = ext_pb2.WatchRequest(jobs=[Common_pb2.JobId(uuid=j) for j in self.jobs]).SerializeToString()
        self.stream = stub(payload, timeout=self.deadline)
        threading.Thread(target=self._read, name="conformance-watch", daemon=True).start()
        return self

    def _read(self) -> None:
        try:
            for raw in self.stream:
                self.events.append((raw, time.monotonic()))
            self.code = OK
        except grpc.RpcError as exc:
            self.code, self.details = exc.code(), exc.details() or ""
        finally:
            self.done.set()

    def wait(self, timeout: float) -> bool:
        return self.done.wait(timeout)

    def cancel(self) -> None:
        self.stream.cancel()
        if self.channel is not None:
            self.channel.close()

    def decoded(self, rid: str) -> list[tuple[str, JobState, ext_pb2.JobOutcome | None]]:
        out = []
        for raw, _ in list(self.events):
            ev = parse(rid, ext_pb2.JobEvent, raw, "JobEvent")
            out.append((ev.job.uuid.lower(), JobState(ev.code), ev.outcome if ev.HasField("outcome") else None))
        return out


def script_job(env, rid: str, code: str) -> str:
    """A job whose entry point is the Python `code` (the suite's own, written from the contract)."""
    job = env.new_id()
    entry = env.put(code.encode("utf-8"))
    env.stage(rid, job, [entry], [entry])
    env.submit(rid, job, [entry])
    return job
