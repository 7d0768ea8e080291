"""A small typed client of the Agent protocol, usable over any grpc channel (TLS included)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import grpc

from protos import AgentService_pb2_grpc, Common_pb2, RunJob_pb2, StageInFile_pb2
from protos.states import JobState


class AgentCallError(Exception):
    """A non-OK status from the agent. `code` is the grpc.StatusCode, `code_name` its name."""

    def __init__(self, method: str, code: grpc.StatusCode, details: str):
        self.method = method
        self.code = code
        self.code_name = code.name if code is not None else "UNKNOWN"
        self.details = details or ""
        super().__init__(f"{method} failed with {self.code_name}: {self.details}")


class JobTimeout(Exception):
    """wait_until_done ran past its deadline; `timeline` holds what was observed."""

    def __init__(self, job: str, deadline: float, timeline: list[tuple[float, JobState]]):
        self.job = job
        self.timeline = timeline
        last = timeline[-1][1].name if timeline else "nothing"
        super().__init__(f"job {job} not DONE after {deadline:.1f} s (last state: {last})")


@dataclass
class Timeline:
    """The states seen for one job, as (seconds since the first poll, state)."""

    job: str
    points: list[tuple[float, JobState]] = field(default_factory=list)

    @property
    def final(self) -> JobState | None:
        return self.points[-1][1] if self.points else None


def secure_channel(target: str, ca: bytes | None = None, cert: bytes | None = None,
                   key: bytes | None = None, options: Sequence[tuple[str, object]] = ()) -> grpc.Channel:
    """A TLS channel (mutual TLS when cert and key are given)."""
    creds = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)
    return grpc.secure_channel(target, creds, options=list(options))


class AgentClient:
    """Calls StageInFiles and RunJob; raises AgentCallError on a non-OK status."""

    def __init__(self, channel: grpc.Channel, timeout: float | None = 30.0,
                 metadata: Sequence[tuple[str, str]] = ()):
        self._stub = AgentService_pb2_grpc.AgentStub(channel)
        self.timeout = timeout
        self.metadata = tuple(metadata)

    @classmethod
    def connect(cls, target: str, **kwargs) -> "AgentClient":
        return cls(grpc.insecure_channel(target), **kwargs)

    def _call(self, method: str, fn, request):
        try:
            return fn(request, timeout=self.timeout, metadata=self.metadata or None)
        except grpc.RpcError as exc:
            raise AgentCallError(method, exc.code(), exc.details()) from None

    def stage_in(self, job: str, files: Iterable[str]) -> list[str]:
        """Stage files for a job; return the UUIDs the agent reports staged."""
        request = StageInFile_pb2.StageInFilesRequest(
            job=Common_pb2.JobId(uuid=job), files=[Common_pb2.FileId(uuid=f) for f in files]
        )
        response = self._call("StageInFiles", self._stub.StageInFiles, request)
        return [sf.file.uuid for sf in response.success_files]

    def run(self, job: str, files: Iterable[str] = (),
            python_version: str | Sequence[str | None] | None = None) -> JobState:
        """Submit a job (or query it when already submitted); return its state.

        `python_version` is one string, a list of strings (each one JobRequirement; None leaves
        the field unset), or None for no requirement at all."""
        if python_version is None:
            reqs = []
        elif isinstance(python_version, str):
            reqs = [RunJob_pb2.JobRequirement(python_version=python_version)]
        else:
            reqs = [RunJob_pb2.JobRequirement() if v is None else RunJob_pb2.JobRequirement(python_version=v)
                    for v in python_version]
        request = RunJob_pb2.RunJobRequest(
            job=Common_pb2.JobId(uuid=job), requirements=reqs,
            files=[Common_pb2.FileId(uuid=f) for f in files],
        )
        return JobState(self._call("RunJob", self._stub.RunJob, request).code)

    def status(self, job: str) -> JobState:
        """A status query: RunJob with no files and no requirements (AGT-RUN-7/8)."""
        return self.run(job)

    def wait_until_done(self, job: str, poll_interval: float = 0.1, deadline: float = 60.0,
                        on_state: Callable[[JobState], None] | None = None,
                        clock: Callable[[], float] = time.monotonic,
                        sleep: Callable[[float], None] = time.sleep) -> Timeline:
        """Poll until DONE; return the timeline of states seen; raise JobTimeout past the deadline."""
        start = clock()
        timeline = Timeline(job)
        while True:
            state = self.status(job)
            now = clock() - start
            if not timeline.points or timeline.points[-1][1] != state:
                timeline.points.append((now, state))
                if on_state:
                    on_state(state)
            if state is JobState.DONE:
                return timeline
            if now >= deadline:
                raise JobTimeout(job, deadline, timeline.points)
            sleep(min(poll_interval, max(0.0, deadline - now)))
