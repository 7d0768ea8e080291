"""FakeFileSource: an in-memory file source (the "storage element") with injectable read failures."""
from __future__ import annotations

import collections
import threading
import uuid as uuid_module

from protos import validation


def _key(file_uuid: str) -> str:
    if not validation.is_uuid(file_uuid):
        raise ValueError(f"a file source key must be a canonical UUID, got {file_uuid!r}")
    return file_uuid.lower()


class FakeFileSource:
    """Holds the content of file U under U in lower case, as PROTOCOL-V1's file source does.

    `read(U)` returns the bytes put under U, raises FileNotFoundError when there are none and
    raises the injected error while `fail_reads()` is in force for U (or for every file). Every
    read attempt is counted in `reads` (a Counter by lower-case UUID), so a test can check that
    an agent caches content (AGT-STAGE-5). Thread-safe.
    """

    def __init__(self, files: dict[str, bytes] | None = None):
        self._lock = threading.Lock()
        self._files: dict[str, bytes] = {}
        self._failing: dict[str | None, BaseException] = {}
        self.reads: collections.Counter[str] = collections.Counter()
        for key, data in (files or {}).items():
            self.put(key, data)

    def put(self, file_uuid: str, data: bytes) -> str:
        """Store `data` under `file_uuid`; return the UUID in lower case."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"file content must be bytes, got {type(data).__name__}")
        key = _key(file_uuid)
        with self._lock:
            self._files[key] = bytes(data)
        return key

    def add(self, data: bytes) -> str:
        """Store `data` under a fresh random UUID and return that UUID."""
        return self.put(str(uuid_module.uuid4()), data)

    def delete(self, file_uuid: str) -> bool:
        """Remove a file; return whether it was there."""
        key = _key(file_uuid)
        with self._lock:
            return self._files.pop(key, None) is not None

    def fail_reads(self, file_uuid: str | None = None, error: BaseException | None = None) -> None:
        """Make reads of one file (or of every file, when None) raise `error` (default OSError)."""
        key = None if file_uuid is None else _key(file_uuid)
        with self._lock:
            self._failing[key] = error if error is not None else OSError(
                f"injected read failure for {key or 'every file'}")

    def heal(self, file_uuid: str | None = None) -> None:
        """Undo fail_reads() for one file, or for all when None."""
        with self._lock:
            if file_uuid is None:
                self._failing.clear()
            else:
                self._failing.pop(_key(file_uuid), None)

    def read(self, file_uuid: str) -> bytes:
        key = _key(file_uuid)
        with self._lock:
            self.reads[key] += 1
            error = self._failing.get(key) or self._failing.get(None)
            if error is not None:
                raise error
            try:
                return self._files[key]
            except KeyError:
                raise FileNotFoundError(f"no file {key} in the source") from None

    def clear(self) -> None:
        """Remove every file, injected failure and read count."""
        with self._lock:
            self._files.clear()
            self._failing.clear()
            self.reads.clear()

    def __contains__(self, file_uuid: object) -> bool:
        if not validation.is_uuid(file_uuid):
            return False
        with self._lock:
            return file_uuid.lower() in self._files  # type: ignore[union-attr]

    def __len__(self) -> int:
        with self._lock:
            return len(self._files)
