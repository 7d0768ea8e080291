"""How the suite puts test inputs into the agent's file source: a shared folder or a user command."""
from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
from pathlib import Path


class SourceError(Exception):
    """Putting a file into the agent's source failed (the put command exited non-zero)."""


class DirSource:
    """A folder that the agent reads as its source: file U is the file named U (lower case)."""

    can_delete = True
    can_symlink = True

    def __init__(self, directory: str | os.PathLike):
        self.dir = Path(directory)

    def put(self, uuid: str, data: bytes) -> None:
        # write then rename: an agent reading at the same moment sees old or new bytes, never half
        fd, tmp = tempfile.mkstemp(prefix=".conformance-", dir=self.dir)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, self.dir / uuid.lower())
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def delete(self, uuid: str) -> None:
        (self.dir / uuid.lower()).unlink(missing_ok=True)

    def symlink(self, uuid: str, target: str | os.PathLike) -> None:
        os.symlink(target, self.dir / uuid.lower())

    def __repr__(self) -> str:
        return f"--source-dir {self.dir}"


class CommandSource:
    """Runs a user command per file: `{path}` is a local file holding the bytes, `{uuid}` the name."""

    can_delete = False
    can_symlink = False

    def __init__(self, command: str, timeout: float = 60.0):
        self.command = command
        self.timeout = timeout

    def put(self, uuid: str, data: bytes) -> None:
        with tempfile.TemporaryDirectory(prefix="conformance-put-") as tmp:
            path = Path(tmp) / uuid.lower()
            path.write_bytes(data)
            cmd = self.command.format(path=shlex.quote(str(path)), uuid=uuid.lower())
            done = subprocess.run(cmd, shell=True, capture_output=True, timeout=self.timeout)
            if done.returncode != 0:
                raise SourceError(f"--put-cmd {cmd!r} exited {done.returncode}: "
                                  f"{done.stderr.decode('utf-8', 'replace').strip()[:500]}")

    def __repr__(self) -> str:
        return f"--put-cmd {self.command!r}"
