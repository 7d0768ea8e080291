"""Issue 18.2: the agent's own faults are never charged to jobs.

A start the agent cannot make (EMFILE: no descriptor left; EROFS: jobs/ read-only; EAGAIN:
fork refused at a pids limit) leaves the job WAIT in its place; it starts once the agent can,
its cause logged. Each fault is made at the OS boundary of a real agent: its RLIMIT_NOFILE
lowered with prlimit, a read-only bind mount, a pids cgroup's limit."""
from __future__ import annotations

import json
import resource
import textwrap
import time

import pytest

from protos.client import AgentClient
from protos.states import JobState
from fault_helpers import agent_in_cgroup, open_fds, pids_cgroup, read_only, wait_for
from reliability_helpers import new_id

pytestmark = pytest.mark.timeout(90)


def _put(source, code: str) -> str:
    file = new_id()
    (source / file).write_text(textwrap.dedent(code))
    return file


def _deferred(log_path, job: str) -> list[dict]:
    found = []
    for line in log_path.read_text().splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("job") == job and entry.get("event") == "start deferred":
                found.append(entry)
    return found


def _journal_row(tmp_path, job: str):
    import sqlite3

    db = sqlite3.connect(f"file:{tmp_path / 'state0' / 'journal.sqlite3'}?mode=ro", uri=True, timeout=5)
    try:
        row = db.execute("SELECT state, reason FROM jobs WHERE job=?", (job,)).fetchone()
    finally:
        db.close()
    return tuple(row) if row else None


def _stays_waiting_then_runs(client, job: str, log_path, cause: str, undo) -> None:
    """The job is WAIT while the fault lasts (at least two deferred starts), then DONE after undo."""
    wait_for(lambda: len(_deferred(log_path, job)) >= 2, within=20, what=f"two starts deferred by {cause}")
    assert client.status(job) == JobState.WAIT
    assert {entry["cause"] for entry in _deferred(log_path, job)} == {cause}
    undo()
    assert client.wait_until_done(job, deadline=30).final == JobState.DONE


def test_emfile_leaves_the_job_waiting(tmp_path):
    agent = agent_in_cgroup(tmp_path, None, slots=1)
    address = agent.start()
    try:
        with AgentClient.connect(address, timeout=10) as client:
            job, entry = new_id(), _put(tmp_path / "source0", "print('ran after EMFILE')")
            client.stage(job, [entry])
            limits = resource.prlimit(agent.pid, resource.RLIMIT_NOFILE)
            resource.prlimit(agent.pid, resource.RLIMIT_NOFILE, (open_fds(agent.pid), limits[1]))
            try:
                assert client.run(job, [entry]) == JobState.WAIT
            finally:
                undo = lambda: resource.prlimit(agent.pid, resource.RLIMIT_NOFILE, limits)  # noqa: E731
            _stays_waiting_then_runs(client, job, tmp_path / "agent0.log", "EMFILE", undo)
            out = tmp_path / "state0" / "jobs" / job / "stdout"
            assert out.read_text() == "ran after EMFILE\n"
    finally:
        agent.stop()


def test_read_only_jobs_directory_leaves_the_job_waiting(tmp_path):
    agent = agent_in_cgroup(tmp_path, None, slots=1)
    address = agent.start()
    release = tmp_path / "release"
    try:
        with AgentClient.connect(address, timeout=10) as client:
            holder, hold = new_id(), _put(tmp_path / "source0", f"""
                import os, time
                end = time.monotonic() + 60
                while not os.path.exists({str(release)!r}) and time.monotonic() < end:
                    time.sleep(0.02)
                """)
            client.stage(holder, [hold])
            client.submit(holder, [hold])
            wait_for(lambda: client.status(holder) == JobState.RUN, what="the holder running")
            job, entry = new_id(), _put(tmp_path / "source0", "print('ran after EROFS')")
            client.stage(job, [entry])
            assert client.run(job, [entry]) == JobState.WAIT  # behind the holder
            with read_only(tmp_path / "state0" / "jobs"):
                release.touch()
                wait_for(lambda: client.status(holder) == JobState.DONE, what="the holder done")
                wait_for(lambda: len(_deferred(tmp_path / "agent0.log", job)) >= 2, within=20,
                         what="two starts deferred by EROFS")
                assert client.status(job) == JobState.WAIT
            assert {e["cause"] for e in _deferred(tmp_path / "agent0.log", job)} == {"EROFS"}
            assert client.wait_until_done(job, deadline=30).final == JobState.DONE
            assert (tmp_path / "state0" / "jobs" / job / "stdout").read_text() == "ran after EROFS\n"
    finally:
        agent.stop()


