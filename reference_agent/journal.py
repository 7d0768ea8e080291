"""The durable journal: jobs, staged files and cache entries in SQLite, written before acting."""
from __future__ import annotations

import errno
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator

import grpc

from protos.errors import ProtocolError
from reference_agent.config import StateError
from reference_agent.jobrecord import INSERTED, JOB_COLUMNS, UPDATABLE, BadRow, JobRow, create_table_sql

__all__ = ["BadRow", "JobRow", "Journal", "JournalError", "StorageError", "is_disk_full"]

SCHEMA = create_table_sql("jobs") + """
CREATE TABLE IF NOT EXISTS staged (
    job TEXT NOT NULL,
    file TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (job, file)
);
CREATE INDEX IF NOT EXISTS staged_order ON staged (job, seq);  -- MAX(seq) per job in O(log n)
CREATE TABLE IF NOT EXISTS cache (
    file TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    sha256 TEXT                     -- of the content when fetched (NULL: an entry of version 0)
);
"""

# PRAGMA user_version of the journal this agent writes. 0: every journal before versioning (the
# release of 9106253 and earlier). MIGRATIONS[n] takes a journal from version n to n + 1 in one
# transaction; a journal of a newer version than this agent knows is refused (JournalError).
SCHEMA_VERSION = 1


def _v0_to_v1(db: sqlite3.Connection) -> None:
    """Cache entries gain the content's sha256 (NULL for the old ones: re-fetched before reuse
    after a restart); requirement and file lists may be stored run-length encoded (read both)."""
    if "sha256" not in {r[1] for r in db.execute("PRAGMA table_info(cache)")}:
        db.execute("ALTER TABLE cache ADD COLUMN sha256 TEXT")


MIGRATIONS = (_v0_to_v1,)


SQLITE_FULL = 13


def is_disk_full(exc: BaseException) -> bool:
    """ENOSPC or EDQUOT from the OS, or SQLITE_FULL from SQLite (which is how it reports them)."""
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    code = getattr(exc, "sqlite_errorcode", None)
    return (code is not None and code & 0xFF == SQLITE_FULL) or "disk is full" in str(exc)


class StorageError(ProtocolError):
    """A change the agent could not make durable: nothing was changed; the client may retry.

    RESOURCE_EXHAUSTED when the disk is full, UNAVAILABLE for any other I/O error. The message
    on the wire says which, never SQLite's own text; the cause goes to the log (`cause`)."""

    def __init__(self, cause: BaseException, what: str = "this change"):
        full = is_disk_full(cause)
        why = "its disk is full" if full else "its state directory cannot be written"
        super().__init__(f"the agent cannot record {what} now: {why}; nothing was changed, retry later")
        self.code = grpc.StatusCode.RESOURCE_EXHAUSTED if full else grpc.StatusCode.UNAVAILABLE
        self.cause = cause


class JournalError(StateError):
    """The journal does not open or holds a record the agent cannot read: exit 2 at start."""


