"""Python interpreters on the host: discovery, one cached version probe each, deterministic choice."""
from __future__ import annotations

import errno
import json
import os
import re
import time
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterable, Sequence

from packaging.version import Version

from protos.validation import PythonRequirement, choose_interpreter
from reference_agent.processes import SAFE_PATH, SETPRIV, JobUser

# The probe an interpreter (or a wrapper posing as one) answers: "MAJOR.MINOR.MICRO LEVEL SERIAL".
PROBE_CODE = "import sys; v = sys.version_info; print('%d.%d.%d %s %d' % tuple(v[:5]))"
_PROBE_RE = re.compile(r"\s*(\d+)\.(\d+)\.(\d+)(?:\s+(alpha|beta|candidate|final)(?:\s+(\d+))?)?\s*", re.ASCII)
_LEVEL_SUFFIX = {"alpha": "a", "beta": "b", "candidate": "rc"}
_NAME_RE = re.compile(r"python3(\.\d+)?", re.ASCII)


@dataclass(frozen=True)
class Interpreter:
    """One probed interpreter. `version` is PEP 440 text: "3.11.7", or "3.13.0rc1" for a
    pre-release, which packaging (and so the agent) never chooses (AGT-RUN-4)."""

    path: str
    version: str
    prerelease: bool
    origin: str  # "--python", "running" or "PATH"


def parse_probe(output: str) -> tuple[str, bool] | None:
    """Version text and pre-release flag from the probe's output, or None when unreadable."""
    lines = output.strip().splitlines()
    m = _PROBE_RE.fullmatch(lines[-1]) if lines else None
    if m is None:
        return None
    major, minor, micro, level, serial = m.groups()
    level = level or "final"
    release = f"{int(major)}.{int(minor)}.{int(micro)}"
    if level == "final":
        return release, False
    return f"{release}{_LEVEL_SUFFIX[level]}{int(serial or 0)}", True


_probe_cache: dict[tuple, tuple[str, bool] | None] = {}
_probe_lock = threading.Lock()


class ProbeRefused(Exception):
    """The OS refused to run a probe (no process or file left: EAGAIN, EMFILE, ENOMEM...): the
    agent's trouble, not the interpreter's; never cached, tried again later."""


def _probe_key(path: str, uid: int | None) -> tuple | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (os.path.abspath(path), st.st_size, st.st_mtime_ns, st.st_ino, uid)


def probe(path: str, timeout: float = 10.0, user: "JobUser | None" = None) -> tuple[str, bool] | None:
    """Run the interpreter once with PROBE_CODE, as `user` when given (the job user must be able
    to run it); cached by path, size, mtime, inode and user. ProbeRefused when it could not be run."""
    key = _probe_key(path, None if user is None else user.uid)
    if key is None:
        return None
    with _probe_lock:
        if key in _probe_cache:
            return _probe_cache[key]
    argv = [path, "-c", PROBE_CODE]
    if user is not None:
        argv = [SETPRIV, f"--reuid={user.uid}", f"--regid={user.gid}", "--clear-groups", "--", *argv]
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, cwd="/",
                              timeout=timeout, text=True, errors="replace",
                              env={"PATH": SAFE_PATH, "LANG": "C.UTF-8"})  # as jobs run
        result = parse_probe(done.stdout) if done.returncode == 0 else None
    except OSError as exc:
        if exc.errno in _REFUSALS:
            raise ProbeRefused(f"{path}: {exc.strerror}") from None
        result = None
    except subprocess.SubprocessError:
        result = None
    with _probe_lock:
        _probe_cache[key] = result
    return result


_REFUSALS = {errno.EAGAIN, errno.EMFILE, errno.ENFILE, errno.ENOMEM}


def candidates(explicit: Sequence[str] = (), include_running: bool = True, include_path: bool = True,
               path_env: str | None = None) -> list[tuple[str, str]]:
    """(path, origin) in preference order: --python, the running one, PATH (python3, python3.X)."""
    out: list[tuple[str, str]] = []
    seen: set[str] = set()

    def add(path: str, origin: str) -> None:
        absolute = os.path.abspath(path)
        if absolute not in seen and os.path.isfile(absolute) and os.access(absolute, os.X_OK):
            seen.add(absolute)
            out.append((absolute, origin))

    for path in explicit:
        add(path, "--python")
    if include_running and sys.executable:
        add(sys.executable, "running")
    if include_path:
        for directory in (path_env if path_env is not None else os.environ.get("PATH", "")).split(os.pathsep):
            try:
                names = sorted(os.listdir(directory or "."))
            except OSError:
                continue
            for name in names:
                if _NAME_RE.fullmatch(name):
                    add(os.path.join(directory or ".", name), "PATH")
    return out


