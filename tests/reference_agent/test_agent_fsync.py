"""Issue 18.7: an acknowledged staging or submission is on disk before the answer (power loss,
not only SIGKILL): cache files, job inputs and their directories fsynced, the journal FULL.
The fsync calls are observed at the OS boundary (os.fsync), nothing of the agent is replaced."""
from __future__ import annotations

import os
import sqlite3
import stat

from shared_helpers import new_id


def test_staged_files_and_their_directories_are_fsynced_before_the_answer(make_agent, monkeypatch):
    """Where syncfs(2) is refused the agent fsyncs each new file and directory: that path is
    taken here (syncfs answers False), so each one is seen at os.fsync."""
    from reference_agent import staging

    agent = make_agent()
    synced: list[str] = []
    real = os.fsync
    syncfs_calls = []
    monkeypatch.setattr(staging, "_syncfs", lambda directory: syncfs_calls.append(directory) or False)

    def fsync(fd):
        target = os.readlink(f"/proc/self/fd/{fd}")
        synced.append(target + ("/" if stat.S_ISDIR(os.fstat(fd).st_mode) else ""))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    first, second = agent.put(b"one"), agent.put(b"two")
    job = new_id()
    assert agent.client.stage_in(job, [first, second]) == [first, second]
    cache, work = str(agent.state / "cache"), str(agent.workdir(job))
    assert f"{cache}/" in synced and f"{work}/" in synced  # the new directory entries
    assert f"{cache}/{first}" in synced and f"{cache}/{second}" in synced  # each fetched file's bytes
    assert syncfs_calls == [agent.state / "cache"]  # once for the chunk, before the journal commit
    db = sqlite3.connect(agent.state / "journal.sqlite3")
    try:
        assert agent.core.journal._read("PRAGMA synchronous")[0][0] == 2  # FULL: each commit synced
        assert db.execute("SELECT COUNT(*) FROM staged WHERE job=?", (job,)).fetchone()[0] == 2
    finally:
        db.close()


def test_with_job_user_every_job_gets_the_cached_inode(make_agent):
    import pwd

    import pytest

    if os.geteuid() != 0 or "nobody" not in {p.pw_name for p in pwd.getpwall()}:
        pytest.skip("--job-user needs root and a user 'nobody'")
    agent = make_agent(job_user="nobody")  # staging only: the job user never runs here
    data = agent.put(b"shared input")
    jobs = [new_id() for _ in range(3)]
    for job in jobs:
        assert agent.client.stage_in(job, [data]) == [data]
    inodes = {os.stat(agent.workdir(job) / data).st_ino for job in jobs}
    assert inodes == {os.stat(agent.state / "cache" / data).st_ino}
    assert stat.S_IMODE(os.stat(agent.state / "cache" / data).st_mode) == 0o444  # no job user can change it
    assert agent.core.store.copies["link"] == 3 and agent.core.store.fetches == 1


def test_syncfs_is_one_call_per_chunk(make_agent, monkeypatch):
    from reference_agent import staging

    calls = []
    real = staging._syncfs
    monkeypatch.setattr(staging, "_syncfs", lambda directory: calls.append(directory) or real(directory))
    agent = make_agent()
    files = [agent.put(b"x") for _ in range(50)]
    assert agent.client.stage_in(new_id(), files) == files
    assert len(calls) == 1
