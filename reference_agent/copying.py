"""Copying file content: bounded, cancellable kernel copies, reflinks, and private file modes."""
from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Callable

CHUNK = 1 << 20
KERNEL_CHUNK = 16 << 20  # between two checks of the caller's deadline, at most this is copied
FICLONE = 0x40049409     # ioctl: the destination shares the source's extents (btrfs, XFS, bcachefs)
# Private modes: nothing of the agent's is readable by other users. Inputs (cache entries and
# the jobs' copies) are also read-only, so that a job does not change its own input by accident.
FILE_MODE, INPUT_MODE, DIR_MODE = 0o600, 0o400, 0o700

Active = Callable[[], bool]


DEADLINE_PASSED = "the caller's deadline passed while the file was being copied"


class CopyCancelled(Exception):
    """The caller stopped waiting (its deadline passed) while a file was being copied."""


def private_dir(path) -> None:
    """Create path (and missing parents, 0700 too) if needed and make it 0700, whatever it was."""
    path = Path(path)
    missing = [p for p in (path, *path.parents) if not p.exists()]
    os.makedirs(path, mode=DIR_MODE, exist_ok=True)
    for created in missing:
        os.chmod(created, DIR_MODE)
    os.chmod(path, DIR_MODE)


def private_files(directory, pattern: str) -> None:
    """chmod 0600 the files of directory that match pattern (the journal and its -wal, -shm)."""
    for path in Path(directory).glob(pattern):
        if path.is_file() and not path.is_symlink():
            os.chmod(path, FILE_MODE)


def write_all(fd: int, data: bytes | memoryview) -> int:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    return len(data)


def _check(active: Active | None) -> None:
    if active is not None and not active():
        raise CopyCancelled(DEADLINE_PASSED)


_KERNEL_FALLBACK = (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EBADF)


def copy_fd(src: int, dst: int, limit: int | None = None, active: Active | None = None) -> int:
    """Copy from src's offset to dst, at most `limit` bytes (None: to the end), in the kernel
    where possible (copy_file_range, sendfile), else by chunks. `active()` is asked between
    chunks; when it says False, CopyCancelled is raised. Returns the bytes copied."""
    total = 0
    remaining = (lambda: KERNEL_CHUNK) if limit is None else (lambda: min(KERNEL_CHUNK, limit - total))
    for fn in (getattr(os, "copy_file_range", None), getattr(os, "sendfile", None)):
        if fn is None:
            continue
        try:
            while (count := remaining()) > 0:
                _check(active)
                n = fn(src, dst, count) if fn is os.copy_file_range else fn(dst, src, None, count)
                if n == 0:
                    return total
                total += n
            return total
        except OSError as exc:
            if total or exc.errno not in _KERNEL_FALLBACK:
                raise
    while (count := min(CHUNK, remaining())) > 0:
        _check(active)
        chunk = os.read(src, count)
        if not chunk:
            break
        total += write_all(dst, chunk)
    return total


def reflink(src: int, dst: int) -> bool:
    """Make dst share src's blocks (copy on write) if the file system can; False otherwise."""
    try:
        import fcntl

        fcntl.ioctl(dst, FICLONE, src)
        return True
    except (ImportError, OSError):
        return False


def clone_or_copy(src: int, dst: int, size: int, active: Active | None = None) -> str:
    """dst gets src's `size` bytes: "reflink" when the file system shares blocks, else "copy"."""
    if reflink(src, dst):
        return "reflink"
    copied = copy_fd(src, dst, size, active)
    if copied != size:
        raise OSError(errno.EIO, f"copied {copied} of {size} bytes")
    return "copy"
