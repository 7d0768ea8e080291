"""Streaming readers of job traces: the Parallel Workloads Archive's SWF and a simple CSV."""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from protos import validation
from protos.errors import ProtocolError

SWF_FIELDS = 18
SWF_SUBMIT, SWF_RUNTIME = 1, 3   # 0-based columns: field 2 submit time, field 4 run time


class TraceError(ValueError):
    """A malformed trace line; the message names the file and the line number."""

    def __init__(self, path: Path | str, line: int, message: str):
        super().__init__(f"{path}:{line}: {message}")
        self.path = str(path)
        self.line = line


@dataclass(frozen=True)
class TraceJob:
    """One job of a trace: submit time (s from the trace's start), runtime (s), python requirement."""

    line: int
    submit: float
    runtime: float
    python: str | None = None


@dataclass
class TraceStats:
    """What a reader skipped, by reason (documented skips, never silent)."""

    read: int = 0
    skipped_unknown_runtime: int = 0


def read_swf(path: str | Path, stats: TraceStats | None = None) -> Iterator[TraceJob]:
    """Yield the jobs of an SWF file in order.

    Header and comment lines start with ';' and blank lines are ignored. A job line must have
    18 whitespace-separated numeric fields (-1 = unknown) and a submit time >= 0 not smaller than
    the previous job's; anything else raises TraceError with the line number. A job whose run
    time is unknown (-1) or negative is skipped and counted in `stats.skipped_unknown_runtime`:
    the archive marks jobs that were cancelled before they ran this way.
    """
    stats = stats if stats is not None else TraceStats()
    previous = -math.inf
    with open(path, encoding="utf-8", errors="replace") as fh:
        for lineno, text in enumerate(fh, start=1):
            stripped = text.strip()
            if not stripped or stripped.startswith(";"):
                continue
            parts = stripped.split()
            if len(parts) != SWF_FIELDS:
                raise TraceError(path, lineno, f"expected {SWF_FIELDS} fields, found {len(parts)}: {stripped[:80]!r}")
            values = []
            for i, part in enumerate(parts):
                try:
                    v = float(part)
                except ValueError:
                    raise TraceError(path, lineno, f"field {i + 1} is not a number: {part!r}") from None
                if not math.isfinite(v):
                    raise TraceError(path, lineno, f"field {i + 1} is not a finite number: {part!r}")
                values.append(v)
            submit, runtime = values[SWF_SUBMIT], values[SWF_RUNTIME]
            if submit < 0:
                raise TraceError(path, lineno, f"field 2 (submit time) must be >= 0, got {parts[SWF_SUBMIT]!r}")
            if submit < previous:
                raise TraceError(path, lineno, f"field 2 (submit time) {submit:g} is earlier than the previous job's {previous:g}; SWF is sorted by submit time")
            previous = submit
            if runtime < 0:
                stats.skipped_unknown_runtime += 1
                continue
            stats.read += 1
            yield TraceJob(lineno, submit, runtime)


CSV_COLUMNS = ("submit", "runtime", "python")


def read_csv(path: str | Path, stats: TraceStats | None = None) -> Iterator[TraceJob]:
    """Yield the jobs of a CSV with a header row: submit, runtime (seconds), optional python.

    Rows must be sorted by submit time; a bad number, a negative value, a missing column or an
    unknown column raises TraceError with the line number. Blank lines and lines starting with '#'
    are ignored.
    """
    stats = stats if stats is not None else TraceStats()
    previous = -math.inf
    with open(path, encoding="utf-8", newline="") as fh:
        rows = csv.reader(fh)
        header: list[str] | None = None
        for row in rows:
            lineno = rows.line_num
            if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
                continue
            if header is None:
                header = [c.strip() for c in row]
                unknown = [c for c in header if c not in CSV_COLUMNS]
                if unknown or "submit" not in header or "runtime" not in header:
                    raise TraceError(path, lineno, f"header must name submit, runtime and optionally python; got {row!r}")
                continue
            if len(row) != len(header):
                raise TraceError(path, lineno, f"expected {len(header)} columns, found {len(row)}")
            rec = dict(zip(header, (c.strip() for c in row)))
            nums = {}
            for name in ("submit", "runtime"):
                try:
                    nums[name] = float(rec[name])
                except ValueError:
                    raise TraceError(path, lineno, f"{name} is not a number: {rec[name]!r}") from None
                if not math.isfinite(nums[name]) or nums[name] < 0:
                    raise TraceError(path, lineno, f"{name} must be a finite number >= 0, got {rec[name]!r}")
            if nums["submit"] < previous:
                raise TraceError(path, lineno, f"submit {nums['submit']:g} is earlier than the previous row's {previous:g}")
            previous = nums["submit"]
            python = rec.get("python") or None
            if python is not None:
                try:
                    validation.parse_python_version(python)
                except ProtocolError as exc:
                    raise TraceError(path, lineno, f"python: {exc.message}") from None
            stats.read += 1
            yield TraceJob(lineno, nums["submit"], nums["runtime"], python)
        if header is None:
            raise TraceError(path, 1, "empty trace: no header row")
