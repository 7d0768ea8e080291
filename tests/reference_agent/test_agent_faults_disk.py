"""A full disk under the agent's state directory (a small tmpfs): staging, submission, a job's end."""
from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import pytest

from agent_helpers import code_of, new_id
from protos.client import AgentCallError
from protos.states import JobState

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from _faults import SmallDisk  # noqa: E402 - bench/ is a folder of scripts, not a package

SIZE = "6m"


@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs of SIZE mounted for the state directory; skipped where mounting is refused."""
    disk = SmallDisk(tmp_path / "small-disk", SIZE)
    why = disk.try_mount()
    if why is not None:
        pytest.skip(f"cannot mount a tmpfs for the disk-full tests (needs root or CAP_SYS_ADMIN): {why}")
    yield disk.mount
    disk.unmount()


def _full(h) -> SmallDisk:
    """The journal's WAL cut back first, so that its next write needs new space; then fill
    (the one disk filler: bench/_faults.py's SmallDisk, which chaos uses too)."""
    h.core.journal.checkpoint()
    filler = SmallDisk(h.state, SIZE)
    filler.fill()
    return filler


def _wire_refusal(call) -> AgentCallError:
    with pytest.raises(AgentCallError) as caught:
        call()
    exc = caught.value
    assert exc.code_name == "RESOURCE_EXHAUSTED", exc
    text = str(exc).lower()
    assert "disk is full" in text and "nothing was changed" in text, text
    assert "sqlite" not in text and "database" not in text, text
    return exc


def test_disk_full_during_staging_refuses_then_stages_when_space_returns(small_disk, make_agent):
    h = make_agent(state_dir=small_disk)
    job, big, small = new_id(), h.put(os.urandom(256 * 1024)), h.put(b"x" * 100)
    filler = _full(h)
    _wire_refusal(lambda: h.client.stage_in(job, [small, big]))
    assert h.core.staged_files(job) == [] and h.core.journal.staged_for(job) == []
    filler.free()
    assert h.client.stage_in(job, [small, big]) == [small, big]
    assert (h.core.workdir(job) / big).read_bytes() == (h.source / big).read_bytes()
    assert h.core.journal.staged_for(job) == [small, big]


def test_disk_full_during_submission_changes_nothing(small_disk, make_agent):
    h = make_agent(state_dir=small_disk)
    job, entry = new_id(), h.script("print('ran')")
    assert h.client.stage_in(job, [entry]) == [entry]
    filler = _full(h)
    _wire_refusal(lambda: h.client.run(job, [entry]))
    assert h.core.job(job) is None and h.row(job) is None
    # still unknown: a status query is a first RunJob without files
    assert code_of(h.client.status, job) == "INVALID_ARGUMENT"
    assert h.client.stage_in(job, [entry]) == [entry]  # still staged, still open for staging
    filler.free()
    h.client.run(job, [entry])
    assert h.wait_done(job).points[-1][1] is JobState.DONE
    assert (h.state / "jobs" / job / "stdout").read_text() == "ran\n"


def test_disk_full_at_a_jobs_end_frees_the_slot_and_records_the_end_later(small_disk, make_agent, tmp_path):
    witness, trigger = tmp_path / "witness", tmp_path / "go"
    witness.mkdir()
    h = make_agent(state_dir=small_disk, slots=1)
    code = f"""
        import os, pathlib, time
        pathlib.Path({str(witness)!r}, os.path.basename(os.path.dirname(os.getcwd())) + "." + str(os.getpid())).touch()
        while not os.path.exists({str(trigger)!r}):
            time.sleep(0.01)
    """
    first = h.submit(code)
    deadline = time.monotonic() + 20
    while h.client.status(first) is not JobState.RUN:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    second = h.submit(code)
    assert h.client.status(second) is JobState.WAIT
    third, entry = new_id(), h.script("pass")
    assert h.client.stage_in(third, [entry]) == [entry]
    filler = _full(h)
    trigger.touch()
    assert h.wait_done(first).points[-1][1] is JobState.DONE  # reported: the process has ended
    assert h.row(first).state == JobState.RUN               # its record waits for space
    status_file = h.state / "jobs" / first / "exit_status"
    assert not status_file.exists() or status_file.read_text() == ""  # the launcher could not write it
    time.sleep(0.5)
    assert h.client.status(second) is JobState.WAIT          # its RUN cannot be journalled
    assert h.core.counts()["busy"] == 0                       # and the slot was freed
    assert len(h.core.pending_ends) == 1
    _wire_refusal(lambda: h.client.run(third, [entry]))  # a submission now would not be durable
    assert h.client.status(first) is JobState.DONE  # queries still answer from memory
    filler.free()
    assert h.wait_done(second).points[-1][1] is JobState.DONE
    deadline = time.monotonic() + 20
    while h.row(first).state != JobState.DONE:
        assert time.monotonic() < deadline, "the end of the first job was never journalled"
        time.sleep(0.05)
    assert len(h.core.pending_ends) == 0 and h.core.counts()["busy"] == 0
    # Its exit_status file could not be written on the full disk: the launcher's exit code says 0.
    assert h.row(first).reason == "succeeded" and h.row(first).exit_status == 0
    ran = sorted(p.name.split(".")[0] for p in witness.iterdir())
    assert ran == sorted([first, second]), ran  # each ran once
    h.server.stop(grace=0)
    again = make_agent(state_dir=small_disk, source=h.source)  # what the journal kept
    assert again.client.status(first) is JobState.DONE and again.client.status(second) is JobState.DONE


def test_other_write_errors_answer_unavailable(make_agent):
    """A write SQLite refuses for another reason than space (here: the connection made read-only,
    as a file system remounted read-only would) is UNAVAILABLE, with nothing changed."""
    h = make_agent()
    job, entry = new_id(), h.script("pass")
    assert h.client.stage_in(job, [entry]) == [entry]
    h.core.journal._db.execute("PRAGMA query_only=1")
    try:
        with pytest.raises(AgentCallError) as caught:
            h.client.run(job, [entry])
        assert caught.value.code_name == "UNAVAILABLE", caught.value
        assert "cannot be written" in str(caught.value) and "readonly" not in str(caught.value).lower()
        assert h.core.job(job) is None
    finally:
        h.core.journal._db.execute("PRAGMA query_only=0")
    h.client.run(job, [entry])
    assert h.wait_done(job).points[-1][1] is JobState.DONE


def test_a_write_error_in_the_state_dir_during_staging_is_unavailable_not_absent(make_agent):
    """Before: any OSError while placing a file counted as "absent from the source" (OK, file
    left out), so the client was told a wrong fact; now it is UNAVAILABLE, nothing staged."""
    h = make_agent()
    job, f = new_id(), h.put(b"data")
    scratch = h.state / "tmp"
    shutil.rmtree(scratch)
    scratch.write_text("a file where the agent's scratch directory was")
    with pytest.raises(AgentCallError) as caught:
        h.client.stage_in(job, [f])
    assert caught.value.code_name == "UNAVAILABLE", caught.value
    assert "cannot be written" in str(caught.value) and h.core.staged_files(job) == []
    scratch.unlink()
    scratch.mkdir(mode=0o700)
    assert h.client.stage_in(job, [f]) == [f]
