"""AGT-DUR-1 with a real `reference-agent serve` process: SIGKILL and SIGTERM, then restart."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import grpc

from agent_helpers import code_of, new_id
from protos import launcher
from protos.client import AgentClient


class AgentProcess:
    """`python -m reference_agent serve` started by protos.launcher, with a client and helpers."""

    def __init__(self, tmp: Path, listen: str = "127.0.0.1:0", slots: int = 2, extra=()):
        self.tmp = tmp
        self.source = tmp / "source"
        self.state = tmp / "state"
        self.source.mkdir(exist_ok=True)
        self.agent = launcher.reference_agent(self.source, self.state, slots, ["--no-path-pythons", *extra],
                                              log_path=tmp / "agent.stderr", startup_timeout=60)
        self.address = self.agent.start(listen)
        self.proc = self.agent.proc
        self.channel = grpc.insecure_channel(self.address)
        self.client = AgentClient(self.channel, timeout=20)

    def put(self, code: str) -> str:
        f = new_id()
        (self.source / f).write_text(code)
        return f

    def submit(self, code: str) -> tuple[str, str]:
        job, entry = new_id(), self.put(code)
        assert self.client.stage_in(job, [entry]) == [entry]
        self.client.run(job, [entry])
        return job, entry

    def pid_of(self, job: str) -> int | None:
        with sqlite3.connect(self.state / "journal.sqlite3") as db:
            row = db.execute("SELECT pid FROM jobs WHERE job=?", (job,)).fetchone()
        return row[0] if row else None

    def wait_state(self, job: str, name: str, deadline: float = 20.0) -> None:
        end = time.monotonic() + deadline
        while self.client.run(job).name != name:
            assert time.monotonic() < end, f"{job} not {name} after {deadline} s"
            time.sleep(0.02)

    def stop(self, sig=signal.SIGTERM, timeout: float = 20.0) -> int:
        self.channel.close()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)


def _kill_group(pid):
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, TypeError):
        pass


def _live_members(pgid: int) -> list[int]:
    """Pids in process group pgid that are alive (zombies waiting for init do not count)."""
    live = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
                live.append(int(entry))
    return live


def _group_gone(pgid: int, within: float) -> bool:
    end = time.monotonic() + within
    while time.monotonic() < end:
        if not _live_members(pgid):
            return True
        time.sleep(0.02)
    return False


def test_dur_1_sigkill_and_restart(tmp_path):
    """AGT-DUR-1: after SIGKILL, DONE stays DONE, a live RUN job is RUN then DONE (adopted, not
    run again), a RUN job whose process died meanwhile is DONE, WAIT stays WAIT and runs later,
    files staged for an unsubmitted job are still staged."""
    marks = tmp_path / "marks"
    marks.mkdir()
    mark = "open({!r} + '/' + {!r}, 'a').write('x')\n"
    first = AgentProcess(tmp_path, slots=2)
    done_job, _ = first.submit(mark.format(str(marks), "done"))
    first.wait_state(done_job, "DONE")
    short_job, _ = first.submit("import time; time.sleep(2.5)\n" + mark.format(str(marks), "short"))
    long_job, _ = first.submit("import time; time.sleep(60)\n")
    first.wait_state(short_job, "RUN")
    first.wait_state(long_job, "RUN")
    waiting_job, _ = first.submit(mark.format(str(marks), "waiting"))
    staged_job, staged_file = new_id(), first.put(mark.format(str(marks), "staged"))
    assert first.client.stage_in(staged_job, [staged_file]) == [staged_file]
    dying_pid = None
    try:
        assert first.client.run(waiting_job).name == "WAIT"
        assert first.stop(signal.SIGKILL) == -signal.SIGKILL
        long_pid = first.pid_of(long_job)
        # the long job dies while the agent is down; the short one survives and is adopted
        dying_pid = long_pid
        _kill_group(long_pid)
        (first.source / staged_file).unlink()  # staged means on the agent, not in the source
        second = AgentProcess(tmp_path, listen=first.address, slots=2)
        try:
            c = second.client
            assert c.run(done_job).name == "DONE"
            assert c.run(long_job).name == "DONE"
            assert c.run(short_job).name == "RUN"
            assert c.run(staged_job, [staged_file]).name in ("WAIT", "RUN", "DONE")
            for job in (short_job, waiting_job, staged_job):
                second.wait_state(job, "DONE", deadline=30)
            for name in ("done", "short", "waiting", "staged"):
                assert (marks / name).read_text() == "x", name  # each ran exactly once
            assert code_of(c.stage_in, staged_job, [staged_file]) == "FAILED_PRECONDITION"
        finally:
            assert second.stop() == 0
    finally:
        _kill_group(dying_pid)


def test_dur_1_sigterm_is_clean_and_running_jobs_are_adopted(tmp_path):
    """SIGTERM: exit 0 quickly; the running job keeps running and the next start reports RUN."""
    first = AgentProcess(tmp_path, slots=1)
    job, _ = first.submit("import time; time.sleep(60)\n")
    first.wait_state(job, "RUN")
    queued, _ = first.submit("print('queued')\n")
    pid = first.pid_of(job)
    try:
        started = time.monotonic()
        assert first.stop(signal.SIGTERM) == 0
        assert time.monotonic() - started < 10
        os.killpg(pid, 0)  # still alive
        second = AgentProcess(tmp_path, listen=first.address, slots=1)
        try:
            assert second.client.run(job).name == "RUN"
            assert second.client.run(queued).name == "WAIT"  # the adopted job holds the slot
            os.killpg(pid, signal.SIGKILL)
            second.wait_state(job, "DONE")
            second.wait_state(queued, "DONE")
        finally:
            assert second.stop(signal.SIGINT) == 0
    finally:
        _kill_group(pid)


def test_stop_jobs_on_exit_marks_them_interrupted(tmp_path):
    first = AgentProcess(tmp_path, slots=1, extra=("--stop-jobs-on-exit",))
    job, _ = first.submit("import time; time.sleep(60)\n")
    first.wait_state(job, "RUN")
    pid = first.pid_of(job)
    assert first.stop() == 0
    assert _group_gone(pid, within=5.0)
    second = AgentProcess(tmp_path, listen=first.address, slots=1)
    try:
        assert second.client.run(job).name == "DONE"
    finally:
        second.stop()
    out = subprocess.run([sys.executable, "-m", "reference_agent", "job", job, "--state-dir",
                          str(tmp_path / "state")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "interrupted" in out.stdout
