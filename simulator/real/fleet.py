"""A fleet of local reference-agent processes (one shared file source), for calibration and replay."""
from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


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
    proc: subprocess.Popen


class Fleet:
    """K reference agents started as `python -m reference_agent serve` processes on 127.0.0.1:0.

    `layout` is a list of (group name, slots) per agent. Every agent reads the same `source`
    directory and has its own state directory under `root`. The agents are started in parallel
    (each reports its port on its first stdout line) and stopped with SIGTERM and
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

    def command(self, state_dir: Path, slots: int) -> list[str]:
        return [self.python, "-m", "reference_agent", "serve", "--listen", "127.0.0.1:0",
                "--source", str(self.source), "--state-dir", str(state_dir), "--slots", str(slots),
                "--no-path-pythons", "--stop-jobs-on-exit", "--quiet"]

    def start(self) -> "Fleet":
        self.source.mkdir(parents=True, exist_ok=True)
        pending = []
        repo = Path(__file__).resolve().parent.parent
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(repo), env.get("PYTHONPATH", "")) if p)
        try:
            for i, (group, slots) in enumerate(self.layout):
                state = self.root / f"agent-{i}"
                state.mkdir(parents=True, exist_ok=True)
                log = self.root / f"agent-{i}.log"
                with open(log, "wb") as err:
                    proc = subprocess.Popen(self.command(state, slots), stdout=subprocess.PIPE, stderr=err,
                                            stdin=subprocess.DEVNULL, env=env)
                pending.append((i, group, slots, state, log, proc))
            end = time.monotonic() + self.start_timeout
            for i, group, slots, state, log, proc in pending:
                line = self._first_line(proc, end)
                if not line.startswith("listening on "):
                    raise FleetError(f"agent {i} ({' '.join(self.command(state, slots)[:4])} ...) did not start: "
                                     f"first line {line!r}; see {log}")
                self.members.append(Member(i, group, slots, line.split()[-1], state, log, proc))
        except BaseException:
            for *_, proc in pending:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(10)
                if proc.stdout:
                    proc.stdout.close()
            self.members.clear()
            raise
        return self

    @staticmethod
    def _first_line(proc: subprocess.Popen, end: float) -> str:
        remaining = max(0.0, end - time.monotonic())
        ready, _, _ = select.select([proc.stdout], [], [], remaining)
        return proc.stdout.readline().decode(errors="replace").strip() if ready else ""

    def stop(self, timeout: float = 30.0) -> None:
        for m in self.members:
            if m.proc.poll() is None:
                m.proc.send_signal(signal.SIGTERM)
        for m in self.members:
            try:
                m.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                m.proc.kill()
                m.proc.wait(10)
            if m.proc.stdout:
                m.proc.stdout.close()
        self.members.clear()

    def __enter__(self) -> "Fleet":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
