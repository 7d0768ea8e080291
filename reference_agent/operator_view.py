"""`reference-agent jobs` and `reference-agent job UUID`: the journal shown to the operator."""
from __future__ import annotations

import json
import os
import re
import sqlite3
import stat
import sys
import time
from pathlib import Path

from protos.states import DoneReason, JobState
from protos.validation import is_uuid

from reference_agent.journal import Journal, JobRow, JournalError
from reference_agent.outcomes import end_of


def _open(state_dir: str) -> Journal | None:
    path = Path(state_dir) / "journal.sqlite3"
    if not path.is_file():
        return None
    try:
        return Journal(path, readonly=True)
    except (sqlite3.Error, JournalError):
        return Journal(path)


def _duration(row: JobRow) -> float | None:
    if row.started is None:
        return None
    return (row.ended if row.ended is not None else time.time()) - row.started


def _end(row: JobRow) -> tuple[str | None, int | None, int | None]:
    """(end, exit_status, signal) as GetOutcome reports them (reference_agent.outcomes)."""
    reason = DoneReason(row.reason) if row.reason else None
    end, status, sig = end_of(reason, row.exit_status, row.cancelled is not None)
    return (end.name.lower() if end is not None else None), status, sig


def _end_text(row: JobRow) -> str:
    end, status, sig = _end(row)
    return {"exited": f"exit {status}", "signalled": f"signal {sig}"}.get(end or "", end or "-")


def _summary(row: JobRow) -> dict:
    d = row.as_dict()
    d["state"] = JobState(row.state).name
    d["end"], d["exit_status"], d["signal"] = _end(row)  # as GetOutcome says; `reason` is the agent's own
    d["duration"] = _duration(row)
    d["files"], d["requirements"] = list(row.files), list(row.requirements)
    return d


def _fmt_time(t: float | None) -> str:
    return "-" if t is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def _tail(path: str, limit: int) -> str:
    """The last `limit` bytes of a job's output file. The job may have put anything at that path
    (a FIFO, a symlink, a device): only a regular file is read, never followed, never waited on."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return "(none yet)\n"
    except OSError as exc:
        return f"(unreadable: {exc.strerror})\n"
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return "(not a regular file: not shown)\n"
        size = st.st_size
        os.lseek(fd, max(0, size - limit), os.SEEK_SET)
        data = b""
        while len(data) < min(limit, size) and (chunk := os.read(fd, min(limit, size) - len(data))):
            data += chunk
    except OSError as exc:
        return f"(unreadable: {exc.strerror})\n"
    finally:
        os.close(fd)
    prefix = f"(last {limit} of {size} bytes)\n" if size > limit else ""
    return prefix + data.decode("utf-8", "replace")


# Control characters other than newline and tab, and DEL and the C1 range: what a job could
# print to move the cursor, retitle the window or rewrite what the operator sees.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def visible(text: str) -> str:
    """text with every terminal control character shown as an escape (ESC as \\x1b)."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _print(text: str = "", end: str = "\n") -> None:
    """print(), escaping control characters when stdout is a terminal."""
    print(visible(text) if sys.stdout.isatty() else text, end=end)


def show_jobs(journal: Journal, as_json: bool) -> int:
    rows = journal.jobs()
    if as_json:
        print(json.dumps([_summary(r) for r in rows], indent=1))
        return 0
    _print(f"{'JOB':<36}  {'STATE':<5}  {'REASON':<11}  {'END':<11}  {'DURATION':>9}  {'PYTHON':<10}  SUBMITTED")
    for r in rows:
        dur = _duration(r)
        _print(f"{r.job:<36}  {JobState(r.state).name:<5}  {r.reason or '-':<11}  "
              f"{_end_text(r):<11}  "
              f"{'-' if dur is None else f'{dur:.3f}s':>9}  {r.python_version:<10}  {_fmt_time(r.submitted)}")
    print(f"{len(rows)} job(s)")
    return 0


def show_job(journal: Journal, job: str, tail: int, as_json: bool) -> int:
    row = journal.job(job.lower())
    if row is None:
        print(f"reference-agent: no job {job} in {journal.path}", file=sys.stderr)
        return 1
    if as_json:
        print(json.dumps(_summary(row), indent=1))
        return 0
    for label, value in (("job", row.job), ("state", JobState(row.state).name), ("reason", row.reason or "-"),
                         ("end", _end_text(row)),
                         ("exit status", "-" if row.exit_status is None else row.exit_status),
                         ("note", row.note or "-"),
                         ("interpreter", f"{row.interpreter} (Python {row.python_version})"),
                         ("requirements", ", ".join(repr(r) for r in row.requirements) or "none"),
                         ("files", ", ".join(row.files)), ("entry point", row.files[0] if row.files else "-"),
                         ("pid", row.pid or "-"), ("submitted", _fmt_time(row.submitted)),
                         ("started", _fmt_time(row.started)), ("ended", _fmt_time(row.ended)),
                         ("duration", "-" if _duration(row) is None else f"{_duration(row):.3f}s"),
                         ("workdir", row.workdir), ("stdout", row.stdout), ("stderr", row.stderr)):
        _print(f"{label + ':':<14}{value}")
    if tail > 0:
        for name in ("stdout", "stderr"):
            _print(f"--- {name} ---")
            text = _tail(getattr(row, name), tail)
            if text == "(none yet)\n" and row.state == JobState.DONE:
                text = "(not kept: removed by retention, or never written)\n"
            _print(text, end="" if text.endswith("\n") or not text else "\n")
    return 0


def main(args, parser) -> int:
    if args.command == "job" and not is_uuid(args.uuid):
        parser.error(f"job UUID {args.uuid!r} is not a canonical 8-4-4-4-12 hex UUID")
    if args.command == "job" and args.tail < 0:
        parser.error(f"--tail {args.tail}: must be >= 0")
    try:
        journal = _open(args.state_dir)
    except JournalError as exc:
        print(f"reference-agent: error: {exc}", file=sys.stderr)
        return 2
    if journal is None:
        print(f"reference-agent: no journal in {args.state_dir!r} (is it the agent's --state-dir?)",
              file=sys.stderr)
        return 1
    try:
        if args.command == "jobs":
            return show_jobs(journal, args.json)
        return show_job(journal, args.uuid, args.tail, args.json)
    except JournalError as exc:  # not a database, a row it cannot read: one line, no traceback
        print(f"reference-agent: error: {exc}", file=sys.stderr)
        return 2
    finally:
        journal.close()
