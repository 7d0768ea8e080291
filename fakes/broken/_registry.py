"""The catalogue of broken agents: registration, description, and building a server for one."""
from __future__ import annotations

import threading

from protos.requirements import ALL_REQUIREMENTS, EXT_REQUIREMENTS
from reference_agent.config import AgentConfig
from reference_agent.domain import AgentCore, Job
from reference_agent.server import AgentServer
from reference_agent.servicer import AgentServicer
from reference_agent.telemetry import Telemetry

CATALOGUE: dict[str, type] = {}


def register(cls: type) -> type:
    """Class decorator: check the declaration, then add the class to CATALOGUE.

    A broken agent declares `violates = ("AGT-...",)` (the requirement IDs it breaks), a docstring
    whose first line says its defect, and, when its defect shows only in a longer scenario of the
    conformance suite than the quickest tests of its IDs (a restart, a large request),
    `shows_in = ("test_...",)`: the suite's tests that expose it."""
    violates = getattr(cls, "violates", None)
    if not isinstance(violates, tuple) or not violates:
        raise TypeError(f"{cls.__name__} must declare violates = ('AGT-...',)")
    unknown = [rid for rid in violates if rid not in ALL_REQUIREMENTS]
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown requirement IDs {unknown}")
    if not issubclass(cls, (AgentCore, AgentServicer, AgentServer)):
        raise TypeError(f"{cls.__name__} must subclass AgentCore, AgentServicer or AgentServer")
    shows_in = getattr(cls, "shows_in", ())
    if not isinstance(shows_in, tuple) or not all(isinstance(t, str) and t.startswith("test_") for t in shows_in):
        raise TypeError(f"{cls.__name__}.shows_in must be a tuple of suite test names, got {shows_in!r}")
    cls.shows_in = shows_in
    if not (cls.__doc__ or "").strip():
        raise TypeError(f"{cls.__name__} needs a docstring saying its defect")
    if cls.__name__ in CATALOGUE:
        raise ValueError(f"{cls.__name__} is registered twice")
    CATALOGUE[cls.__name__] = cls
    return cls


def describe(cls: type) -> str:
    """The first line of the class docstring: what the agent gets wrong."""
    return (cls.__doc__ or "").strip().splitlines()[0]


def layer(cls: type) -> str:
    """Which reference-agent layer the defect lives in: core, servicer or server."""
    if issubclass(cls, AgentServer):
        return "server"
    return "servicer" if issubclass(cls, AgentServicer) else "core"


def markdown_table() -> str:
    """docs/FAKES.md's table of the catalogue, made from the declarations (`python -m fakes.broken --markdown`)."""
    rows = ["| agent | violates | layer | defect |", "| --- | --- | --- | --- |"]
    rows += [f"| `{name}` | {', '.join(cls.violates)} | {layer(cls)} | {describe(cls).replace('|', '/')} |"
             for name, cls in sorted(CATALOGUE.items())]
    return "\n".join(rows) + "\n"


def build_server(cls: type, config: AgentConfig, telemetry: Telemetry | None = None) -> AgentServer:
    """An AgentServer (not started) that is the reference agent with `cls`'s one defect."""
    telemetry = telemetry if telemetry is not None else Telemetry(stream=None)
    # A v1 defect makes a v1-only agent (no AgentExtensions: its defect would leak into the
    # extension's checks); an extension defect serves the extension, with that one defect.
    offered = {} if any(rid in EXT_REQUIREMENTS for rid in cls.violates) else {"extensions": ()}
    if issubclass(cls, AgentServer):
        return cls(config, telemetry=telemetry, **offered)
    if issubclass(cls, AgentServicer):
        return AgentServer(config, servicer_factory=cls, telemetry=telemetry, **offered)
    if issubclass(cls, AgentCore):
        return AgentServer(config, core_factory=cls, telemetry=telemetry, **offered)
    raise TypeError(f"not a broken agent: {cls!r}")


def run_again(core: AgentCore, job: Job):
    """Start one more, untracked execution of a job, launched exactly as the reference launches it.

    What the reference agent never does (AGT-RUN-7/9); the defects that need a second
    execution share this so that the second run looks exactly like the first to the job."""
    launch = core.launch(job)
    launch.go()
    threading.Thread(target=launch.proc.wait, name=f"rerun-{job.job[:8]}", daemon=True).start()
    return launch
