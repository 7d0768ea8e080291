"""Issue 11 items 4, 8 and 10 (staging): each job its own input bytes, private modes, copies
bounded by the size seen at start, torn copies discarded, the client's deadline within one file."""
from __future__ import annotations

import hashlib
import os
import stat
import time

import grpc
import pytest

from agent_helpers import code_of, new_id
from reference_agent import copying
from reference_agent.staging import LocalSource, SourceError

HASH_SCRIPT = """
    import hashlib, pathlib
    print(hashlib.sha256(pathlib.Path({data!r}).read_bytes()).hexdigest())
"""


def _stage(agent, job, files):
    assert agent.client.stage_in(job, files) == files


def _run(agent, job, entry):
    agent.client.run(job, [entry])
    agent.wait_done(job)
    return open(agent.row(job).stdout).read().strip()


def test_a_job_rewriting_its_input_does_not_change_another_jobs_staged_copy(agent):
    """AGT-STAGE-3: B was staged before A ran; A rewrites the shared file id (same size, mtime
    set back, as a careful job would); B still sees the source's bytes, and so does C later."""
    payload = os.urandom(4096)
    data = agent.put(payload)
    writer = agent.script(f"""
        import os
        st = os.stat({data!r})
        os.chmod({data!r}, 0o600)
        with open({data!r}, "r+b") as f:
            f.write(b"X" * 4096)
        os.utime({data!r}, ns=(st.st_atime_ns, st.st_mtime_ns))
        print("rewrote")
    """)
    reader = agent.script(HASH_SCRIPT.format(data=data))
    a, b = new_id(), new_id()
    _stage(agent, a, [writer, data])
    _stage(agent, b, [reader, data])
    assert _run(agent, a, writer) == "rewrote"
    assert (agent.state / "jobs" / a / "work" / data).read_bytes() == b"X" * 4096  # its own copy changed
    assert _run(agent, b, reader) == hashlib.sha256(payload).hexdigest()
    c = new_id()
    _stage(agent, c, [reader, data])
    assert _run(agent, c, reader) == hashlib.sha256(payload).hexdigest()


def test_each_job_gets_its_own_inode_and_the_cache_is_not_read_again(agent):
    data = agent.put(os.urandom(10_000))
    jobs = [new_id() for _ in range(3)]
    fetches = agent.core.store.fetches
    for job in jobs:
        _stage(agent, job, [data])
    assert agent.core.store.fetches == fetches + 1  # AGT-STAGE-5 still holds
    inodes = {(agent.state / "jobs" / j / "work" / data).stat().st_ino for j in jobs}
    assert len(inodes) == 3
    copies = agent.core.store.copies
    assert copies["link"] >= 1 and copies["copy"] + copies["reflink"] >= 2


def _modes_under(root):
    for directory, dirs, files in os.walk(root):
        yield directory, os.lstat(directory).st_mode
        for name in files:
            path = os.path.join(directory, name)
            yield path, os.lstat(path).st_mode


def test_everything_under_the_state_dir_is_private(agent):
    """Item 8: whatever the source's modes (0644, 0755), nothing the agent or a job creates
    under the state directory is readable by other users: 0700 directories, 0600 or 0400 files."""
    data = agent.put(b"world-readable in the source")
    os.chmod(agent.source / data, 0o755)
    job = agent.submit("""
        import os
        open("made-by-the-job.txt", "w").write("x")
        os.mkdir("a-dir")
        print("out")
    """, extra=[data])
    agent.wait_done(job)
    assert stat.S_IMODE(os.stat(agent.state).st_mode) == 0o700
    seen = dict(_modes_under(agent.state))
    assert any(p.endswith("journal.sqlite3") for p in seen) and any("/cache/" in p for p in seen)
    assert any(p.endswith("made-by-the-job.txt") for p in seen) and any(p.endswith("stdout") for p in seen)
    loose = {p: oct(stat.S_IMODE(m)) for p, m in seen.items() if stat.S_IMODE(m) & 0o077}
    assert loose == {}
    for path, mode in seen.items():
        if stat.S_ISDIR(mode):
            assert stat.S_IMODE(mode) == 0o700, path
    assert stat.S_IMODE(os.stat(agent.state / "cache" / data).st_mode) == 0o400


def test_an_existing_open_state_dir_is_made_private(make_agent, tmp_path):
    state = tmp_path / "open-state"
    state.mkdir(mode=0o755)
    os.chmod(state, 0o755)
    make_agent(state_dir=str(state))
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o700


