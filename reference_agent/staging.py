"""Staging: file sources (local directory or fsspec), the content cache and atomic placement."""
from __future__ import annotations

import errno
import hashlib
import os
import stat
import threading
import uuid as uuidlib
from pathlib import Path
from typing import Callable

from protos.validation import is_uuid
from reference_agent.config import ConfigError
from reference_agent.copying import (CHUNK, DEADLINE_PASSED, INPUT_MODE, Active, CopyCancelled, clone_or_copy,
                                     copy_fd, private_dir, write_all)

__all__ = ["SourceError", "checked_name", "FileSource", "LocalSource", "FsspecSource", "make_source",
           "ContentStore", "copy_fd"]


# Errors opening a source file that are the agent's, not the source's: the file is not "absent",
# the call fails UNAVAILABLE and the client retries (issue 18.2).
AGENT_FAULTS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.EAGAIN})


class SourceError(Exception):
    """A file could not be read from the source (absent, not a regular file, read error)."""


def checked_name(file: str) -> str:
    """The on-disk name of a file: its lower-case UUID. Refuses anything else (AGT-ERR-3)."""
    if not is_uuid(file):
        raise ValueError(f"not a canonical UUID: {file!r}")
    return file.lower()


class FileSource:
    """Where file content comes from; `copy_to(file, fd, active)` writes the object's bytes into
    fd: no more than its size when the copy began, and SourceError if it changed meanwhile (a
    torn copy must never become a cache entry). `active()` False aborts the copy (a deadline)."""

    def copy_to(self, file: str, out_fd: int, active: Active | None = None) -> int:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


class LocalSource(FileSource):
    """A local directory. Entries are opened relative to the directory with O_NOFOLLOW and
    must be regular files: a symlink or FIFO named like a UUID is refused, never followed."""

    def __init__(self, directory: str | Path, create: bool = True):
        self.directory = Path(directory).resolve()
        kind = _kind(self.directory)
        if kind not in (None, "directory"):  # mkdir would say only "File exists"
            raise ConfigError(f"--source {str(directory)!r} is {kind}, not a directory: give a directory "
                              f"(created when missing) or an fsspec URL")
        if create:
            self.directory.mkdir(parents=True, exist_ok=True)
        if not self.directory.is_dir():
            raise SourceError(f"source {str(self.directory)!r} is not a directory")

    def describe(self) -> str:
        return str(self.directory)

    def _open(self, file: str) -> int:
        try:
            dir_fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as exc:  # the source, not the agent's state directory (AGT-STAGE-1)
            if exc.errno in AGENT_FAULTS:
                raise  # the agent's own trouble (no descriptor left): UNAVAILABLE, retried
            raise SourceError(f"{file}: the source directory {str(self.directory)!r} cannot be opened: "
                              f"{exc.strerror}") from None
        try:
            flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
            try:
                fd = os.open(checked_name(file), flags, dir_fd=dir_fd)
            except OSError as exc:
                if exc.errno in AGENT_FAULTS:
                    raise
                if exc.errno == errno.ELOOP:
                    raise SourceError(f"{file} is a symlink in the source: refused") from None
                raise SourceError(f"{file}: {exc.strerror}") from None
        finally:
            os.close(dir_fd)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise SourceError(f"{file} is not a regular file in the source: refused")
        os.set_blocking(fd, True)
        return fd

    def copy_to(self, file: str, out_fd: int, active: Active | None = None) -> int:
        fd = self._open(file)
        try:
            before = os.fstat(fd)
            copied = copy_fd(fd, out_fd, before.st_size, active)  # a growing file: its size at start
            after = os.fstat(fd)
        except CopyCancelled as exc:
            raise SourceError(f"{file}: {exc}") from None
        except OSError as exc:
            raise SourceError(f"{file}: read error: {exc.strerror}") from None
        finally:
            os.close(fd)
        if copied != before.st_size or _version(after) != _version(before):
            raise SourceError(f"{file} changed while it was copied ({before.st_size} bytes at start, "
                              f"{after.st_size} at the end, {copied} copied): not staged")
        return copied


class FsspecSource(FileSource):
    """Any fsspec URL (memory://, s3://, ...). Objects must be files; content is streamed."""

    def __init__(self, url: str):
        import fsspec

        self.url = url
        self.fs, self.root = fsspec.core.url_to_fs(url)
        self.root = self.root.rstrip("/")

    def describe(self) -> str:
        return self.url

    def copy_to(self, file: str, out_fd: int, active: Active | None = None) -> int:
        path = f"{self.root}/{checked_name(file)}" if self.root else checked_name(file)
        try:
            info = self.fs.info(path)
            if info.get("type") != "file" or info.get("islink"):
                raise SourceError(f"{file} is not a file in the source: refused")
            size = info.get("size")
            total = 0
            with self.fs.open(path, "rb") as src:
                while size is None or total < size:
                    if active is not None and not active():
                        raise SourceError(f"{file}: {DEADLINE_PASSED}")
                    chunk = src.read(CHUNK if size is None else min(CHUNK, size - total))
                    if not chunk:
                        break
                    total += write_all(out_fd, chunk)
            if size is not None and total != size:
                raise SourceError(f"{file} changed while it was copied ({size} bytes at start, "
                                  f"{total} read): not staged")
            return total
        except (FileNotFoundError, OSError, ValueError) as exc:
            raise SourceError(f"{file}: {exc}") from None


