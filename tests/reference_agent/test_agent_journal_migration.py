"""Issue 18 "Also": a journal written by an earlier release opens, is migrated to this agent's
schema version (PRAGMA user_version), and keeps every job; and 18.6/18.7: what the journal
stores compactly, and a cache entry whose bytes a job changed is not trusted after a restart."""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
import tarfile
from pathlib import Path

import grpc
import pytest
from hypothesis import given, strategies as st

from agent_helpers import Harness
from protos import validation
from protos.client_errors import AgentCallError
from protos.states import JobState
from reference_agent.jobrecord import _json_strings, runs
from reference_agent.journal import SCHEMA_VERSION, Journal, JournalError
from shared_helpers import new_id

FIXTURE = Path(__file__).parent / "data" / "state_v0_9106253.tar.gz"
JOBS = {"ok": "00000000-0000-4000-8000-0000000000b0", "fail": "00000000-0000-4000-8000-0000000000b1",
        "sleep": "00000000-0000-4000-8000-0000000000b2", "wait": "00000000-0000-4000-8000-0000000000b3"}
DATA = "00000000-0000-4000-8000-0000000000a3"


@pytest.fixture
def old_state(tmp_path):
    with tarfile.open(FIXTURE) as archive:
        archive.extractall(tmp_path, filter="data")
    return tmp_path


def _version(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return db.execute("PRAGMA user_version").fetchone()[0]
    finally:
        db.close()


def test_journal_of_the_release_before_versioning_is_migrated(old_state):
    path = old_state / "state" / "journal.sqlite3"
    assert _version(path) == 0
    journal = Journal(path)
    try:
        assert journal.schema_version() == SCHEMA_VERSION
        rows = {row.job: row for row in journal.jobs()}
        assert set(rows) == set(JOBS.values())
        assert (rows[JOBS["ok"]].state, rows[JOBS["ok"]].reason, rows[JOBS["ok"]].requirements) == (2, "succeeded", ("3",))
        assert (rows[JOBS["fail"]].reason, rows[JOBS["fail"]].exit_status) == ("failed", 3)
        assert rows[JOBS["sleep"]].requirements == ("3", ">=3.8") and rows[JOBS["sleep"]].state == 1
        assert rows[JOBS["wait"]].state == 0
        assert journal.staged_for(JOBS["wait"]) == ["00000000-0000-4000-8000-0000000000a4", DATA]
        assert journal.cache_entry(DATA)[2] is None  # no hash from that release: re-fetched before reuse
    finally:
        journal.close()


def test_agent_upgraded_over_an_old_state_directory_keeps_its_jobs(old_state):
    agent = Harness.start(old_state, source=old_state / "src", state_dir=old_state / "state")
    try:
        status = {name: agent.client.status(job) for name, job in JOBS.items()}
        assert status["ok"] == status["fail"] == status["sleep"] == JobState.DONE  # sleep: gone while down
        assert status["wait"] in (JobState.WAIT, JobState.RUN, JobState.DONE)  # still known, not lost
        assert agent.row(JOBS["fail"]).exit_status == 3
        # the old cache entry has no hash: the file is fetched from the source again
        job = new_id()
        assert agent.client.stage_in(job, [DATA]) == [DATA]
        assert (agent.workdir(job) / DATA).read_text() == "some input data\n"
        assert agent.core.store.fetches == 1
    finally:
        agent.close()


def test_journal_of_a_newer_schema_is_refused(tmp_path):
    path = tmp_path / "journal.sqlite3"
    Journal(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    with pytest.raises(JournalError, match=f"schema version {SCHEMA_VERSION + 1}, newer than this agent's"):
        Journal(path)


@given(st.lists(st.sampled_from(["3", ">=3.8", "", "3.11"]), max_size=40))
def test_run_length_lists_read_back_exactly(values):
    assert _json_strings("requirements", json.dumps(runs(values))) == tuple(values)


def test_a_long_requirements_list_is_parsed_once_per_value_and_stored_compactly(make_agent, monkeypatch):
    agent = make_agent(max_request_bytes=8 << 20)
    parsed = []
    real = validation.parse_python_version
    monkeypatch.setattr(validation, "parse_python_version", lambda v: parsed.append(v) or real(v))
    requirements = ["3"] * 200_000 + [">=3.8"] * 100_000
    job, entry = new_id(), agent.script("print('many requirements')")
    agent.client.stage_in(job, [entry])
    assert agent.client.run(job, [entry], python_version=requirements) in (JobState.WAIT, JobState.RUN, JobState.DONE)
    assert sorted(parsed) == ["3", ">=3.8"]  # linear in the distinct values, not in the list
    db = sqlite3.connect(agent.state / "journal.sqlite3")
    (stored,) = db.execute("SELECT requirements FROM jobs WHERE job=?", (job,)).fetchone()
    db.close()
    assert json.loads(stored) == [["3", 200_000], [">=3.8", 100_000]]
    # AGT-RUN-8: the same list is a status query, another is ALREADY_EXISTS
    assert agent.client.run(job, [entry], python_version=requirements) in (JobState.WAIT, JobState.RUN, JobState.DONE)
    with pytest.raises(AgentCallError) as other:
        agent.client.run(job, [entry], python_version=requirements[:-1])
    assert other.value.code == grpc.StatusCode.ALREADY_EXISTS


def test_cache_entry_rewritten_in_place_by_a_job_is_not_trusted_after_a_restart(tmp_path):
    agent = Harness.start(tmp_path)
    source = agent.source
    data = agent.put(b"original bytes")
    job = agent.submit(f"""
        import os
        path = {data!r}
        st = os.stat(path)
        os.chmod(path, 0o600)
        with open(path, "r+b") as f:
            f.write(b"poisoned bytes")  # same size
        os.chmod(path, 0o400)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # the mtime set back
        os.unlink(path)  # the cache entry is left with one link
        """, extra=[data])
    assert agent.wait_done(job).final == JobState.DONE and agent.row(job).reason == "succeeded"
    cached = agent.state / "cache" / data
    assert cached.read_bytes() == b"poisoned bytes" and os.stat(cached).st_nlink == 1
    agent.close()
    agent = Harness.start(tmp_path, source=source, state_dir=tmp_path / "state0")
    try:
        later = new_id()
        assert agent.client.stage_in(later, [data]) == [data]
        assert (agent.workdir(later) / data).read_bytes() == b"original bytes"
    finally:
        agent.close()
