"""The durable journal: jobs, staged files and cache entries in SQLite, written before acting."""
from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Iterator

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    job TEXT NOT NULL UNIQUE,
    files TEXT NOT NULL,            -- JSON list of lower-case file UUIDs, duplicates kept
    requirements TEXT NOT NULL,     -- JSON list of python_version strings as sent
    interpreter TEXT NOT NULL,
    python_version TEXT NOT NULL,
    state INTEGER NOT NULL,         -- protos.states.JobState
    reason TEXT,                    -- protos.states.DoneReason, only for DONE
    pid INTEGER,
    proc_start TEXT,                -- boot id + start time of pid, against pid reuse
    exit_status INTEGER,
    note TEXT,
    submitted REAL NOT NULL,
    started REAL,
    ended REAL,
    workdir TEXT NOT NULL,
    stdout TEXT NOT NULL,
    stderr TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS staged (
    job TEXT NOT NULL,
    file TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (job, file)
);
CREATE TABLE IF NOT EXISTS cache (
    file TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL
);
"""


@dataclass
class JobRow:
    """One row of the jobs table, as the core and the operator view read it."""

    seq: int
    job: str
    files: tuple[str, ...]
    requirements: tuple[str, ...]
    interpreter: str
    python_version: str
    state: int
    reason: str | None
    pid: int | None
    proc_start: str | None
    exit_status: int | None
    note: str | None
    submitted: float
    started: float | None
    ended: float | None
    workdir: str
    stdout: str
    stderr: str

    @classmethod
    def from_sql(cls, row: sqlite3.Row) -> "JobRow":
        values = dict(row)
        values["files"] = tuple(json.loads(values["files"]))
        values["requirements"] = tuple(json.loads(values["requirements"]))
        return cls(**values)

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


_UPDATABLE = {"state", "reason", "pid", "proc_start", "exit_status", "note", "started", "ended"}


class Journal:
    """SQLite in WAL mode; every method is one transaction, safe from any thread.

    A committed transaction survives SIGKILL of the agent (the OS has the pages);
    `synchronous=NORMAL` trades only power-loss durability for speed.
    """

    def __init__(self, path: str | Path, readonly: bool = False):
        self.path = Path(path)
        self._lock = threading.Lock()
        if readonly:
            uri = f"file:{self.path}?mode=ro"
            self._db = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
        self._db.row_factory = sqlite3.Row

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _write(self, sql: str, args: tuple = ()) -> sqlite3.Cursor:
        with self._lock:
            return self._db.execute(sql, args)

    # --- jobs -------------------------------------------------------------------------------
    def insert_job(self, *, job: str, files, requirements, interpreter: str, python_version: str,
                   state: int, submitted: float, workdir: str, stdout: str, stderr: str) -> int:
        cur = self._write(
            "INSERT INTO jobs (job, files, requirements, interpreter, python_version, state, "
            "submitted, workdir, stdout, stderr) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (job, json.dumps(list(files)), json.dumps(list(requirements)), interpreter,
             python_version, int(state), submitted, workdir, stdout, stderr))
        return int(cur.lastrowid)

    def update_job(self, job: str, **values) -> None:
        unknown = set(values) - _UPDATABLE
        if unknown:
            raise ValueError(f"not journal columns: {sorted(unknown)}")
        columns = ", ".join(f"{name}=?" for name in values)
        self._write(f"UPDATE jobs SET {columns} WHERE job=?", (*values.values(), job))

    def jobs(self) -> list[JobRow]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM jobs ORDER BY seq").fetchall()
        return [JobRow.from_sql(r) for r in rows]

    def job(self, job: str) -> JobRow | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE job=?", (job,)).fetchone()
        return JobRow.from_sql(row) if row else None

    # --- staged files -----------------------------------------------------------------------
    def add_staged(self, job: str, file: str) -> None:
        self._write(
            "INSERT OR IGNORE INTO staged (job, file, seq) VALUES "
            "(?, ?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM staged WHERE job=?))", (job, file, job))

    def staged(self) -> Iterator[tuple[str, str]]:
        with self._lock:
            rows = self._db.execute("SELECT job, file FROM staged ORDER BY job, seq").fetchall()
        return iter([(r["job"], r["file"]) for r in rows])

    def staged_for(self, job: str) -> list[str]:
        with self._lock:
            rows = self._db.execute("SELECT file FROM staged WHERE job=? ORDER BY seq", (job,)).fetchall()
        return [r["file"] for r in rows]

    # --- content cache ----------------------------------------------------------------------
    def cache_entry(self, file: str) -> tuple[int, int] | None:
        with self._lock:
            row = self._db.execute("SELECT size, mtime_ns FROM cache WHERE file=?", (file,)).fetchone()
        return (row["size"], row["mtime_ns"]) if row else None

    def set_cache_entry(self, file: str, size: int, mtime_ns: int) -> None:
        self._write("INSERT OR REPLACE INTO cache (file, size, mtime_ns) VALUES (?,?,?)",
                    (file, size, mtime_ns))
