"""Faults chaos injects besides SIGKILL: a full disk, a second agent on the state directory, a removed journal."""
from __future__ import annotations

import errno
import os
import shutil
import subprocess
import time
import uuid
from collections import Counter
from pathlib import Path

from protos import launcher

import _attacks

KINDS = ("kill", "disk-stage", "disk-submit", "disk-end", "second-agent", "journal-removed",
         "half-open", "conn-flood", "emfile", "pids-limit")
DISK_KINDS = frozenset({"disk-stage", "disk-submit", "disk-end"})
JOURNAL_FILES = ("journal.sqlite3", "journal.sqlite3-wal", "journal.sqlite3-shm")

# A job that runs a while, so that it ends while the disk is full (it leaves a witness too).
SLEEPER = "import time\ntime.sleep(0.3)\n"


def parse_kinds(text: str) -> tuple[str, ...]:
    """"kill,disk-end" or "all" -> the kinds, in order; ValueError names a kind it does not know."""
    kinds = KINDS if text == "all" else tuple(k.strip() for k in text.split(",") if k.strip())
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise ValueError(f"{text!r}: fault kinds are {', '.join(KINDS)} or all")
    return kinds


class SmallDisk:
    """A tmpfs mounted at the state directory, filled to the last byte by one file on demand."""

    def __init__(self, mount: Path, size: str):
        self.mount, self.size, self.filler = mount, size, mount / "disk-filler"
        self.mounted = False

    def try_mount(self) -> str | None:
        """Mount; return why not (not root, no tmpfs) or None."""
        self.mount.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.size},mode=0700", "tmpfs",
                               str(self.mount)], capture_output=True, text=True)
        self.mounted = done.returncode == 0
        return None if self.mounted else (done.stderr.strip() or f"mount exited {done.returncode}")

    def fill(self) -> None:
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for block in (1 << 20, 4096, 1):
                try:
                    while True:
                        os.write(fd, b"\0" * block)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
        finally:
            os.close(fd)

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)

    def unmount(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.mount)], capture_output=True)
            self.mounted = False