class Journal:
    """SQLite in WAL mode; every method is one transaction, safe from any thread.

    A committed transaction is on disk before the method returns (`synchronous=FULL`: it
    survives SIGKILL and power loss). A write that fails
    (disk full, I/O error) is rolled back and raises StorageError; `on_error(op, exc)` logs the
    cause. A journal that does not open, or whose rows the agent cannot read, raises JournalError.
    """

    def __init__(self, path: str | Path, readonly: bool = False,
                 on_error: Callable[[str, BaseException], None] | None = None):
        self.path = Path(path)
        self.on_error = on_error or (lambda op, exc: None)
        self._lock = threading.Lock()
        self._local = threading.local()
        try:
            if readonly:
                uri = f"file:{self.path}?mode=ro"
                self._db = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
                self._db.execute("PRAGMA journal_mode=WAL")
                # FULL: each commit's WAL is on disk before the answer (power loss, not only
                # SIGKILL: issue 18.7); its cost is in docs/PERFORMANCE.md (bench/_durability.py).
                self._db.execute("PRAGMA synchronous=FULL")
                # After a checkpoint the WAL file is cut back, so that space freed is really
                # free and a full disk shows as an error at the write, not later.
                self._db.execute("PRAGMA journal_size_limit=0")
                self._db.executescript(SCHEMA)
                self._migrate()
                self._add_missing_columns()
            self._db.row_factory = sqlite3.Row
        except sqlite3.Error as exc:
            raise self._unreadable(exc) from None

    def _migrate(self) -> None:
        """Bring a journal written by an earlier release to SCHEMA_VERSION, step by step."""
        (version,) = self._db.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            raise JournalError(
                f"journal {str(self.path)!r} has schema version {version}, newer than this agent's "
                f"({SCHEMA_VERSION}): run the release that wrote it (or a newer one)")
        for step in range(version, SCHEMA_VERSION):
            self._db.execute("BEGIN IMMEDIATE")
            try:
                MIGRATIONS[step](self._db)
                self._db.execute(f"PRAGMA user_version={step + 1}")
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def schema_version(self) -> int:
        return int(self._read("PRAGMA user_version")[0][0])

    def _add_missing_columns(self) -> None:
        """A journal made before a column of JOB_COLUMNS existed gets it (NULL, or its default)."""
        present = {r[1] for r in self._db.execute("PRAGMA table_info(jobs)")}
        for column in JOB_COLUMNS:
            if column.name not in present:
                self._db.execute(column.add_sql())

    def _unreadable(self, exc: BaseException) -> JournalError:
        return JournalError(
            f"journal {str(self.path)!r} does not open: {exc}. Restore it from a backup; or move it "
            f"(and its -wal file) aside and start with --accept-lost-journal to begin a new one "
            f"(the jobs it held are then forgotten)")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def checkpoint(self) -> None:
        """Copy the WAL into the main file and cut the WAL to zero (before a backup, say)."""
        self._write("PRAGMA wal_checkpoint(TRUNCATE)", op="checkpoint")

    def _write(self, sql: str, args: tuple = (), op: str = "write") -> sqlite3.Cursor:
        with self._lock:
            try:
                return self._db.execute(sql, args)
            except sqlite3.Error as exc:
                self.on_error(op, exc)
                raise StorageError(exc) from None

    @contextmanager
    def _transaction(self, op: str):
        """BEGIN IMMEDIATE .. COMMIT under the lock; any error rolls back and raises StorageError."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                    self._db.execute("COMMIT")
                except BaseException:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                self.on_error(op, exc)
                raise StorageError(exc) from None

    def _read(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                self.on_error("read", exc)
                raise StorageError(exc, "this request") from None

    # --- jobs -------------------------------------------------------------------------------
    def insert_row(self, row: JobRow) -> int:
        """Insert a new job's row (its `seq` is ignored); return the seq the journal gave it."""
        cur = self._write(f"INSERT INTO jobs ({', '.join(INSERTED)}) VALUES ({', '.join('?' * len(INSERTED))})",
                          row.sql_values(INSERTED), op="insert job")
        return int(cur.lastrowid)

    def insert_job(self, **values) -> int:
        """Insert a new job given its columns by keyword (JobRow's; those with defaults may be left out)."""
        values["files"], values["requirements"] = tuple(values["files"]), tuple(values["requirements"])
        values["state"] = int(values["state"])
        return self.insert_row(JobRow(**values))

    def update_job(self, job: str, **values) -> None:
        unknown = set(values) - UPDATABLE
        if unknown:
            raise ValueError(f"not journal columns: {sorted(unknown)}")
        columns = ", ".join(f"{name}=?" for name in values)
        self._write(f"UPDATE jobs SET {columns} WHERE job=?", (*values.values(), job), op="update job")

    def jobs(self) -> list[JobRow]:
        """Every job in submission order; a row the agent cannot read raises JournalError."""
        try:
            rows = self._read("SELECT * FROM jobs ORDER BY seq")
        except StorageError as exc:
            raise self._unreadable(exc.cause) from None
        return [self._checked(r) for r in rows]

    def job(self, job: str) -> JobRow | None:
        """One job's row, or None; JournalError as for `jobs()`."""
        try:
            rows = self._read("SELECT * FROM jobs WHERE job=?", (job,))
        except StorageError as exc:
            raise self._unreadable(exc.cause) from None
        return self._checked(rows[0]) if rows else None

    def _checked(self, row: sqlite3.Row) -> JobRow:
        try:
            return JobRow.from_sql(row)
        except BadRow as exc:
            raise JournalError(
                f"journal {str(self.path)!r}: jobs row seq={row['seq'] if 'seq' in row.keys() else '?'} "
                f"cannot be read: {exc}. Correct or delete that row with the sqlite3 tool "
                f"(the agent is stopped), or restore the journal from a backup") from None

    # --- staged files -----------------------------------------------------------------------
    def add_staged(self, job: str, file: str) -> None:
        self.add_staged_many(job, [file])

    def add_staged_many(self, job: str, files: Iterable[str]) -> None:
        """Record files as staged for a job, in order after those already recorded, in one
        transaction together with the cache entries this thread deferred (see `deferring`)."""
        files = list(files)
        cache = self._take_deferred()
        if not files and not cache:
            return
        with self._transaction("stage") as db:
            if cache:
                db.executemany("INSERT OR REPLACE INTO cache (file, size, mtime_ns, sha256) VALUES (?,?,?,?)", cache)
            if files:
                (base,) = db.execute("SELECT COALESCE(MAX(seq), 0) FROM staged WHERE job=?", (job,)).fetchone()
                db.executemany("INSERT OR IGNORE INTO staged (job, file, seq) VALUES (?,?,?)",
                               [(job, f, base + i) for i, f in enumerate(files, 1)])

    def staged(self) -> Iterator[tuple[str, str]]:
        rows = self._read("SELECT job, file FROM staged ORDER BY job, seq")
        return iter([(r["job"], r["file"]) for r in rows])

    def staged_for(self, job: str) -> list[str]:
        return [r["file"] for r in self._read("SELECT file FROM staged WHERE job=? ORDER BY seq", (job,))]

    # --- content cache ----------------------------------------------------------------------
    def cache_entry(self, file: str) -> tuple[int, int, str | None] | None:
        """(size, mtime_ns, sha256 of the content or None) of a cache entry, or None."""
        rows = self._read("SELECT size, mtime_ns, sha256 FROM cache WHERE file=?", (file,))
        return (rows[0]["size"], rows[0]["mtime_ns"], rows[0]["sha256"]) if rows else None

    def set_cache_entry(self, file: str, size: int, mtime_ns: int, sha256: str | None = None) -> None:
        deferred = getattr(self._local, "cache", None)
        if deferred is not None:  # written with this thread's next add_staged_many
            deferred.append((file, size, mtime_ns, sha256))
            return
        self._write("INSERT OR REPLACE INTO cache (file, size, mtime_ns, sha256) VALUES (?,?,?,?)",
                    (file, size, mtime_ns, sha256), op="cache entry")

    @contextmanager
    def deferring(self):
        """Within it, this thread's cache entries wait for its next add_staged_many: staging many
        files commits once per chunk instead of once per file. Entries never written (an error)
        only cost a fetch later: a cache file without an entry is not trusted."""
        self._local.cache = []
        try:
            yield
        finally:
            self._local.cache = None

    def _take_deferred(self) -> list[tuple[str, int, int, str | None]]:
        deferred = getattr(self._local, "cache", None)
        if not deferred:
            return []
        self._local.cache = []
        return deferred
