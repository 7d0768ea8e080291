"""Issue 18.7: an acknowledged staging or submission is on disk before the answer (power loss,
not only SIGKILL): cache files, job inputs and their directories fsynced, the journal FULL.
The fsync calls are observed at the OS boundary (os.fsync), nothing of the agent is replaced."""
from __future__ import annotations

import os
import sqlite3
import stat

from shared_helpers import new_id


def test_staged_files_and_their_directories_are_fsynced_before_the_answer(make_agent, monkeypatch):
    agent = make_agent()
    synced: list[str] = []
    real = os.fsync

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
    assert sum(1 for s in synced if ".tmp-" in s) == 2  # each fetched file's bytes, before its rename
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
