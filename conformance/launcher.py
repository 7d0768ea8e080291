"""Start, SIGKILL and restart an agent command that the suite owns (embedded or --agent-cmd)."""
from __future__ import annotations

import collections
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time

import grpc

# The embedded default: the reference agent of this toolkit.
REFERENCE_CMD = (f"{shlex.quote(sys.executable)} -m reference_agent serve --listen {{listen}} "
                 f"--source {{source}} --state-dir {{state_dir}} --slots {{slots}}")
PLACEHOLDERS = ("listen", "source", "state_dir", "slots")
_LISTENING = re.compile(r"listening on (\S+)")


class LaunchError(Exception):
    """The agent command did not start or did not answer in time."""


def check_command(template: str) -> None:
    """Raise ValueError naming the problem when `template` is not a usable --agent-cmd."""
    if "{listen}" not in template:
        raise ValueError(f"--agent-cmd {template!r} has no {{listen}} placeholder: the suite must choose "
                         f"the address (it restarts the agent on the same one)")
    try:
        template.format(**{k: "x" for k in PLACEHOLDERS})
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(f"--agent-cmd {template!r}: bad placeholder {exc}; known: "
                         f"{', '.join('{' + p + '}' for p in PLACEHOLDERS)}") from None
    if not shlex.split(template):
        raise ValueError("--agent-cmd is empty")


class AgentProcess:
    """One agent command. start() launches it on 127.0.0.1:0 and learns the port from its
    `listening on HOST:PORT` stdout line; restart() starts it again with the same address and
    state directory after SIGKILL (hard=True) or SIGTERM. stop() ends it and its process group."""

    def __init__(self, template: str, *, source: str, state_dir: str, slots: int,
                 startup_timeout: float = 30.0, log_path: str | None = None, insecure_probe: bool = True):
        check_command(template)
        self.template = template
        self.values = {"source": source, "state_dir": state_dir, "slots": str(slots)}
        self.startup_timeout = startup_timeout
        self.log_path = log_path
        self.insecure_probe = insecure_probe   # False for a TLS agent: the address line is enough
        self.address: str | None = None
        self.proc: subprocess.Popen | None = None
        self.output: collections.deque[str] = collections.deque(maxlen=200)
        self._found = threading.Event()
        self._groups: list[int] = []   # process groups of every start: jobs of a killed agent live on there

    def command(self, listen: str) -> list[str]:
        return shlex.split(self.template.format(listen=listen, **self.values))

    def start(self, listen: str = "127.0.0.1:0") -> str:
        self._found.clear()
        argv = self.command(listen)
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=log, start_new_session=True)
        except OSError as exc:
            raise LaunchError(f"cannot start agent {argv!r}: {exc}") from None
        finally:
            if log is not subprocess.DEVNULL:
                log.close()
        self._groups.append(self.proc.pid)
        threading.Thread(target=self._drain, args=(self.proc,), daemon=True).start()
        deadline = time.monotonic() + self.startup_timeout
        while not self._found.wait(0.02):
            if self.proc.poll() is not None:
                raise LaunchError(f"agent {argv!r} exited with {self.proc.returncode} before listening; "
                                  f"output: {' | '.join(self.output)[-800:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise LaunchError(f"agent {argv!r} printed no 'listening on HOST:PORT' line within "
                                  f"{self.startup_timeout:.0f} s")
        if self.insecure_probe:
            self.wait_ready(deadline)
        return self.address  # type: ignore[return-value]

    def _drain(self, proc: subprocess.Popen) -> None:
        for raw in proc.stdout:  # type: ignore[union-attr]
            line = raw.decode("utf-8", "replace").rstrip()
            self.output.append(line)
            match = _LISTENING.search(line)
            if match and not self._found.is_set() and proc is self.proc:
                self.address = match.group(1)
                self._found.set()

    def wait_ready(self, deadline: float) -> None:
        with grpc.insecure_channel(self.address) as channel:
            try:
                grpc.channel_ready_future(channel).result(timeout=max(0.1, deadline - time.monotonic()))
            except grpc.FutureTimeoutError:
                raise LaunchError(f"agent at {self.address} does not accept connections") from None

    def kill(self, hard: bool = True) -> None:
        """SIGKILL (hard) or SIGTERM the agent process only: its jobs may live on, as after a crash."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGKILL if hard else signal.SIGTERM)
        try:
            proc.wait(timeout=self.startup_timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def restart(self, hard: bool = True) -> str:
        self.kill(hard)
        address = self.address
        return self.start(address or "127.0.0.1:0")

    def stop(self) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for group in self._groups:  # leftover jobs of the agents we started live in their process groups
            try:
                os.killpg(group, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
