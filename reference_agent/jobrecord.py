"""A job's facts declared once: JOB_COLUMNS makes the journal's row (JobRow), its SQL table, the
column lists of INSERT and UPDATE, the checks made on reading, and the fields of the core's Job.

Adding a journal column is one line in JOB_COLUMNS, e.g.
    Column("outcome", "TEXT", "str | None", default=None, update=True, check=_text, held=_same),
`update=True` lets `Journal.update_job(job, outcome=...)` (and the core's transitions) write it;
`held=_same` gives the in-memory `Job` an attribute of that name, filled from the row and kept
up to date by each transition that writes it. A journal created before the column existed
lacks it: `Journal` adds it (`Column.add_sql`) when it opens one, so a nullable column (or one
with a default) is all a new column needs.
"""
from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field, fields, make_dataclass
from pathlib import Path
from typing import Any, Callable

from protos.states import DoneReason, JobState
from protos.validation import is_uuid


class BadRow(ValueError):
    """One journal row with a value the agent cannot read; the message names row and column."""


REQUIRED = object()  # a Column without a default: every new row gives it


def _cut(value, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- checks: each takes (column name, value read) and returns the value to keep or raises BadRow --
def _uuid(name: str, value):
    if not isinstance(value, str) or not is_uuid(value):
        raise BadRow(f"{name} {_cut(value)} is not a UUID")
    return value


def _json_strings(name: str, value) -> tuple[str, ...]:
    """A JSON list whose items are strings, or [string, count] for a run of one string (the
    compact form written since journal schema version 1: 838,820 copies of "3" are one item)."""
    try:
        items = json.loads(value)
    except (TypeError, ValueError):
        raise BadRow(f"{name} {_cut(value)} is not a JSON list") from None
    if not isinstance(items, list):
        raise BadRow(f"{name} {_cut(value)} is not a JSON list of strings")
    out: list[str] = []
    for item in items:
        if isinstance(item, str):
            out.append(item)
        elif (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)
              and type(item[1]) is int and item[1] > 1):
            out.extend([item[0]] * item[1])
        else:
            raise BadRow(f"{name} {_cut(value)} is not a JSON list of strings")
    return tuple(out)


def runs(values) -> list:
    """values with each run of one string written once: [string, count] (see _json_strings)."""
    counted = ((value, sum(1 for _ in run)) for value, run in itertools.groupby(values))
    return [value if count == 1 else [value, count] for value, count in counted]


def _state(name: str, value):
    if value not in {int(s) for s in JobState}:
        raise BadRow(f"{name} {_cut(value)} is not one of "
                     f"{', '.join(f'{int(s)} ({s.name})' for s in JobState)}")
    return value


def _reason(name: str, value):
    if value is not None and value not in {r.value for r in DoneReason}:
        raise BadRow(f"{name} {_cut(value)} is not a DONE reason")
    return value


def _text(name: str, value):
    if value is not None and not isinstance(value, str):
        raise BadRow(f"{name} {_cut(value)} is not text")
    return value


def _integer(name: str, value):
    if value is not None and not isinstance(value, int):
        raise BadRow(f"{name} {_cut(value)} is not an integer")
    return value


def _pid(name: str, value):
    _integer(name, value)
    if value is not None and value <= 0:
        raise BadRow(f"{name} {value} is not a process id")
    return value


def _time(name: str, value):
    if value is None:
        return value
    if not (isinstance(value, (int, float)) and value == value and abs(value) != float("inf")):
        raise BadRow(f"{name} {_cut(value)} is not a time in seconds")
    return value


def _same(value):
    return value


@dataclass(frozen=True)
class Column:
    """One column of the jobs table and of its row; see the module docstring."""

    name: str
    sql: str                      # its SQL type and constraints, as in CREATE TABLE
    type: str                     # the row attribute's annotation
    default: Any = REQUIRED       # the value of a new row that does not give it
    update: bool = False          # may be written after insert (Journal.update_job)
    check: Callable[[str, Any], Any] | None = None  # on reading: the value kept, or BadRow
    held: Callable[[Any], Any] | None = None  # the in-memory Job's attribute built from it (None: none)
    json: bool = False            # stored as a JSON list, held as a tuple of strings
    doc: str = ""

    def add_sql(self, table: str = "jobs") -> str:
        """ALTER TABLE adding this column to a journal made before it existed."""
        return f"ALTER TABLE {table} ADD COLUMN {self.name} {self.sql}"

    def encode(self, value):
        return json.dumps(runs(value)) if self.json else value


