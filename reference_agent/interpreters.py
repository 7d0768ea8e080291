"""Python interpreters on the host: discovery, one cached version probe each, deterministic choice."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterable, Sequence

from packaging.version import Version

from protos.validation import PythonRequirement, choose_interpreter
from reference_agent.processes import SAFE_PATH

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


def probe(path: str, timeout: float = 10.0) -> tuple[str, bool] | None:
    """Run the interpreter once with PROBE_CODE (cached by path, size and mtime)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns, st.st_ino)
    with _probe_lock:
        if key in _probe_cache:
            return _probe_cache[key]
    try:
        done = subprocess.run([path, "-c", PROBE_CODE], stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=timeout, text=True, errors="replace",
                              env={"PATH": SAFE_PATH, "LANG": "C.UTF-8"})  # as jobs run
        result = parse_probe(done.stdout) if done.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        result = None
    with _probe_lock:
        _probe_cache[key] = result
    return result


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

    `choose()` takes the newest version satisfying all requirements (AGT-RUN-5) and, among
    interpreters of that version, the first in preference order: deterministic.
    """

    def __init__(self, explicit: Sequence[str] = (), include_running: bool = True,
                 include_path: bool = True, probe_timeout: float = 10.0, path_env: str | None = None):
        self._candidates = candidates(explicit, include_running, include_path, path_env)
        self.probe_timeout = probe_timeout
        self._interpreters: list[Interpreter] | None = None
        self._lock = threading.Lock()
        self.rejected: list[str] = []

    def available(self) -> list[Interpreter]:
        with self._lock:
            if self._interpreters is None:
                self._interpreters = self._probe_all()
            return list(self._interpreters)

    def _probe_all(self) -> list[Interpreter]:
        if not self._candidates:
            return []
        with ThreadPoolExecutor(max_workers=min(8, len(self._candidates))) as pool:
            results = list(pool.map(lambda c: probe(c[0], self.probe_timeout), self._candidates))
        found = []
        for (path, origin), result in zip(self._candidates, results):
            if result is None:
                self.rejected.append(path)
            else:
                found.append(Interpreter(path, result[0], result[1], origin))
        return found

    def versions(self) -> list[str]:
        """Distinct versions, newest first (for messages)."""
        return sorted({i.version for i in self.available()}, key=Version, reverse=True)

    def choose(self, requirements: Iterable[PythonRequirement]) -> Interpreter | None:
        interpreters = [i for i in self.available() if not i.prerelease]
        best = choose_interpreter(list(requirements), [i.version for i in interpreters])
        if best is None:
            return None
        return next(i for i in interpreters if i.version == best)
