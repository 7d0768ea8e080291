"""Helpers shared by the reference agent's tests: ids, status codes, the in-process agent harness."""
from __future__ import annotations

import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from protos.client import AgentClient
from reference_agent.server import AgentServer
from shared_helpers import code_of, new_id  # noqa: F401  (re-exported to the tests)




@dataclass
class Harness:
    """One in-process agent on 127.0.0.1:0 with its source directory and a client."""

    server: AgentServer
    source: Path
    state: Path
    channel: grpc.Channel
    client: AgentClient
    tmp: Path
    extra_channels: list = field(default_factory=list)

    @property
    def address(self) -> str:
        return self.server.address

    @property
    def core(self):
        return self.server.core

    def put(self, data: bytes | str, file: str | None = None) -> str:
        """Put content in the source under a new (or given) file UUID; return the UUID."""
        file = file or new_id()
        (self.source / file.lower()).write_bytes(data.encode() if isinstance(data, str) else data)
        return file

    def script(self, code: str) -> str:
        return self.put(textwrap.dedent(code))

    def submit(self, code: str, python_version=None, job: str | None = None, extra=()) -> str:
        """Stage a script (plus extra files) for a new job and submit it; return the job id."""
        job = job or new_id()
        entry = self.script(code)
        files = [entry, *extra]
        assert self.client.stage_in(job, files) == [f.lower() for f in files]
        self.client.run(job, [entry], python_version)
        return job

    def wait_done(self, job: str, deadline: float = 30.0):
        return self.client.wait_until_done(job, poll_interval=0.01, deadline=deadline)

    def row(self, job: str):
        return self.core.journal.job(job.lower())

    def new_channel(self) -> grpc.Channel:
        channel = grpc.insecure_channel(self.address)
        self.extra_channels.append(channel)
        return channel


def running_version() -> str:
    v = sys.version_info
    return f"{v.major}.{v.minor}.{v.micro}"