JOB_COLUMNS: tuple[Column, ...] = (
    Column("seq", "INTEGER PRIMARY KEY AUTOINCREMENT", "int", default=0, held=_same,
           doc="submission order, given by the journal"),
    Column("job", "TEXT NOT NULL UNIQUE", "str", check=_uuid, held=_same),
    Column("files", "TEXT NOT NULL", "tuple[str, ...]", check=_json_strings, held=_same, json=True,
           doc="JSON list of lower-case file UUIDs, duplicates kept"),
    Column("requirements", "TEXT NOT NULL", "tuple[str, ...]", check=_json_strings, held=_same, json=True,
           doc="JSON list of python_version strings as sent"),
    Column("interpreter", "TEXT NOT NULL", "str", check=_text, held=_same),
    Column("python_version", "TEXT NOT NULL", "str", check=_text, held=_same),
    Column("state", "INTEGER NOT NULL", "int", update=True, check=_state,
           doc="protos.states.JobState (the Job holds it in its state machine)"),
    Column("reason", "TEXT", "str | None", default=None, update=True, check=_reason,
           doc="protos.states.DoneReason, only for DONE"),
    Column("pid", "INTEGER", "int | None", default=None, update=True, check=_pid, held=_same),
    Column("proc_start", "TEXT", "str | None", default=None, update=True,
           doc="boot id + start time of pid, against pid reuse"),
    Column("exit_status", "INTEGER", "int | None", default=None, update=True, check=_integer, held=_same),
    Column("note", "TEXT", "str | None", default=None, update=True),
    Column("submitted", "REAL NOT NULL", "float", check=_time, held=_same),
    Column("started", "REAL", "float | None", default=None, update=True, check=_time, held=_same),
    Column("ended", "REAL", "float | None", default=None, update=True, check=_time, held=_same),
    Column("cancelled", "REAL", "float | None", default=None, update=True, check=_time, held=_same,
           doc="when CancelJob was recorded (AGT-EXT-5): the job's end is CANCELLED"),
    Column("workdir", "TEXT NOT NULL", "str", check=_text, held=Path),
    Column("stdout", "TEXT NOT NULL", "str", check=_text, held=Path),
    Column("stderr", "TEXT NOT NULL", "str", check=_text, held=Path),
)

COLUMNS_BY_NAME = {c.name: c for c in JOB_COLUMNS}
INSERTED = tuple(c.name for c in JOB_COLUMNS if c.name != "seq")  # seq: the journal gives it
UPDATABLE = frozenset(c.name for c in JOB_COLUMNS if c.update)
HELD = tuple(c for c in JOB_COLUMNS if c.held is not None)


def create_table_sql(table: str = "jobs") -> str:
    """CREATE TABLE for the jobs table, from JOB_COLUMNS."""
    lines = [f"    {c.name} {c.sql}" + ("," if i < len(JOB_COLUMNS) - 1 else "")
             + (f"  -- {c.doc}" if c.doc else "") for i, c in enumerate(JOB_COLUMNS)]
    return f"CREATE TABLE IF NOT EXISTS {table} (\n" + "\n".join(lines) + "\n);\n"


def dataclass_fields(columns) -> list:
    return [(c.name, c.type, field() if c.default is REQUIRED else field(default=c.default)) for c in columns]


class JobRow(make_dataclass("JobRowColumns", dataclass_fields(JOB_COLUMNS), kw_only=True)):
    """One row of the jobs table: the one record of a job's facts, as the journal keeps them,
    built by keyword (its fields are JOB_COLUMNS). The core's `Job` is built from it by
    `Job.from_row` and nowhere else."""

    @classmethod
    def from_sql(cls, row) -> "JobRow":
        """The row (a sqlite3.Row), checked: a value the agent cannot act on raises BadRow naming it."""
        values = dict(row)
        if set(values) != set(COLUMNS_BY_NAME):
            raise BadRow(f"columns {sorted(set(values) ^ set(COLUMNS_BY_NAME))} differ from this agent's "
                         f"journal schema")
        for column in JOB_COLUMNS:
            if column.check is not None:
                values[column.name] = column.check(column.name, values[column.name])
        if (values["reason"] is None) != (values["state"] != JobState.DONE):
            raise BadRow(f"state {JobState(values['state']).name} with reason {_cut(values['reason'])}")
        if not values["files"] and values["state"] != JobState.DONE:  # DONE: it never starts again
            raise BadRow("files is empty: a submitted job has at least its entry point")
        if values["submitted"] is None:
            raise BadRow("submitted None is not a time in seconds")
        return cls(**values)

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def sql_values(self, names) -> tuple:
        """The values of these columns as the journal stores them (JSON lists encoded)."""
        return tuple(COLUMNS_BY_NAME[n].encode(getattr(self, n)) for n in names)