def test_fork_refused_at_a_pids_limit_leaves_the_job_waiting(tmp_path):
    """The limit is set while a holder job keeps the slot; when the holder ends, the agent's
    cgroup is over its limit: no task can be made. The next job is not charged for it: it
    starts once the limit is raised and runs (its state is read over the wire after: grpc too
    is refused threads meanwhile)."""
    release = tmp_path / "release"
    with pids_cgroup(10_000) as cgroup:
        agent = agent_in_cgroup(tmp_path, cgroup, slots=1)
        address = agent.start()
        log = tmp_path / "agent0.log"
        try:
            with AgentClient.connect(address, timeout=10) as client:
                started = tmp_path / "holder-started"
                holder, hold = new_id(), _put(tmp_path / "source0", f"""
                    import os, time
                    open({str(started)!r}, "w").close()
                    end = time.monotonic() + 60
                    while not os.path.exists({str(release)!r}) and time.monotonic() < end:
                        time.sleep(0.02)
                    """)
                client.stage(holder, [hold])
                client.submit(holder, [hold])
                wait_for(lambda: client.status(holder) == JobState.RUN, what="the holder RUN")
                wait_for(started.exists, what="the holder's interpreter running")  # RUN comes a little before
                job, entry = new_id(), _put(tmp_path / "source0", "print('ran after EAGAIN')")
                client.stage(job, [entry])
                assert client.run(job, [entry]) == JobState.WAIT  # behind the holder
                holder_cgroup = next(cgroup.glob(f"reference-agent-*/{holder}"))
                agent_tasks = int((cgroup / "pids.current").read_text()) - int((holder_cgroup / "pids.current").read_text())
                (cgroup / "pids.max").write_text(str(agent_tasks - 4))  # below: threads that end free no room
                try:
                    release.touch()
                    holder_gone = lambda: not (holder_cgroup / "cgroup.procs").exists() or not (  # noqa: E731
                        holder_cgroup / "cgroup.procs").read_text().split()
                    wait_for(holder_gone, within=30, what="the holder gone")
                    time.sleep(2)  # the fault lasts: the job must not end meanwhile
                finally:
                    (cgroup / "pids.max").write_text("10000")
                # grpc is refused threads too and holds its fork lock while it retries: the start
                # either failed (EAGAIN, deferred) or waited; it never ended the job
                # Read from the journal: after refused thread creations grpc may stay wedged for
                # calls on the old connection (a grpc matter, reported; the reserve of 18.3 is
                # what keeps the agent away from this limit).
                wait_for(lambda: _journal_row(tmp_path, job) == (2, "succeeded"), within=30, what="the job DONE")
                # fork, a thread or the launcher's exec refused (EAGAIN), or a launcher that died
                # before its interpreter ran (LauncherLost: SIGABRT in a fork handler): all the agent's
                assert {e["cause"] for e in _deferred(log, job)} <= {"EAGAIN", "LauncherLost"}
                assert (tmp_path / "state0" / "jobs" / job / "stdout").read_text() == "ran after EAGAIN\n"
                assert _journal_row(tmp_path, holder) == (2, "succeeded")
            assert agent.alive()
        finally:
            agent.stop()


def test_eagain_from_fork_is_retried_with_backoff(start_agent, monkeypatch):
    """EAGAIN injected at the process-creation call (the OS boundary) for the first three
    launches: the job stays WAIT, each start deferred and counted, then it runs."""
    import subprocess

    from reference_agent import processes
    from reference_agent.telemetry import Telemetry
    import io

    log = io.StringIO()
    agent = start_agent(slots=1, telemetry=Telemetry(stream=log))
    refusals = {"left": 3}
    real_popen = subprocess.Popen

    def popen(*args, **kwargs):
        if refusals["left"] > 0:
            refusals["left"] -= 1
            raise BlockingIOError(11, "Resource temporarily unavailable")
        return real_popen(*args, **kwargs)

    monkeypatch.setattr(processes.subprocess, "Popen", popen)
    job = agent.submit("print('ran after three refusals')")
    assert agent.wait_done(job).final == JobState.DONE
    assert agent.row(job).reason == "succeeded" and refusals["left"] == 0
    assert (agent.state / "jobs" / job / "stdout").read_text() == "ran after three refusals\n"
    faults = agent.server.telemetry.start_faults.labels("EAGAIN")._value.get()
    assert faults == 3
