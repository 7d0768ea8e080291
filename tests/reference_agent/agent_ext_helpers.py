"""Helpers of the AgentExtensions tests: the generated stub over a real channel, waits with deadlines."""
from __future__ import annotations

import time
from pathlib import Path

import grpc

from protos import AgentExtensions_pb2, AgentExtensions_pb2_grpc, Common_pb2
from protos.extensions import Outcome
from protos.states import JobState

TIMEOUT = 20.0


class Ext:
    """The AgentExtensions methods of one agent, over the given channel, on the wire."""

    def __init__(self, channel: grpc.Channel):
        self.channel = channel
        self.stub = AgentExtensions_pb2_grpc.AgentExtensionsStub(channel)

    def capabilities(self) -> list[str]:
        return list(self.stub.GetCapabilities(AgentExtensions_pb2.CapabilitiesRequest(), timeout=TIMEOUT).extensions)

    def outcome(self, job: str) -> Outcome:
        return Outcome.from_proto(self.stub.GetOutcome(Common_pb2.JobId(uuid=job), timeout=TIMEOUT))

    def cancel(self, job: str) -> JobState:
        return JobState(self.stub.CancelJob(Common_pb2.JobId(uuid=job), timeout=TIMEOUT).code)

    def watch(self, jobs, timeout: float = TIMEOUT, metadata=None):
        """The call (an iterator of JobEvent; .cancel() ends it)."""
        request = AgentExtensions_pb2.WatchRequest(jobs=[Common_pb2.JobId(uuid=j) for j in jobs])
        return self.stub.WatchJobs(request, timeout=timeout, metadata=metadata)

    def raw(self, method: str, data: bytes):
        """A unary call of `method` with raw request bytes."""
        call = self.channel.unary_unary(f"/AgentExtensions/{method}")
        return call(data, timeout=TIMEOUT)


def events_of(call) -> list[tuple[str, JobState, Outcome | None]]:
    """Every event of a stream until it ends (OK; a non-OK end raises grpc.RpcError)."""
    out = []
    for event in call:
        outcome = Outcome.from_proto(event.outcome) if event.HasField("outcome") else None
        out.append((event.job.uuid, JobState(event.code), outcome))
    return out


def wait_until(predicate, what: str, deadline: float = TIMEOUT, step: float = 0.01):
    """Poll `predicate` until it returns something true; fail naming `what` after `deadline` s."""
    end = time.monotonic() + deadline
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < end, f"{what}: not within {deadline} s"
        time.sleep(step)


def gate_script(gate: Path, code: str = "", before: str = "") -> str:
    """A job that runs `before`, waits until the file `gate` exists (bounded: 60 s), then runs `code`."""
    return (f"{before}\nimport os, time\nend = time.monotonic() + 60\n"
            f"while not os.path.exists({str(gate)!r}) and time.monotonic() < end:\n    time.sleep(0.01)\n{code}\n")
