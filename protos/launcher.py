"""One way to start an agent process and read its address: every package, bench and test uses it."""
from __future__ import annotations

import collections
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Sequence

import grpc

LISTENING = re.compile(r"listening on (\S+)")
"""The interface contract of an agent command: its first stdout line names its address."""

Command = Callable[[str], Sequence[str]]
"""Builds the argv of an agent for a listen address ("127.0.0.1:0" picks a free port)."""


class LaunchError(Exception):
    """The agent command did not start, did not print its address, or did not answer in time."""


def reference_agent_argv(listen: str, *, source: str | os.PathLike, state_dir: str | os.PathLike,
                         slots: int = 2, extra: Sequence[str] = (), python: str | None = None) -> list[str]:
    """The argv of `python -m reference_agent serve` for one listen address."""
    return [python or sys.executable, "-m", "reference_agent", "serve", "--listen", listen,
            "--source", str(source), "--state-dir", str(state_dir), "--slots", str(slots), *extra]


def reference_agent(source: str | os.PathLike, state_dir: str | os.PathLike, slots: int = 2,
                    extra: Sequence[str] = (), **kwargs) -> "AgentProcess":
    """An AgentProcess for the reference agent on `source` and `state_dir` (not started)."""
    return AgentProcess(lambda listen: reference_agent_argv(listen, source=source, state_dir=state_dir,
                                                            slots=slots, extra=extra), **kwargs)


class AgentProcess:
    """One agent command as a child process in its own process group.

    start() launches it and learns its address from the `listening on HOST:PORT` stdout line
    (then waits until a plaintext channel is ready, unless `probe=False`, e.g. for TLS);
    kill() sends SIGKILL (hard) or SIGTERM to the agent alone, so its jobs live on as after a
    crash; restart() starts it again on the same address, retrying while the old port is still
    held; stop() ends it and every process group it ever had. Usable as a context manager.
    """

    def __init__(self, command: Command, *, startup_timeout: float = 30.0, log_path: str | os.PathLike | None = None,
                 probe: bool = True, env: dict[str, str] | None = None, cwd: str | os.PathLike | None = None,
                 port_retries: int = 50):
        self.command = command
        self.startup_timeout = startup_timeout
        self.log_path = Path(log_path) if log_path else None
        self.probe = probe
        self.env = env
        self.cwd = cwd
        self.port_retries = port_retries
        self.address: str | None = None
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.output: collections.deque[str] = collections.deque(maxlen=200)
        self._found = threading.Event()
        self._groups: list[int] = []

    # --- lifecycle ---------------------------------------------------------------------
    def start(self, listen: str = "127.0.0.1:0") -> str:
        """Start the agent and return its address; LaunchError says why it could not."""
        attempts = 1 if listen.endswith(":0") else max(1, self.port_retries)
        for attempt in range(attempts):
            try:
                return self._start_once(listen)
            except LaunchError:
                if attempt + 1 >= attempts or not self._exited_early():
                    raise
                time.sleep(0.2)  # the port of a killed agent may take a moment to be free
        raise AssertionError("unreachable")

    def _exited_early(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def _start_once(self, listen: str) -> str:
        self._found.clear()
        argv = list(self.command(listen))
        if not argv:
            raise LaunchError("the agent command is empty")
        # without a log file, stderr joins stdout: the drain keeps the last lines for LaunchError
        log = open(self.log_path, "ab") if self.log_path else subprocess.STDOUT
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log,
                                         start_new_session=True, env=self.env, cwd=self.cwd)
        except OSError as exc:
            raise LaunchError(f"cannot start agent {argv!r}: {exc}") from None
        finally:
            if log is not subprocess.STDOUT:
                log.close()
        self._groups.append(self.proc.pid)
        threading.Thread(target=self._drain, args=(self.proc,), daemon=True, name="agent-stdout").start()
        deadline = time.monotonic() + self.startup_timeout
        while not self._found.wait(0.02):
            if self.proc.poll() is not None:
                self._found.wait(0.1)  # the drain thread may still hold the last lines
                if self._found.is_set():
                    break
                raise LaunchError(f"agent {argv!r} exited with {self.proc.returncode} before listening; "
                                  f"{self._last_words()}")
            if time.monotonic() > deadline:
                self.stop()
                raise LaunchError(f"agent {argv!r} printed no 'listening on HOST:PORT' line within "
                                  f"{self.startup_timeout:.0f} s")
        if self.probe:
            self.wait_ready(deadline)
        self.starts += 1
        return self.address  # type: ignore[return-value]

    def _last_words(self) -> str:
        """The end of what the agent printed (its log file when it has one): why it exited."""
        text = " | ".join(self.output)
        if self.log_path:
            try:
                with open(self.log_path, "rb") as log:
                    log.seek(max(0, log.seek(0, os.SEEK_END) - 2000))
                    tail = log.read().decode("utf-8", "replace").strip().splitlines()
                text = " | ".join(filter(None, [text, *tail[-8:]]))
            except OSError:
                pass
            return f"output: {text[-800:]}; see {self.log_path}"
        return f"output: {text[-800:]}"

    def _drain(self, proc: subprocess.Popen) -> None:
        for raw in proc.stdout:  # type: ignore[union-attr]
            line = raw.decode("utf-8", "replace").rstrip()
            self.output.append(line)
            match = LISTENING.search(line)
            if match and not self._found.is_set() and proc is self.proc:
                self.address = match.group(1)
                self._found.set()

    def wait_ready(self, deadline: float) -> None:
        # A call that waits for the connection, to a method no agent has: any answer (UNIMPLEMENTED,
        # UNAUTHENTICATED...) means it accepts gRPC connections. Not channel_ready_future, whose
        # polling thread raises "Channel closed!" after the channel is closed.
        with grpc.insecure_channel(self.address) as channel:
            ping = channel.unary_unary("/AgentLauncher/Ready", request_serializer=None, response_deserializer=None)
            try:
                ping(b"", timeout=max(0.1, deadline - time.monotonic()), wait_for_ready=True)
            except grpc.RpcError as exc:
                if exc.code() is grpc.StatusCode.DEADLINE_EXCEEDED:
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
        """kill(hard), then start again on the same address."""
        self.kill(hard)
        return self.start(self.address or "127.0.0.1:0")

    def terminate(self, timeout: float = 30.0) -> int | None:
        """SIGTERM the agent and wait for it (SIGKILL after `timeout`); its exit code."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    def stop(self, timeout: float = 3.0) -> None:
        """terminate(), then SIGKILL every process group the agent had (leftover jobs live there)."""
        self.terminate(timeout)
        for group in self._groups:
            try:
                os.killpg(group, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    # --- what callers read --------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def rss_mb(self) -> float:
        """Resident memory of the agent process in MB (NaN when it cannot be read)."""
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except (OSError, TypeError):
            pass
        return float("nan")

    def __enter__(self) -> "AgentProcess":
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