def _kind(path: Path) -> str | None:
    """What is at path, in words ("a FIFO", "a regular file"), "directory", or None when nothing."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"unusable ({exc.strerror})"
    if stat.S_ISDIR(mode):
        return "directory"
    return next((name for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISREG, "a regular file"),
                                         (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                                         (stat.S_ISBLK, "a block device")) if test(mode)), "not a directory")


def make_source(spec: str, create: bool = True) -> FileSource:
    """A LocalSource for a path or file:// URL, an FsspecSource for any other URL."""
    if spec.startswith("file://"):
        return LocalSource(spec[len("file://"):], create=create)
    if "://" in spec or "::" in spec:
        return FsspecSource(spec)
    return LocalSource(spec, create=create)


def _version(st: os.stat_result) -> tuple[int, int, int]:
    """What changes when a file's bytes change: size, mtime, and ctime (which nobody can set)."""
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns


class ContentStore:
    """The content cache by file UUID (AGT-STAGE-5) plus placement into job directories.

    A file is fetched once into `cache/UUID` (temporary name, then atomic rename, mode 0400) and
    placed in a job directory under a temporary name renamed into place, so a half-written file
    is never seen as staged. Each job gets its own bytes (AGT-STAGE-3): the first job to use an
    entry gets the cache's own inode (a hard link: no copy); every later job gets a reflink or
    a copy of it, checked unchanged before and after. An entry is trusted only while its size and
    mtime match the journal and, once given to a job, its inode and ctime (which the job cannot
    set back) are those recorded then: a job that rewrites its input changes only its own bytes,
    and the next job's bytes are fetched from the source again.
    """

    def __init__(self, source: FileSource, cache_dir: Path, tmp_dir: Path, journal,
                 on_fetch: Callable[[int], None] | None = None, input_mode: int = INPUT_MODE):
        self.source = source
        self.input_mode = input_mode  # 0400; 0444 when jobs run as another user (--job-user)
        self.cache_dir = cache_dir
        self.tmp_dir = tmp_dir
        self.journal = journal
        self.on_fetch = on_fetch or (lambda n: None)
        self._locks = [threading.Lock() for _ in range(256)]  # striped: bounded memory
        self._given: dict[str, tuple[int, int]] = {}  # file -> (inode, ctime) handed to a job
        self._verified: dict[str, tuple[int, int]] = {}  # file -> (inode, ctime) whose sha256 matched
        # --job-user (inputs 0444, owned by the agent's user): a job cannot change them, so every
        # job gets the cache's own inode (a hard link), never a copy.
        self.link_always = bool(input_mode & 0o044)
        self._unsynced: set[Path] = set()  # new files and the directories that gained them, not yet synced
        self._unsynced_lock = threading.Lock()
        private_dir(cache_dir)
        private_dir(tmp_dir)
        for leftover in tmp_dir.glob(".tmp-*"):  # from a crash mid-copy: never counted as staged
            leftover.unlink(missing_ok=True)
        self.fetches = 0  # files read whole from the source (AGT-STAGE-5 counts these)
        self.copies = {"link": 0, "reflink": 0, "copy": 0}  # how jobs got their bytes

    def _file_lock(self, file: str) -> threading.Lock:
        return self._locks[hash(file) % len(self._locks)]

    def lock(self, file: str) -> threading.Lock:
        """The lock under which a file's cache entry is fetched, placed or removed (retention)."""
        return self._file_lock(file)

    def _tmp_path(self) -> Path:
        return self.tmp_dir / f".tmp-{uuidlib.uuid4().hex}"

    def cached(self, file: str) -> Path | None:
        path = self.cache_dir / checked_name(file)
        entry = self.journal.cache_entry(file)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return None
        if entry is None or not stat.S_ISREG(st.st_mode) or (st.st_size, st.st_mtime_ns) != entry[:2]:
            return None
        given = self._given.get(file)
        if given is not None:
            if self.link_always:
                return path if given[0] == st.st_ino else None
            return path if given == (st.st_ino, st.st_ctime_ns) else None  # else changed by its job
        if st.st_nlink > 1 and not self.link_always:
            return None  # given to a job before a restart: nothing vouches for its bytes
        if self._verified.get(file) != (st.st_ino, st.st_ctime_ns):
            # Not fetched nor given in this run (a restart): its bytes must still be those
            # fetched (a job may have rewritten them in place and set the mtime back).
            if entry[2] is None or _sha256(path) != entry[2]:
                return None
            self._verified[file] = (st.st_ino, st.st_ctime_ns)
        return path

    def sync(self) -> None:
        """Put on disk what was placed since the last call (new cache files and inputs, the
        directories that gained them): called before the journal records them as staged, once
        per chunk of files. One syncfs of the state directory's file system where the OS has it
        (a per-file fsync cost ~7 ms a file here: 2,000 files took 13.5 s), else fsync of each."""
        with self._unsynced_lock:
            paths, self._unsynced = self._unsynced, set()
        if not paths or _syncfs(self.cache_dir):
            return
        for path in paths:
            _fsync_path(path)

    def _dirty(self, directory: Path, file: Path | None = None) -> None:
        with self._unsynced_lock:
            self._unsynced.add(directory)
            if file is not None:
                self._unsynced.add(file)

    def forget(self, file: str) -> None:
        """Drop what is known of an entry that retention removed."""
        self._given.pop(file, None)

    def fetch(self, file: str, active: Active | None = None) -> Path:
        """The cached copy of a file, reading the source only when it is not cached yet."""
        with self._file_lock(file):
            return self._fetch(file, active)

    def _fetch(self, file: str, active: Active | None) -> Path:
        path = self.cached(file)
        if path is not None:
            return path
        tmp = self._tmp_path()
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, self.input_mode)  # read back: sha256
        try:
            os.fchmod(fd, self.input_mode)  # whatever the umask
            size = self.source.copy_to(file, fd, active)
            digest = _sha256_fd(fd)
            st = os.fstat(fd)
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        os.close(fd)
        path = self.cache_dir / checked_name(file)
        os.replace(tmp, path)
        self._dirty(self.cache_dir, path)
        self._given.pop(file, None)
        self._verified[file] = (st.st_ino, os.lstat(path).st_ctime_ns)
        self.journal.set_cache_entry(file, st.st_size, st.st_mtime_ns, digest)
        self.fetches += 1
        self.on_fetch(size)
        return path

    def place(self, file: str, job_dir: Path, active: Active | None = None) -> Path:
        """Put the file's bytes in job_dir under its lower-case UUID, atomically, as the job's own."""
        with self._file_lock(file):
            cached = self._fetch(file, active)
            if not job_dir.is_dir():  # one stat per file; created 0700 with its parents
                private_dir(job_dir)
            dest = job_dir / checked_name(file)
            tmp = self._tmp_path()  # on the same file system; the job directory never holds temporaries
            shareable = self.link_always or (file not in self._given and os.lstat(cached).st_nlink == 1)
            if shareable and self._link(cached, tmp):
                os.replace(tmp, dest)  # replaces, never follows, whatever is at dest
                self._dirty(job_dir)
                if stat.S_IMODE(os.lstat(dest).st_mode) != self.input_mode:  # an older entry
                    os.chmod(dest, self.input_mode, follow_symlinks=False)
                st = os.lstat(dest)    # after the rename and chmod, which change the ctime too
                self._given[file] = (st.st_ino, st.st_ctime_ns)
                self.copies["link"] += 1
                return dest
            self._copy(file, cached, tmp, active)
            os.replace(tmp, dest)
            self._dirty(job_dir, dest)
            return dest

    @staticmethod
    def _link(src: Path, dst: Path) -> bool:
        try:
            os.link(src, dst, follow_symlinks=False)
            return True
        except OSError:
            return False

    def _copy(self, file: str, src: Path, dst: Path, active: Active | None) -> None:
        """dst gets a reflink or a copy of src; SourceError if src changed meanwhile (then the
        entry is dropped, so the next staging fetches it afresh)."""
        sfd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            before = os.fstat(sfd)
            dfd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, self.input_mode)
            try:
                os.fchmod(dfd, self.input_mode)
                how = clone_or_copy(sfd, dfd, before.st_size, active)
                changed = _version(os.fstat(sfd)) != _version(before)
            except BaseException:
                os.close(dfd)
                dst.unlink(missing_ok=True)
                raise
            os.close(dfd)
        except CopyCancelled as exc:
            raise SourceError(f"{file}: {exc}") from None
        finally:
            os.close(sfd)
        if changed:
            dst.unlink(missing_ok=True)
            self._given[file] = (-1, -1)  # never trusted again: the next staging fetches afresh
            raise SourceError(f"{file}: the cached copy changed while it was copied: not staged")
        self.copies[how] += 1


def _sha256_fd(fd: int) -> str:
    """sha256 of a file's whole content, read through fd from offset 0."""
    digest = hashlib.sha256()
    offset = 0
    while chunk := os.pread(fd, CHUNK, offset):
        digest.update(chunk)
        offset += len(chunk)
    return digest.hexdigest()


def _sha256(path: Path) -> str | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        return _sha256_fd(fd)
    finally:
        os.close(fd)


def _fsync_path(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return  # removed meanwhile (retention): nothing of it to keep
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _syncfs(directory: Path) -> bool:
    """syncfs(2) of the file system holding directory: True when done."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except (OSError, AttributeError):
        return False
    try:
        return getattr(libc, "syncfs", None) is not None and libc.syncfs(fd) == 0
    finally:
        os.close(fd)