class InterpreterRegistry:
    """The interpreters this agent can run jobs with; probes each candidate once, in parallel.

    `start_probing()` probes in the background (the agent listens meanwhile); `available()`
    waits for the probes. Results are kept in `cache_file` (the state directory's
    interpreters.json) by path, size, mtime and inode: a restart probes only what changed.
    With `user` the probes run as that user (--job-user): an interpreter the job user cannot run
    is not offered. A probe the OS refused to start (no process or file left) is tried again at
    the next `available()` after RETRY_SECONDS; `failure` says why in one line.

    `choose()` takes the newest version satisfying all requirements (AGT-RUN-5) and, among
    interpreters of that version, the first in preference order: deterministic.
    """

    RETRY_SECONDS = 1.0

    def __init__(self, explicit: Sequence[str] = (), include_running: bool = True,
                 include_path: bool = True, probe_timeout: float = 10.0, path_env: str | None = None,
                 user: JobUser | None = None, cache_file: os.PathLike | str | None = None,
                 log=lambda kind, **fields: None):
        self._candidates = candidates(explicit, include_running, include_path, path_env)
        self.probe_timeout = probe_timeout
        self.user = user
        self.cache_file = cache_file
        self.log = log
        self._interpreters: list[Interpreter] | None = None
        self._lock = threading.Lock()
        self._prober: threading.Thread | None = None
        self._refused_at = 0.0
        self.rejected: list[str] = []
        self.failure: str | None = None  # one line: why some probes could not run
        self._load_cache()

    def start_probing(self) -> None:
        """Probe in a background thread (or here, when no thread can be started)."""
        try:
            self._prober = threading.Thread(target=self.available, name="agent-probe", daemon=True)
            self._prober.start()
        except RuntimeError:
            self._prober = None
            self.available()

    def known(self) -> list[Interpreter]:
        """What is known now, without waiting for probes."""
        return list(self._interpreters or [])

    def available(self) -> list[Interpreter]:
        with self._lock:
            if self._interpreters is None or (
                    self.failure and time.monotonic() - self._refused_at > self.RETRY_SECONDS):
                self._interpreters = self._probe_all()
            return list(self._interpreters)

    def _probe_one(self, candidate: tuple[str, str]):
        try:
            return probe(candidate[0], self.probe_timeout, self.user)
        except ProbeRefused as exc:
            return exc

    def _probe_all(self) -> list[Interpreter]:
        if not self._candidates:
            return []
        try:
            with ThreadPoolExecutor(max_workers=min(8, len(self._candidates))) as pool:
                results = list(pool.map(self._probe_one, self._candidates))
        except RuntimeError:  # no thread could be started (a process limit): one at a time, here
            results = [self._probe_one(c) for c in self._candidates]
        found, self.rejected, refused = [], [], []
        for (path, origin), result in zip(self._candidates, results):
            if isinstance(result, ProbeRefused):
                refused.append(str(result))
            elif result is None:
                self.rejected.append(path)
            else:
                found.append(Interpreter(path, result[0], result[1], origin))
        self.failure = None
        if refused:
            self._refused_at = time.monotonic()
            self.failure = (f"{len(refused)} interpreter probe(s) could not be started ({refused[0]}); "
                            f"tried again in {self.RETRY_SECONDS:g} s")
            self.log("interpreters", event="probe refused", error=self.failure)
        self._save_cache()
        return found

    def _load_cache(self) -> None:
        """Fill the probe cache from cache_file; an unreadable file is ignored (probed again)."""
        if self.cache_file is None:
            return
        try:
            entries = json.loads(open(self.cache_file, encoding="utf-8").read())
            loaded = {tuple(e["key"]): (None if e["result"] is None else (str(e["result"][0]), bool(e["result"][1])))
                      for e in entries}
        except (OSError, ValueError, TypeError, KeyError, IndexError):
            return
        with _probe_lock:
            for key, result in loaded.items():
                _probe_cache.setdefault(key, result)

    def _save_cache(self) -> None:
        if self.cache_file is None:
            return
        uid = None if self.user is None else self.user.uid
        keys = [k for k in (_probe_key(path, uid) for path, _ in self._candidates) if k is not None]
        with _probe_lock:
            entries = [{"key": list(k), "result": _probe_cache[k]} for k in keys if k in _probe_cache]
        tmp = f"{self.cache_file}.tmp"
        try:
            with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8") as f:
                f.write(json.dumps(entries))
            os.replace(tmp, self.cache_file)
        except OSError:
            pass  # only a cache: the next start probes again

    def versions(self) -> list[str]:
        """Distinct versions, newest first (for messages)."""
        return sorted({i.version for i in self.available()}, key=Version, reverse=True)

    def choose(self, requirements: Iterable[PythonRequirement]) -> Interpreter | None:
        interpreters = [i for i in self.available() if not i.prerelease]
        best = choose_interpreter(list(requirements), [i.version for i in interpreters])
        if best is None:
            return None
        return next(i for i in interpreters if i.version == best)
