"""StageInFiles over loopback: AGT-STAGE-1..5 and AGT-ERR-3 (symlinks, FIFOs, traversal)."""
from __future__ import annotations

import hashlib
import os
import stat

import fsspec
from hypothesis import HealthCheck, given, settings, strategies as st

from agent_helpers import code_of, new_id
from protos.validation import dedupe


def test_stage_1_order_duplicates_absent_and_empty(agent):
    """AGT-STAGE-1: staged files once each, in order of first appearance; absent left out."""
    a, b, absent = agent.put(b"a"), agent.put(b"b"), new_id()
    job = new_id()
    assert agent.client.stage_in(job, []) == []
    assert agent.client.stage_in(job, [b, absent, a, b, a]) == [b, a]
    workdir = agent.state / "jobs" / job / "work"
    assert sorted(p.name for p in workdir.iterdir()) == sorted([a, b])
    assert (workdir / a).read_bytes() == b"a" and (workdir / b).read_bytes() == b"b"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(picks=st.lists(st.tuples(st.integers(0, 4), st.booleans()), max_size=12))
def test_stage_1_2_hypothesis_against_a_model(agent, picks):
    """AGT-STAGE-1/2: for any mix of present/absent files and duplicates, the reply is the
    model's answer, and a repeat returns the same list without reading the source again."""
    present = [agent.put(f"content {i}".encode()) for i in range(5)]
    absent = [new_id() for _ in range(5)]
    files = [(present if is_present else absent)[i] for i, is_present in picks]
    expected = dedupe(f for f in files if f in present)
    job = new_id()
    assert agent.client.stage_in(job, files) == expected
    fetches = agent.core.store.fetches
    assert agent.client.stage_in(job, files) == expected
    assert agent.core.store.fetches == fetches


def test_stage_2_idempotent_repeat_stages_nothing_twice(agent):
    f = agent.put(b"once")
    job = new_id()
    assert agent.client.stage_in(job, [f]) == [f]
    path = agent.state / "jobs" / job / "work" / f
    inode = path.stat().st_ino
    (agent.source / f).write_bytes(b"changed in the source")
    assert agent.client.stage_in(job, [f]) == [f]
    assert path.stat().st_ino == inode and path.read_bytes() == b"once"


def test_stage_3_job_sees_bytes_of_staging_time(agent):
    """AGT-STAGE-3: exact bytes, even when the source changes before the job runs."""
    payload = bytes(range(256)) * 4096 + b"\x00tail"
    data = agent.put(payload)
    entry = agent.script(f"""
        import hashlib, pathlib
        print(hashlib.sha256(pathlib.Path({data!r}).read_bytes()).hexdigest())
    """)
    job = new_id()
    assert agent.client.stage_in(job, [entry, data]) == [entry, data]
    (agent.source / data).write_bytes(b"other bytes")
    (agent.source / entry).write_bytes(b"raise SystemExit(3)\n")
    agent.client.run(job, [entry])
    agent.wait_done(job)
    row = agent.row(job)
    assert row.exit_status == 0
    assert open(row.stdout).read().strip() == hashlib.sha256(payload).hexdigest()


def test_stage_4_after_submission_is_refused_without_state_change(agent):
    """AGT-STAGE-4: FAILED_PRECONDITION once submitted; the staged set stays as it was."""
    job = agent.submit("print('x')\n")
    other = agent.put(b"late")
    before = agent.core.staged_files(job)
    assert code_of(agent.client.stage_in, job, [other]) == "FAILED_PRECONDITION"
    assert code_of(agent.client.stage_in, job, []) == "FAILED_PRECONDITION"
    assert agent.core.staged_files(job) == before
    assert not (agent.state / "jobs" / job / "work" / other).exists()


def test_stage_5_cache_does_not_read_the_source_again(agent):
    """AGT-STAGE-5: a file already on the agent is staged for another job from the cache."""
    f = agent.put(b"cached content")
    first, second = new_id(), new_id()
    assert agent.client.stage_in(first, [f]) == [f]
    fetches = agent.core.store.fetches
    (agent.source / f).unlink()
    assert agent.client.stage_in(second, [f]) == [f]
    assert agent.core.store.fetches == fetches
    assert (agent.state / "jobs" / second / "work" / f).read_bytes() == b"cached content"


def test_stage_5_cache_entry_modified_by_a_job_is_not_trusted(agent):
    """A job writing to its (hard-linked) input must not change what a later job receives."""
    data = agent.put(b"pristine")
    writer = agent.submit(f"""
        import os
        os.chmod({data!r}, 0o644)
        open({data!r}, "wb").write(b"tampered")
    """, extra=[data])
    agent.wait_done(writer)
    assert agent.row(writer).exit_status == 0
    later = new_id()
    assert agent.client.stage_in(later, [data]) == [data]
    assert (agent.state / "jobs" / later / "work" / data).read_bytes() == b"pristine"


def test_err_3_symlink_in_source_is_refused(agent, tmp_path):
    """AGT-ERR-3: a source entry that is a symlink (to a secret outside) is never followed."""
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"top secret")
    link = new_id()
    os.symlink(secret, agent.source / link)
    inside = agent.put(b"ok")
    os.symlink(agent.source / inside, agent.source / (dangling := new_id()))
    job = new_id()
    assert agent.client.stage_in(job, [link, inside, dangling]) == [inside]
    for path in agent.state.rglob("*"):
        if path.is_file() and not path.name.startswith("journal"):
            assert path.read_bytes() != b"top secret", path


def test_err_3_fifo_and_directory_in_source_are_left_out(agent):
    fifo, directory = new_id(), new_id()
    os.mkfifo(agent.source / fifo)
    (agent.source / directory).mkdir()
    assert agent.client.stage_in(new_id(), [fifo, directory]) == []  # and no hang on the FIFO


def test_err_3_job_directory_symlink_is_replaced_not_followed(agent, tmp_path):
    """A symlink planted at a staged file's place in the job directory is replaced, not written through."""
    victim = tmp_path / "victim"
    victim.write_bytes(b"victim")
    f, job = agent.put(b"new"), new_id()
    workdir = agent.state / "jobs" / job / "work"
    workdir.mkdir(parents=True)
    os.symlink(victim, workdir / f)
    assert agent.client.stage_in(job, [f]) == [f]
    assert victim.read_bytes() == b"victim"
    assert not (workdir / f).is_symlink() and (workdir / f).read_bytes() == b"new"


def test_staging_is_atomic_no_temporary_files_left(agent):
    files = [agent.put(os.urandom(1000)) for _ in range(3)]
    job = new_id()
    agent.client.stage_in(job, files + [new_id()])
    leftovers = [p for p in agent.state.rglob(".tmp-*")]
    assert leftovers == []
    for f in files:
        cached = agent.state / "cache" / f
        assert stat.S_IMODE(cached.stat().st_mode) == 0o400  # private and read-only (issue 11)


def test_fsspec_memory_source(make_agent):
    """Any fsspec URL is a source: here memory://, with a file absent and one present."""
    fs = fsspec.filesystem("memory")
    root = f"/agent-test-{new_id()}"
    present = new_id()
    fs.pipe(f"{root}/{present}", b"print('from memory')\n")
    h = make_agent(source=f"memory://{root}")
    job = new_id()
    assert h.client.stage_in(job, [new_id(), present.upper()]) == [present]
    h.client.run(job, [present])
    h.wait_done(job)
    assert open(h.row(job).stdout).read() == "from memory\n"
