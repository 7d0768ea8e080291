"""The probes of the broken agents (tests/fakes/test_fakes_broken_defects.py): the registry
filled by @probe, and the helpers the probes share. The probes live in that test file and in
probes_wire_staging.py; every probe registers itself here, once per broken agent."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import grpc

from fakes.agent import full_method_name
from fakes.broken import CATALOGUE
from protos.requirements import EXT_REQUIREMENTS
from protos.states import JobState
from shared_helpers import new_id as new

W, R, D = JobState.WAIT, JobState.RUN, JobState.DONE


@dataclass(frozen=True)
class Probe:
    """How one broken agent's defect is seen: `run(agent, tmp[, restart])` returns a text naming
    the defect it observed, or None. `slots`: the agent's job slots; `restart`: None, "plain" (a
    clean stop, running jobs stopped) or "keep jobs" (running jobs left to be adopted), the
    third argument given to `run`; `no_happy_path`: why the agent cannot run an ordinary job."""

    run: Callable
    slots: int = 2
    restart: str | None = None
    no_happy_path: str | None = None
    pythons: tuple[str, ...] = ()   # extra interpreters the agent is given (--python)


PROBES: dict[str, Probe] = {}  # filled by @probe, keyed by the broken agent's name
# The defects of the extension (AGT-EXT-*) show in tests/reference_agent/test_agent_ext_defects.py.
V1_AGENTS = sorted(n for n, c in CATALOGUE.items() if not set(c.violates) & set(EXT_REQUIREMENTS))


def probe(agent: type, **how):
    """Declare the decorated function the probe of the broken agent class `agent` (one each)."""
    def declare(run):
        assert agent.__name__ not in PROBES, f"two probes for {agent.__name__}"
        PROBES[agent.__name__] = Probe(run, **how)
        return run
    return declare




def appender(path: Path, text: str = "x", sleep: float = 0.0) -> bytes:
    """A job script that sleeps, then appends `text` to `path` (an absolute path)."""
    return f"import time\ntime.sleep({sleep})\nopen({str(path)!r}, 'a').write({text!r})\n".encode()


def wait_for(predicate, timeout: float, step: float = 0.02) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def submit(agent, data: bytes = b"pass\n", job: str | None = None) -> tuple[str, str, JobState]:
    job, f = job or new(), agent.put(data)
    assert agent.client.stage_in(job, [f]) == [f]
    return job, f, agent.client.run(job, [f])


def done(agent, job, timeout=15.0):
    return agent.client.wait_until_done(job, poll_interval=0.02, deadline=timeout)


def output_of(agent, job: str, path: Path) -> str:
    """What the job wrote to `path`, once it is DONE (the file must appear within 5 s)."""
    done(agent, job)
    assert wait_for(path.exists, 5), f"{path} never written"
    return path.read_text()


def raw_status(agent, method: str, payload: bytes) -> grpc.StatusCode:
    try:
        agent.channel.unary_unary(full_method_name(method))(payload, timeout=10)
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK
