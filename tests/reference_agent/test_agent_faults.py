"""The state directory under operator faults: two agents on one directory, a lost or unreadable journal."""
from __future__ import annotations

import sqlite3
import subprocess

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent_helpers import new_id
from protos import launcher
from protos.client import AgentClient
from protos.states import JobState
from reference_agent.config import AgentConfig, StateError
from reference_agent.journal import Journal, JournalError
from reference_agent.server import AgentServer
from reference_agent.telemetry import Telemetry


def _refused(source, state, *extra) -> subprocess.CompletedProcess:
    """Run `reference-agent serve` where it must refuse to start; it must exit by itself."""
    argv = launcher.reference_agent_argv("127.0.0.1:0", source=source, state_dir=state, extra=["--quiet", *extra])
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def _one_clear_error(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr and "listening on" not in done.stdout, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("reference-agent: error: "), done.stderr
    return lines[0]


def _run_one_job(address: str, source) -> str:
    job, entry = new_id(), new_id()
    (source / entry).write_text("print('hello')\n")
    with grpc.insecure_channel(address) as channel:
        client = AgentClient(channel, timeout=20)
        assert client.stage_in(job, [entry]) == [entry]
        client.run(job, [entry])
        assert client.wait_until_done(job, poll_interval=0.02, deadline=30).points[-1][1] is JobState.DONE
    return job


def test_second_agent_on_the_same_state_dir_exits_2_naming_the_holder(tmp_path):
    source, state = tmp_path / "source", tmp_path / "state"
    source.mkdir()
    with launcher.reference_agent(source, state, extra=["--quiet"]) as first:  # started
        second = launcher.reference_agent(source, state, extra=["--quiet"], log_path=tmp_path / "second.log")
        with pytest.raises(launcher.LaunchError, match="exited with 2"):
            second.start()
        message = (tmp_path / "second.log").read_text()
        assert f"in use by another agent, pid {first.pid}" in message, message
        assert "Traceback" not in message
        _run_one_job(first.address, source)  # the first one serves on, untouched
        first.kill()  # SIGKILL: the lock goes with the process; the lock file stays behind
        assert (state / "agent.lock").exists()
        third = launcher.reference_agent(source, state, extra=["--quiet"])
        try:
            third.start()
            _run_one_job(third.address, source)
        finally:
            third.stop()


def test_lock_is_released_by_a_clean_stop_and_held_in_process(tmp_path):
    settings = dict(listen="127.0.0.1:0", source=str(tmp_path / "src"), state_dir=str(tmp_path / "state"),
                    discover_path=False, log_rpcs=False)
    server = AgentServer(AgentConfig(**settings), telemetry=Telemetry(stream=None))
    server.start()
    try:
        with pytest.raises(StateError, match="in use by another agent"):
            AgentServer(AgentConfig(**settings), telemetry=Telemetry(stream=None)).start()
    finally:
        server.stop(grace=0)
    again = AgentServer(AgentConfig(**settings), telemetry=Telemetry(stream=None))
    again.start()
    again.stop(grace=0)


@pytest.mark.parametrize("planted", ["symlink", "directory"])
def test_a_lock_file_that_cannot_be_opened_is_a_state_error(tmp_path, planted):
    from reference_agent.statedir import StateLock

    state = tmp_path / "state"
    state.mkdir()
    if planted == "symlink":  # never followed: it could point at any file of the agent's user
        (tmp_path / "elsewhere").write_text("keep me")
        (state / "agent.lock").symlink_to(tmp_path / "elsewhere")
    else:
        (state / "agent.lock").mkdir()
    with pytest.raises(StateError, match="cannot open the lock file"):
        StateLock(state)
    assert planted == "directory" or (tmp_path / "elsewhere").read_text() == "keep me"


@pytest.mark.parametrize("how", ["deleted", "truncated"])
def test_lost_journal_refuses_to_start_until_the_operator_accepts(tmp_path, how):
    source, state = tmp_path / "source", tmp_path / "state"
    source.mkdir()
    with launcher.reference_agent(source, state, extra=["--quiet"]) as agent:
        old_job = _run_one_job(agent.address, source)
        agent.terminate()
    journal = state / "journal.sqlite3"
    if how == "deleted":
        for suffix in ("", "-wal", "-shm"):
            (state / f"journal.sqlite3{suffix}").unlink(missing_ok=True)
    else:
        journal.write_bytes(b"")
    line = _one_clear_error(_refused(source, state))
    found = "missing" if how == "deleted" else "empty (0 bytes)"
    assert f"the journal journal.sqlite3 is {found}" in line and "1 job directories" in line, line
    assert "--accept-lost-journal" in line and "backup" in line, line
    assert not journal.exists() or journal.stat().st_size == 0  # refused: nothing written
    assert (state / "jobs").is_dir()

    with launcher.reference_agent(source, state, extra=["--quiet", "--accept-lost-journal"]) as agent:
        with grpc.insecure_channel(agent.address) as channel:  # a new journal: the old id is unknown now
            with pytest.raises(Exception, match="INVALID_ARGUMENT"):
                AgentClient(channel, timeout=10).status(old_job)
        agent.terminate()
    (aside,) = state.glob("lost-*")
    assert (aside / "jobs" / old_job).is_dir()  # kept for the operator, out of the agent's way


def _journal_with_one_job(path):
    journal = Journal(path)
    job = new_id()
    journal.insert_job(job=job, files=[new_id()], requirements=[], interpreter="/py", python_version="3.11.7",
                       state=JobState.WAIT, submitted=1.0, workdir="/w", stdout="/o", stderr="/e")
    journal.close()
    return job


@pytest.mark.parametrize("damage, expected", [
    ("UPDATE jobs SET state=7", "state 7 is not one of 0 (WAIT), 1 (RUN), 2 (DONE)"),
    ("UPDATE jobs SET files='not json'", "files 'not json' is not a JSON list"),
    ("UPDATE jobs SET files='[1, 2]'", "is not a JSON list of strings"),
    ("UPDATE jobs SET state=2", "state DONE with reason None"),
    ("UPDATE jobs SET job='../../etc'", "job '../../etc' is not a UUID"),
    ("UPDATE jobs SET reason='gone', state=2", "reason 'gone' is not a DONE reason"),
])
def test_a_journal_row_the_agent_cannot_read_stops_the_start_with_one_message(tmp_path, damage, expected):
    state = tmp_path / "state"
    state.mkdir()
    _journal_with_one_job(state / "journal.sqlite3")
    with sqlite3.connect(state / "journal.sqlite3") as db:
        db.execute(damage)
    server = AgentServer(AgentConfig(listen="127.0.0.1:0", source=str(tmp_path / "src"), state_dir=str(state),
                                     discover_path=False, log_rpcs=False), telemetry=Telemetry(stream=None))
    with pytest.raises(JournalError) as caught:
        server.start()
    assert expected in str(caught.value) and "seq=1" in str(caught.value), caught.value
    assert "sqlite3 tool" in str(caught.value)
    with pytest.raises(JournalError):  # the lock was given back: the same error, not "in use"
        server.start()


def test_garbage_journal_and_bad_row_exit_2_without_traceback(tmp_path):
    source, state = tmp_path / "source", tmp_path / "state"
    source.mkdir()
    state.mkdir()
    (state / "journal.sqlite3").write_bytes(b"this is not a database" * 300)
    line = _one_clear_error(_refused(source, state))
    assert "journal.sqlite3' does not open: file is not a database" in line, line
    assert "--accept-lost-journal" in line

    _journal_with_one_job(state / "journal.sqlite3.new")
    (state / "journal.sqlite3.new").replace(state / "journal.sqlite3")
    with sqlite3.connect(state / "journal.sqlite3") as db:
        db.execute("UPDATE jobs SET state=9")
    line = _one_clear_error(_refused(source, state))
    assert "state 9 is not one of" in line, line


@pytest.mark.parametrize("content", [b"this is not a database" * 300, None])
def test_operator_view_of_an_unreadable_journal_is_one_line(tmp_path, content, capsys):
    from reference_agent.cli import main

    state = tmp_path / "state"
    state.mkdir()
    if content is None:  # a readable file with a bad row
        job = _journal_with_one_job(state / "journal.sqlite3")
        with sqlite3.connect(state / "journal.sqlite3") as db:
            db.execute("UPDATE jobs SET requirements='{'")
    else:
        job = new_id()
        (state / "journal.sqlite3").write_bytes(content)
    for argv in (["jobs"], ["job", job]):
        assert main([*argv, "--state-dir", str(state)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("reference-agent: error: journal "), err


_VALUES = st.one_of(st.none(), st.integers(-3, 9), st.floats(allow_nan=True), st.text(max_size=20),
                    st.binary(max_size=8), st.sampled_from(['["a"]', "[]", '[1]', "succeeded", "killed", "{"]))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(column=st.sampled_from(["state", "reason", "files", "requirements", "job", "interpreter", "workdir",
                               "stdout", "submitted", "started", "pid", "exit_status"]), value=_VALUES)
def test_any_value_in_a_journal_row_is_restored_or_named(tmp_path, column, value):
    """Whatever a column holds, recovery either restores a job the core can use or raises
    JournalError naming the row: never another exception."""
    from reference_agent.domain import Job

    path = tmp_path / f"j-{new_id()}.sqlite3"
    _journal_with_one_job(path)
    with sqlite3.connect(path) as db:
        try:
            db.execute(f"UPDATE jobs SET {column}=?", (value,))
        except sqlite3.IntegrityError:  # NOT NULL: SQLite itself keeps that value out
            return
    journal = Journal(path)
    try:
        rows = journal.jobs()
    except JournalError as exc:
        assert "seq=1" in str(exc) and "cannot be read" in str(exc)
        return
    finally:
        journal.close()
    job = Job.from_row(rows[0])
    assert job.state in tuple(JobState) and all(isinstance(f, str) for f in job.files)
    assert job.submitted + 0.0 == job.submitted and (job.pid is None or job.pid > 0)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(st.binary(min_size=1, max_size=2048),
                      st.binary(max_size=4096).map(lambda b: b"SQLite format 3\x00" + b)))
def test_any_bytes_as_a_journal_open_or_give_journal_error(tmp_path, data):
    path = tmp_path / f"j-{new_id()}.sqlite3"
    path.write_bytes(data)
    try:
        journal = Journal(path)
        try:
            journal.jobs()
        finally:
            journal.close()
    except JournalError as exc:
        assert str(path) in str(exc) and "--accept-lost-journal" in str(exc) or "seq=" in str(exc)


def test_accept_lost_journal_does_nothing_when_the_journal_is_there(tmp_path):
    from reference_agent.statedir import check_journal_present

    state = tmp_path / "state"
    (state / "jobs" / new_id()).mkdir(parents=True)
    job = _journal_with_one_job(state / "journal.sqlite3")
    check_journal_present(state, accept_lost=True)
    assert not list(state.glob("lost-*")) and len(list((state / "jobs").iterdir())) == 1
    journal = Journal(state / "journal.sqlite3")
    assert journal.job(job) is not None
    journal.close()
