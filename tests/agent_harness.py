"""One in-process reference agent on loopback for the tests of every package: start it, feed its
source, submit scripts, read its journal; stopped (jobs too) by close()."""
from __future__ import annotations

import textwrap
from pathlib import Path

import grpc

from protos.client import AgentClient
from reference_agent.config import AgentConfig
from reference_agent.server import AgentServer
from reference_agent.telemetry import Telemetry
from shared_helpers import new_id


class InProcessAgent:
    """An AgentServer on 127.0.0.1:0 with its source and state directories, a channel and a client."""

    def __init__(self, server: AgentServer, source: Path, state: Path, tmp: Path | None = None):
        self.server, self.source, self.state, self.tmp = server, source, state, tmp
        self.channel = grpc.insecure_channel(server.address)
        self.client = AgentClient(self.channel, timeout=20.0)
        self.extra_channels: list[grpc.Channel] = []

    @classmethod
    def start(cls, tmp: Path, n: int = 0, *, telemetry: Telemetry | None = None,
              server_class: type[AgentServer] = AgentServer, **overrides) -> "InProcessAgent":
        """Start one agent with AgentConfig overrides (source may be an fsspec URL)."""
        source_spec = str(overrides.pop("source", tmp / f"source{n}"))
        source = Path(source_spec) if "://" not in source_spec else tmp / f"unused{n}"
        source.mkdir(parents=True, exist_ok=True)
        state = Path(overrides.pop("state_dir", tmp / f"state{n}"))
        settings = dict(listen="127.0.0.1:0", source=source_spec, state_dir=str(state), slots=2,
                        discover_path=False, log_rpcs=False)
        settings.update(overrides)
        server = server_class(AgentConfig(**settings), telemetry=telemetry or Telemetry(stream=None))
        server.start()
        return cls(server, source, state, tmp)

    @property
    def address(self) -> str:
        return self.server.address

    @property
    def core(self):
        return self.server.core

    def new_channel(self) -> grpc.Channel:
        channel = grpc.insecure_channel(self.address)
        self.extra_channels.append(channel)
        return channel

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
        self.client.run(job, [entry], python_version=python_version)
        return job

    def wait_done(self, job: str, deadline: float = 30.0, poll_interval: float = 0.01):
        return self.client.wait_until_done(job, poll_interval=poll_interval, deadline=deadline)

    def row(self, job: str):
        return self.core.journal.job(job.lower())

    def workdir(self, job: str) -> Path:
        return self.state / "jobs" / job.lower() / "work"

    def output(self, job: str) -> str:
        return Path(self.row(job).stdout).read_text(errors="replace")

    def close(self) -> None:
        self.channel.close()
        for channel in self.extra_channels:
            channel.close()
        self.server.stop(grace=0.2, stop_jobs=True)