def _copy_while(tmp_path, change, size=40 << 20):
    source = LocalSource(tmp_path / "src")
    file = new_id()
    path = source.directory / file
    with open(path, "wb") as f:
        f.truncate(size)  # sparse: cheap to make
    calls = []

    def active():
        calls.append(1)
        if len(calls) == 2:  # after the first chunk
            change(path)
        return True

    out = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        return source.copy_to(file, out, active), os.fstat(out).st_size
    finally:
        os.close(out)


def test_a_growing_source_file_is_copied_up_to_its_size_at_start_then_refused(tmp_path):
    def grow(path):
        with open(path, "ab") as f:
            f.write(b"more" * 1000)

    with pytest.raises(SourceError, match="changed while it was copied"):
        _copy_while(tmp_path, grow)
    assert os.path.getsize(tmp_path / "out") == 40 << 20  # never more than the size at start


def test_a_source_file_truncated_during_the_copy_is_refused(tmp_path):
    with pytest.raises(SourceError, match="changed while it was copied"):
        _copy_while(tmp_path, lambda path: os.truncate(path, 1000))


def test_an_unchanged_source_file_copies_whole(tmp_path):
    copied, size = _copy_while(tmp_path, lambda path: None)
    assert copied == size == 40 << 20


def test_a_torn_copy_never_becomes_a_cache_entry(agent, monkeypatch):
    """Item 10: a file changed while it is copied is not staged, leaves no cache entry, and
    the next staging copies it afresh (old agent: the torn bytes were cached for every job)."""
    data = agent.put(b"a" * (40 << 20))
    original = copying.copy_fd

    def tearing(src, dst, limit=None, active=None):
        n = original(src, dst, limit, active)
        os.truncate(agent.source / data, 10)  # the source is truncated during the copy
        return n

    monkeypatch.setattr("reference_agent.staging.copy_fd", tearing)
    job = new_id()
    assert agent.client.stage_in(job, [data]) == []
    assert not (agent.state / "cache" / data).exists()
    assert not list((agent.state / "tmp").iterdir())
    monkeypatch.undo()
    assert agent.client.stage_in(job, [data]) == [data]
    assert (agent.state / "jobs" / job / "work" / data).read_bytes() == b"a" * 10


def test_staging_stops_copying_a_file_when_the_deadline_passes(agent):
    """Item 10: the client's deadline passes during one large file's copy: the copy stops
    (within one 16 MiB chunk), nothing is cached, no temporary is left, the file is not staged."""
    big = new_id()
    with open(agent.source / big, "wb") as f:
        f.truncate(2 << 30)  # 2 GiB sparse; the old agent copied all of it after the deadline
    job = new_id()
    stub = agent.new_channel().unary_unary("/Agent/StageInFiles")
    from protos import Common_pb2, StageInFile_pb2
    request = StageInFile_pb2.StageInFilesRequest(job=Common_pb2.JobId(uuid=job),
                                                  files=[Common_pb2.FileId(uuid=big)])
    with pytest.raises(grpc.RpcError) as failure:
        stub(request.SerializeToString(), timeout=0.2)
    assert failure.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    end = time.monotonic() + 10
    while list((agent.state / "tmp").iterdir()) and time.monotonic() < end:
        time.sleep(0.05)
    assert not list((agent.state / "tmp").iterdir())
    assert not (agent.state / "cache" / big).exists()
    assert agent.core.staged_files(job) == []
    assert code_of(agent.client.run, job, [big]) == "FAILED_PRECONDITION"


def test_fsspec_copies_stop_at_the_deadline_and_at_the_size_seen_first():
    import fsspec

    from reference_agent.staging import FsspecSource

    root = f"/contain-{new_id()}"
    file = new_id()
    fsspec.filesystem("memory").pipe(f"{root}/{file}", b"z" * 3_000_000)
    source = FsspecSource(f"memory://{root}")
    r, w = os.pipe()
    try:
        with pytest.raises(SourceError, match="deadline passed"):
            source.copy_to(file, w, active=lambda: False)
    finally:
        os.close(r)
        os.close(w)


def test_copy_fd_by_chunks_honours_the_limit_and_the_deadline(tmp_path):
    """The read/write fallback (a pipe: no copy_file_range, no sendfile into a file from it)."""
    r, w = os.pipe()
    os.write(w, b"a" * 5000)
    os.close(w)
    out = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        assert copying.copy_fd(r, out, limit=1234) == 1234
        with pytest.raises(copying.CopyCancelled):
            copying.copy_fd(r, out, active=lambda: False)
    finally:
        os.close(r)
        os.close(out)
    assert os.path.getsize(tmp_path / "out") == 1234
