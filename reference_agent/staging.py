"""Staging: file sources (local directory or fsspec), the content cache and atomic placement."""
from __future__ import annotations

import errno
import os
import stat
import threading
import uuid as uuidlib
from pathlib import Path
from typing import Callable

from protos.validation import is_uuid

CHUNK = 1 << 20


class SourceError(Exception):
    """A file could not be read from the source (absent, not a regular file, read error)."""


def checked_name(file: str) -> str:
    """The on-disk name of a file: its lower-case UUID. Refuses anything else (AGT-ERR-3)."""
    if not is_uuid(file):
        raise ValueError(f"not a canonical UUID: {file!r}")
    return file.lower()


class FileSource:
    """Where file content comes from; `copy_to(file, fd)` writes the object's bytes into fd."""

    def copy_to(self, file: str, out_fd: int) -> int:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


class LocalSource(FileSource):
    """A local directory. Entries are opened relative to the directory with O_NOFOLLOW and
    must be regular files: a symlink or FIFO named like a UUID is refused, never followed."""

    def __init__(self, directory: str | Path, create: bool = True):
        self.directory = Path(directory).resolve()
        if create:
            self.directory.mkdir(parents=True, exist_ok=True)
        if not self.directory.is_dir():
            raise SourceError(f"source {str(self.directory)!r} is not a directory")

    def describe(self) -> str:
        return str(self.directory)

    def _open(self, file: str) -> int:
        dir_fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
            try:
                fd = os.open(checked_name(file), flags, dir_fd=dir_fd)
            except OSError as exc:
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

    def copy_to(self, file: str, out_fd: int) -> int:
        fd = self._open(file)
        try:
            return copy_fd(fd, out_fd)
        except OSError as exc:
            raise SourceError(f"{file}: read error: {exc.strerror}") from None
        finally:
            os.close(fd)


class FsspecSource(FileSource):
    """Any fsspec URL (memory://, s3://, ...). Objects must be files; content is streamed."""

    def __init__(self, url: str):
        import fsspec

        self.url = url
        self.fs, self.root = fsspec.core.url_to_fs(url)
        self.root = self.root.rstrip("/")

    def describe(self) -> str:
        return self.url

    def copy_to(self, file: str, out_fd: int) -> int:
        path = f"{self.root}/{checked_name(file)}" if self.root else checked_name(file)
        try:
            info = self.fs.info(path)
            if info.get("type") != "file" or info.get("islink"):
                raise SourceError(f"{file} is not a file in the source: refused")
            total = 0
            with self.fs.open(path, "rb") as src:
                while chunk := src.read(CHUNK):
                    total += _write_all(out_fd, chunk)
            return total
        except (FileNotFoundError, OSError, ValueError) as exc:
            raise SourceError(f"{file}: {exc}") from None


def make_source(spec: str, create: bool = True) -> FileSource:
    """A LocalSource for a path or file:// URL, an FsspecSource for any other URL."""
    if spec.startswith("file://"):
        return LocalSource(spec[len("file://"):], create=create)
    if "://" in spec or "::" in spec:
        return FsspecSource(spec)
    return LocalSource(spec, create=create)


def _write_all(fd: int, data: bytes | memoryview) -> int:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    return len(data)


def copy_fd(src: int, dst: int) -> int:
    """Copy src to dst in the kernel where possible (copy_file_range, sendfile), else by chunks."""
    total = 0
    for fn in (getattr(os, "copy_file_range", None), getattr(os, "sendfile", None)):
        if fn is None:
            continue
        try:
            while True:
                n = fn(src, dst, 1 << 30) if fn is os.copy_file_range else fn(dst, src, None, 1 << 30)
                if n == 0:
                    return total
                total += n
        except OSError as exc:
            if total or exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EBADF):
                raise
    while chunk := os.read(src, CHUNK):
        total += _write_all(dst, chunk)
    return total


class ContentStore:
    """The content cache by file UUID (AGT-STAGE-5) plus placement into job directories.

    A file is fetched once into `cache/UUID` (temporary name, then atomic rename, read-only)
    and placed in a job directory as a hard link made under a temporary name, renamed into place,
    so a half-written file is never seen as staged. A cache entry is trusted only while its
    size and mtime match the journal (a job that wrote to its linked input invalidates it).
    """

    def __init__(self, source: FileSource, cache_dir: Path, tmp_dir: Path, journal,
                 on_fetch: Callable[[int], None] | None = None):
        self.source = source
        self.cache_dir = cache_dir
        self.tmp_dir = tmp_dir
        self.journal = journal
        self.on_fetch = on_fetch or (lambda n: None)
        self._locks = [threading.Lock() for _ in range(256)]  # striped: bounded memory
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp_dir.mkdir(parents=True, exist_ok=True)
        for leftover in tmp_dir.glob(".tmp-*"):  # from a crash mid-copy: never counted as staged
            leftover.unlink(missing_ok=True)
        self.fetches = 0  # files read whole from the source (AGT-STAGE-5 counts these)

    def _file_lock(self, file: str) -> threading.Lock:
        return self._locks[hash(file) % len(self._locks)]

    def _tmp_path(self) -> Path:
        return self.tmp_dir / f".tmp-{uuidlib.uuid4().hex}"

    def cached(self, file: str) -> Path | None:
        path = self.cache_dir / checked_name(file)
        entry = self.journal.cache_entry(file)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return None
        if entry is None or not stat.S_ISREG(st.st_mode) or (st.st_size, st.st_mtime_ns) != entry:
            return None
        return path

    def fetch(self, file: str) -> Path:
        """The cached copy of a file, reading the source only when it is not cached yet."""
        with self._file_lock(file):
            path = self.cached(file)
            if path is not None:
                return path
            tmp = self._tmp_path()
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o444)
            try:
                size = self.source.copy_to(file, fd)
                st = os.fstat(fd)
            except BaseException:
                os.close(fd)
                tmp.unlink(missing_ok=True)
                raise
            os.close(fd)
            path = self.cache_dir / checked_name(file)
            os.replace(tmp, path)
            self.journal.set_cache_entry(file, st.st_size, st.st_mtime_ns)
            self.fetches += 1
            self.on_fetch(size)
            return path

    def place(self, file: str, job_dir: Path) -> Path:
        """Put the file's bytes in job_dir under its lower-case UUID, atomically."""
        cached = self.fetch(file)
        job_dir.mkdir(parents=True, exist_ok=True)
        tmp = self._tmp_path()  # on the same file system; the job directory never holds temporaries
        try:
            os.link(cached, tmp, follow_symlinks=False)
        except OSError:
            self._copy(cached, tmp)
        dest = job_dir / checked_name(file)
        os.replace(tmp, dest)  # replaces, never follows, whatever is at dest
        return dest

    @staticmethod
    def _copy(src: Path, dst: Path) -> None:
        sfd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            dfd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o444)
            try:
                copy_fd(sfd, dfd)
            finally:
                os.close(dfd)
        finally:
            os.close(sfd)
