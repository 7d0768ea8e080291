"""A fleet of local reference-agent processes (one shared file source), for calibration and replay."""
from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from protos.launcher import AgentProcess, LaunchError, reference_agent_argv


class FleetError(RuntimeError):
    """An agent of the fleet did not start; the message names its command and log file."""


@dataclass
class Member:
    """One agent process: its group, slots, address and state directory."""

    index: int
    group: str
    slots: int
    address: str
    state_dir: Path
    log: Path
    agent: AgentProcess


class Fleet:
    """K reference agents started as `python -m reference_agent serve` processes on 127.0.0.1:0.

    `layout` is a list of (group name, slots) per agent. Every agent reads the same `source`
    directory and has its own state directory under `root`. The agents are started in parallel
    (protos.launcher: each reports its port on its first stdout line) and stopped with SIGTERM and
    --stop-jobs-on-exit, so no job outlives the fleet. Use as a context manager.
    """

    def __init__(self, layout: list[tuple[str, int]], source: Path, root: Path,
                 python: str = sys.executable, start_timeout: float = 60.0):
        if not layout:
            raise FleetError("a fleet needs at least one agent")
        self.layout = layout
        self.source = Path(source)
        self.root = Path(root)
        self.python = python
        self.start_timeout = start_timeout
        self.members: list[Member] = []

    @property
    def addresses(self) -> list[str]:
        return [m.address for m in self.members]

    def command(self, state_dir: Path, slots: int, listen: str = "127.0.0.1:0") -> list[str]:
        return reference_agent_argv(listen, source=self.source, state_dir=state_dir, slots=slots,
                                    extra=["--no-path-pythons", "--stop-jobs-on-exit", "--quiet"], python=self.python)

    def start(self) -> "Fleet":
        """Start every agent (in parallel); on any failure stop those started and raise FleetError."""
        self.source.mkdir(parents=True, exist_ok=True)
        pending = []
        for i, (group, slots) in enumerate(self.layout):
            state = self.root / f"agent-{i}"
            state.mkdir(parents=True, exist_ok=True)
            log = self.root / f"agent-{i}.log"
            agent = AgentProcess(lambda listen, state=state, slots=slots: self.command(state, slots, listen),
                                 startup_timeout=self.start_timeout, log_path=log)
            pending.append((i, group, slots, state, log, agent))
        errors: list[str] = []

        def start_one(item) -> None:
            i, group, slots, state, log, agent = item
            try:
                agent.start()
            except LaunchError as exc:
                errors.append(f"agent {i} did not start: {exc}")

        with ThreadPoolExecutor(max_workers=min(8, len(pending))) as pool:
            list(pool.map(start_one, pending))
        if errors:
            for *_, agent in pending:
                agent.stop()
            raise FleetError("; ".join(errors))
        self.members = [Member(i, group, slots, agent.address, state, log, agent)
                        for i, group, slots, state, log, agent in pending]
        return self

    def stop(self, timeout: float = 30.0) -> None:
        for m in self.members:
            if m.agent.alive():
                m.agent.proc.terminate()
        for m in self.members:
            m.agent.stop(timeout)
        self.members.clear()

    def __enter__(self) -> "Fleet":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
