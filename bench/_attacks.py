"""Chaos faults of issue 18 against a running agent: half-open calls, a connection flood, no
descriptor left (EMFILE), and a pids limit on the agent's own process. Each lasts `hold`
seconds while a job is submitted; the job must end DONE having run (never charged with the
agent's fault), and the agent must answer a well-behaved client afterwards."""
from __future__ import annotations

import asyncio
import resource
import socket
import threading
import time
import uuid
from pathlib import Path

RUN_JOB = "/Agent/RunJob"
PIDS_V1 = Path("/sys/fs/cgroup/pids")


class HalfOpen:
    """`calls` calls over `connections` connections that send HEADERS and never their request
    message (a grpc.aio request stream that never yields), held until `close()`."""

    def __init__(self, address: str, calls: int, connections: int):
        self.address, self.calls, self.connections = address, calls, connections
        self._release: asyncio.Event | None = None
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(self._main(),), daemon=True)

    def __enter__(self) -> "HalfOpen":
        self._thread.start()
        self._ready.wait(30)
        return self

    def __exit__(self, *exc) -> None:
        if self._release is not None:
            self._loop.call_soon_threadsafe(self._release.set)
        self._thread.join(30)

    async def _main(self) -> None:
        import grpc

        self._release = asyncio.Event()
        channels = [grpc.aio.insecure_channel(self.address, options=[("grpc.use_local_subchannel_pool", 1)])
                    for _ in range(self.connections)]

        async def never():
            await self._release.wait()
            return
            yield  # pragma: no cover

        tasks = [asyncio.ensure_future(channels[i % self.connections].stream_unary(RUN_JOB)(never(), timeout=600))
                 for i in range(self.calls)]
        await asyncio.sleep(0.5)
        self._ready.set()
        await self._release.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for channel in channels:
            await channel.close()


class ConnectionFlood:
    """`count` idle TCP connections (no token, no TLS, nothing sent), held until `close()`."""

    def __init__(self, address: str, count: int):
        host, port = address.rsplit(":", 1)
        self.socks: list[socket.socket] = []
        for _ in range(count):
            try:
                self.socks.append(socket.create_connection((host, int(port)), timeout=5))
            except OSError:
                break  # the agent's cap, or this process's own descriptors: enough

    def close(self) -> None:
        for sock in self.socks:
            sock.close()


class NoDescriptors:
    """The agent's RLIMIT_NOFILE soft limit lowered to what it holds now (prlimit), then restored."""

    def __init__(self, pid: int):
        self.pid = pid
        self.saved = resource.prlimit(pid, resource.RLIMIT_NOFILE)
        held = len(list(Path(f"/proc/{pid}/fd").iterdir()))
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (held, self.saved[1]))

    def close(self) -> None:
        try:
            resource.prlimit(self.pid, resource.RLIMIT_NOFILE, self.saved)
        except ProcessLookupError:
            pass


class PidsLimit:
    """The agent's process moved into a fresh v1 pids cgroup whose pids.max leaves it `headroom`
    tasks; `close()` lifts the limit (the cgroup is removed once the agent leaves it: a restart)."""

    def __init__(self, pid: int, headroom: int):
        self.directory = PIDS_V1 / f"chaos-agent-{uuid.uuid4().hex[:8]}"
        self.directory.mkdir()
        (self.directory / "cgroup.procs").write_text(str(pid))
        current = int((self.directory / "pids.current").read_text())
        (self.directory / "pids.max").write_text(str(current + headroom))

    def close(self) -> None:
        (self.directory / "pids.max").write_text("max")

    @staticmethod
    def usable() -> str | None:
        """None when a pids cgroup can be made here, else why not."""
        return None if (PIDS_V1 / "cgroup.procs").exists() else "no v1 pids hierarchy at /sys/fs/cgroup/pids"


def remove_pids_cgroups() -> None:
    """The chaos cgroups left empty by restarted agents."""
    for directory in PIDS_V1.glob("chaos-agent-*"):
        try:
            directory.rmdir()
        except OSError:
            pass


def hold_and_submit(faults, kind: str, fault, hold: float) -> None:
    """While `fault` holds: submit a job (retrying the agent's refusals); then lift the fault.
    The job joins faults.jobs, which must all end DONE; the agent's journal says whether it ran."""
    job, data = str(uuid.uuid4()), faults._new_data()
    try:
        channel, client = faults._client()
        with channel:
            try:
                faults._until_ok(client.stage_in, job, [faults.script, data], seconds=hold + 10)
                faults._until_ok(client.run, job, [faults.script, data], seconds=hold + 10)
                faults.jobs.append(job)
            except Exception as exc:  # noqa: BLE001 - the fault refused it: retried after
                faults.refused[kind] += 1
                faults.examples.append(f"{kind}: submission refused during the fault: {str(exc)[:120]}")
            time.sleep(hold)
    finally:
        fault.close()
    if job not in faults.jobs:
        channel, client = faults._client()
        with channel:
            faults._until_ok(client.stage_in, job, [faults.script, data])
            faults._until_ok(client.run, job, [faults.script, data])
        faults.jobs.append(job)


def done_without_running(journal: Path) -> list[str]:
    """Jobs the agent ended at start (note 'could not start'): charged with a failure to start."""
    import sqlite3

    db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=10)
    try:
        return [r[0] for r in db.execute("SELECT job FROM jobs WHERE note LIKE 'could not start%'")]
    finally:
        db.close()
