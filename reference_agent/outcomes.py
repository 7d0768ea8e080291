"""Job outcomes (AGT-EXT-3/4): how a job ended, read from what the journal records, plus output tails."""
from __future__ import annotations

import os
import stat
from pathlib import Path

from protos.extensions import TAIL_LIMIT, EndKind, Outcome
from protos.states import DoneReason, JobState


def end_of(reason: DoneReason | None, exit_status: int | None, cancelled: bool
           ) -> tuple[EndKind | None, int | None, int | None]:
    """(end, exit_status, signal) of a job from its journal record.

    A cancel recorded before the end makes it CANCELLED, however the process then ended (one
    outcome, AGT-EXT-6). A negative status -N is a death by signal N: the interpreter's, as the
    launcher's waiter saw it in waitpid (processes.WAITER), or the launcher's own (the job's whole
    group was signalled); a status 0-255 is the interpreter's exit status.
    No status at all (lost while the agent was down, could not start or be tracked): INTERRUPTED."""
    if reason is None:
        return None, None, None
    if cancelled:
        return EndKind.CANCELLED, None, None
    if reason is DoneReason.INTERRUPTED or exit_status is None:
        return EndKind.INTERRUPTED, None, None
    if exit_status < 0:
        return EndKind.SIGNALLED, None, -exit_status
    if exit_status > 255:
        return EndKind.INTERRUPTED, None, None  # not a status any process gives: not trusted
    return EndKind.EXITED, exit_status, None


def read_tail(path: Path | str, limit: int = TAIL_LIMIT) -> tuple[bytes, bool]:
    """The last `limit` bytes of a job's output file (none when there is no such file). The job may
    have put anything at that path: only a regular file is read, never followed, never waited on.
    Returns (bytes, truncated): truncated when the file held more than `limit` bytes."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return b"", False
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return b"", False
        size = st.st_size
        want = min(limit, size)
        chunks, got = [], 0
        offset = size - want
        while got < want:
            chunk = os.pread(fd, want - got, offset + got)
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks), size > limit
    except OSError:
        return b"", False
    finally:
        os.close(fd)


def ms(seconds: float | None) -> int | None:
    return None if seconds is None else int(round(seconds * 1000))


def outcome_of(job, state: JobState, limit: int = TAIL_LIMIT) -> Outcome:
    """The outcome of a core's Job reported in `state` (the v1 state now, AGT-EXT-4).

    Before DONE: no `end`, and tails of the output so far. Once DONE every field comes from the
    journal's record, fixed at the end, and from output files no process writes any more (the
    job's cgroup or session was killed at its end): asked again, the same outcome."""
    done = state is JobState.DONE
    # DONE reported while the machine is not (a subclass's report_state): it could not be tracked.
    reason = (job.machine.reason or DoneReason.INTERRUPTED) if done else None
    end, status, signal = end_of(reason, job.exit_status, getattr(job, "cancelled", None) is not None)
    started = job.started if state is not JobState.WAIT else None
    out, out_cut = read_tail(job.stdout, limit) if started is not None else (b"", False)
    err, err_cut = read_tail(job.stderr, limit) if started is not None else (b"", False)
    return Outcome(job=job.job, state=state, end=end, exit_status=status, signal=signal,
                   interpreter_version=job.python_version or None, submitted_ms=ms(job.submitted),
                   started_ms=ms(started), ended_ms=ms(job.ended) if done else None,
                   stdout=out, stderr=err, stdout_truncated=out_cut, stderr_truncated=err_cut)