class Faults:
    """Injects one fault of a kind at a time into a running agent (an _load.AgentProcess) and
    records what it saw: `injected` and `refused` per kind (a refusal is the agent's correct
    answer: RESOURCE_EXHAUSTED with the disk full, exit 2 for a second agent or a missing
    journal), `violations` (a wrong answer), and jobs it submitted itself (`jobs`), which must
    all end DONE, once, like the load's."""

    def __init__(self, agent, address: str, source: Path, script: str, work: Path, disk: SmallDisk | None,
                 hold: float = 0.5):
        self.agent, self.address, self.source, self.script, self.work = agent, address, source, script, work
        self.disk, self.hold = disk, hold
        self.injected, self.refused, self.violations = Counter(), Counter(), Counter()
        self.examples: list[str] = []
        self.jobs: list[str] = []
        self.downtimes: list[float] = []
        self.sleeper = str(uuid.uuid4())
        (source / self.sleeper).write_text(SLEEPER)

    def inject(self, kind: str) -> None:
        self.injected[kind] += 1
        getattr(self, kind.replace("-", "_"))()

    def _violation(self, kind: str, text: str) -> None:
        self.violations[kind] += 1
        if len(self.examples) < 20:
            self.examples.append(f"{kind}: {text}")

    def _client(self):
        import grpc

        from protos.client import AgentClient

        channel = grpc.insecure_channel(self.address)
        return channel, AgentClient(channel, timeout=30)

    @staticmethod
    def _code(fn, *args) -> str:
        from protos.client import AgentCallError

        try:
            fn(*args)
            return "OK"
        except AgentCallError as exc:
            return exc.code_name

    def _until_ok(self, fn, *args, seconds: float = 60.0):
        """Call until it answers OK (the agent may be busy after a fault); its value."""
        from protos.client import AgentCallError

        end = time.monotonic() + seconds
        while True:
            try:
                return fn(*args)
            except AgentCallError as exc:
                if exc.code_name not in ("UNAVAILABLE", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED") \
                        or time.monotonic() > end:
                    raise
                time.sleep(0.1)

    def _new_data(self) -> str:
        data = str(uuid.uuid4())
        (self.source / data).write_bytes(data.encode() * 8)  # what the witness script checks
        return data

    def _judge(self, kind: str, code: str) -> None:
        """RESOURCE_EXHAUSTED is the refusal a full disk calls for; OK means the write found
        room (SQLite reuses its WAL); anything else (UNKNOWN above all) is a violation."""
        if code == "RESOURCE_EXHAUSTED":
            self.refused[kind] += 1
        elif code != "OK":
            self._violation(f"{kind}: wrong status", code)

    # --- the kinds ----------------------------------------------------------------------
    def half_open(self) -> None:
        with _attacks.HalfOpen(self.address, calls=200, connections=10) as attack:
            _attacks.hold_and_submit(self, "half-open", _Nothing(), self.hold)
            del attack

    def conn_flood(self) -> None:
        _attacks.hold_and_submit(self, "conn-flood", _attacks.ConnectionFlood(self.address, 300), self.hold)

    def emfile(self) -> None:
        _attacks.hold_and_submit(self, "emfile", _attacks.NoDescriptors(self.agent.pid), self.hold)

    def pids_limit(self) -> None:
        why = _attacks.PidsLimit.usable() if os.geteuid() == 0 else "not root"
        if why:
            self.examples.append(f"pids-limit not injected: {why}")
            return
        _attacks.hold_and_submit(self, "pids-limit", _attacks.PidsLimit(self.agent.pid, headroom=24), self.hold)

    def kill(self) -> None:
        self.agent.kill()
        down = time.monotonic()
        self.agent.start(self.address)
        self.downtimes.append(time.monotonic() - down)

    def disk_stage(self) -> None:
        job, data = str(uuid.uuid4()), self._new_data()
        channel, client = self._client()
        with channel:
            self.disk.fill()
            try:
                code = self._code(client.stage_in, job, [self.script, data])
                time.sleep(self.hold)
            finally:
                self.disk.free()
            self._judge("disk-stage", code)
            staged = self._until_ok(client.stage_in, job, [self.script, data])
            if staged != [self.script, data]:
                self._violation("disk-stage: staged", f"{job}: {staged}")
                return
            self._until_ok(client.run, job, [self.script, data])
            self.jobs.append(job)

    def disk_submit(self) -> None:
        job, data = str(uuid.uuid4()), self._new_data()
        channel, client = self._client()
        with channel:
            self._until_ok(client.stage_in, job, [self.script, data])
            self.disk.fill()
            try:
                code = self._code(client.run, job, [self.script, data])
                time.sleep(self.hold)
            finally:
                self.disk.free()
            self._judge("disk-submit", code)
            self._until_ok(client.run, job, [self.script, data])  # a repeat if it went in before
            self.jobs.append(job)

    def disk_end(self) -> None:
        """Jobs end while the disk is full: the load's and one sleeper of our own."""
        job = str(uuid.uuid4())
        channel, client = self._client()
        with channel:
            self._until_ok(client.stage_in, job, [self.sleeper])
            self._until_ok(client.run, job, [self.sleeper])
            self.jobs.append(job)
            self.disk.fill()
            try:
                time.sleep(max(self.hold, 0.6))  # > the sleeper's run: it ends while full if it ran
            finally:
                self.disk.free()
        # Whether an end met the full disk is counted from the agent's log (ends_recorded_late).

    def second_agent(self) -> None:
        log = self.work / "second-agent.log"
        other = type(self.agent)(self.agent.source, self.agent.state, log, self.agent.slots, [])
        try:
            other.start("127.0.0.1:0")
        except launcher.LaunchError as exc:
            text = log.read_text() if log.exists() else ""
            if "exited with 2" in str(exc) and f"pid {self.agent.pid}" in text:
                self.refused["second-agent"] += 1
            else:
                self._violation("second agent: wrong refusal", str(exc)[-300:])
            return
        finally:
            other.stop()
        self._violation("second agent started", f"a second agent served {other.address} on the same state")

    def journal_removed(self) -> None:
        """SIGKILL; journal moved away: the agent must refuse to start (exit 2); with
        --accept-lost-journal (tried on a copy of the state) it must start; then the journal
        comes back and the agent starts as before."""
        state = self.agent.state
        self.agent.kill()
        down = time.monotonic()
        backup = self.work / f"journal-backup-{self.injected['journal-removed']}"
        backup.mkdir()
        for name in JOURNAL_FILES:
            if (state / name).exists():
                shutil.move(state / name, backup / name)
        try:
            self._refused_without_journal(state)
            self._starts_with_the_flag(state)
        finally:
            for name in JOURNAL_FILES:
                (state / name).unlink(missing_ok=True)
                if (backup / name).exists():
                    shutil.move(backup / name, state / name)
        self.agent.start(self.address)
        self.downtimes.append(time.monotonic() - down)

    def _refused_without_journal(self, state: Path) -> None:
        log = self.work / "no-journal.log"
        refused = type(self.agent)(self.agent.source, state, log, self.agent.slots, [])
        try:
            refused.start("127.0.0.1:0")
        except launcher.LaunchError as exc:
            if "exited with 2" in str(exc) and "is missing" in (log.read_text() if log.exists() else ""):
                self.refused["journal-removed"] += 1
            else:
                self._violation("no journal: wrong refusal", str(exc)[-300:])
            return
        finally:
            refused.stop()
        self._violation("started without its journal", "the agent served with jobs/ but no journal")

    def _starts_with_the_flag(self, state: Path) -> None:
        copy = self.work / "lost-journal-copy"
        shutil.copytree(state, copy, symlinks=True,
                        ignore=shutil.ignore_patterns("journal.sqlite3*", "agent.lock", "disk-filler"))
        flagged = type(self.agent)(self.agent.source, copy, self.work / "flagged.log", self.agent.slots,
                                   ["--accept-lost-journal"])
        try:
            flagged.start("127.0.0.1:0")
            if not list(copy.glob("lost-*")):
                self._violation("--accept-lost-journal", "started but moved nothing aside")
        except launcher.LaunchError as exc:
            self._violation("--accept-lost-journal refused", str(exc)[-300:])
        finally:
            flagged.stop()
            shutil.rmtree(copy, ignore_errors=True)


def scrape(port: int) -> dict[str, float]:
    """agent_slots_busy, agent_queue_length and agent_jobs{state=...} from the metrics endpoint."""
    import urllib.request

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith(("agent_slots_busy ", "agent_queue_length ", "agent_jobs{")):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def ends_recorded_late(log: Path) -> int:
    """Job ends the agent kept in memory while its journal could not be written (its log says)."""
    try:
        return sum('"end recorded late"' in line for line in log.read_text(errors="replace").splitlines())
    except OSError:
        return 0


class _Nothing:
    def close(self) -> None:
        pass
