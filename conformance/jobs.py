"""Test jobs: small generated Python scripts that leave witness files, and the reading of witnesses."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

# The job script. It runs under any Python 3 the agent picks, so it uses nothing newer than 3.0
# idioms and only the standard library. Each witness line is one os.write() on an O_APPEND
# descriptor: whole lines even when several executions of one job write at once.
_TEMPLATE = r'''# agent-conformance test job {job}
import hashlib, json, os, sys, time
W = {witness!r}
JOB = {job!r}
MARK = {mark!r}
GATE_TIMEOUT = {gate_timeout!r}
SLEEP = {sleep!r}
START_LOG = {start_log!r}
TAMPER = {tamper!r}

def put(name, record):
    if W is None:
        return
    fd = os.open(os.path.join(W, name), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (json.dumps(record, sort_keys=True) + "\n").encode("utf-8"))
    finally:
        os.close(fd)

def digest(name):
    try:
        if not os.path.isfile(name) or os.path.getsize(name) > 1 << 26:
            return None
        h = hashlib.sha256()
        with open(name, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest()
    except OSError:
        return None

listing = sorted(os.listdir("."))
info = sys.version_info
put(JOB + ".runs", {{
    "mark": MARK, "pid": os.getpid(), "start": time.time(), "argv": sys.argv, "name": __name__,
    "executable": sys.executable,
    "version": "%d.%d.%d" % (info[0], info[1], info[2]), "releaselevel": info[3],
    "cwd": os.getcwd(), "listing": listing,
    "links": [n for n in listing if os.path.islink(n)],
    "hashes": dict((n, digest(n)) for n in listing),
}})
if START_LOG:
    put(START_LOG, {{"job": JOB, "time": time.time()}})
for name in TAMPER:  # a job may write into its own inputs; another job's copy must not change
    try:
        with open(name, "ab") as f:
            f.write(b"written by job " + JOB.encode())
    except (IOError, OSError):
        pass
if GATE_TIMEOUT and W is not None:
    gate = os.path.join(W, JOB + ".gate")
    deadline = time.time() + GATE_TIMEOUT
    while not os.path.exists(gate) and time.time() < deadline:
        time.sleep(0.01)
elif SLEEP:
    time.sleep(SLEEP)
put(JOB + ".end", {{"pid": os.getpid(), "end": time.time(), "listing": sorted(os.listdir("."))}})
'''


def script(job: str, witness: str | None, *, mark: str = "entry", gate_timeout: float = 0.0,
           sleep: float = 0.0, start_log: str | None = None, tamper: tuple[str, ...] = ()) -> bytes:
    """The bytes of a job script for `job` (lower case) that witnesses into `witness` (or not) and,
    after its start witness, appends to the files named in `tamper` (its own inputs)."""
    return _TEMPLATE.format(job=job, witness=witness, mark=mark, gate_timeout=float(gate_timeout),
                            sleep=float(sleep), start_log=start_log, tamper=list(tamper)).encode("utf-8")


@dataclass
class Run:
    """One execution of a job script, as its witness line says."""

    mark: str
    pid: int
    start: float
    argv: list
    name: str
    version: str
    releaselevel: str
    cwd: str
    listing: list
    links: list
    hashes: dict
    executable: str = ""   # the interpreter's path as the job sees it (sys.executable)


class Witness:
    """Reads the witness files that job scripts write into a shared directory."""

    def __init__(self, directory: str | os.PathLike):
        self.dir = Path(directory)
        self.created: list[Path] = []

    def _lines(self, name: str) -> list[dict]:
        path = self.dir / name
        try:
            text = path.read_text("utf-8")
        except FileNotFoundError:
            return []
        out = []
        for line in text.splitlines():
            if line.strip():
                try:
                    out.append(json.loads(line))
                except ValueError:
                    out.append({"corrupt": line})
        return out

    def runs(self, job: str) -> list[Run]:
        """Every execution of `job` so far (the run counter is the length)."""
        fields = Run.__dataclass_fields__
        return [Run(**{k: v for k, v in rec.items() if k in fields}) for rec in self._lines(job + ".runs")
                if "corrupt" not in rec]

    def ends(self, job: str) -> int:
        return len(self._lines(job + ".end"))

    def end_listing(self, job: str) -> list[str]:
        """The job directory's listing when the script ended (empty when it has not ended)."""
        ends = self._lines(job + ".end")
        return ends[-1].get("listing", []) if ends else []

    def started(self, job: str) -> bool:
        return (self.dir / (job + ".runs")).exists()

    def ended(self, job: str) -> bool:
        return (self.dir / (job + ".end")).exists()

    def open_gate(self, job: str) -> None:
        path = self.dir / (job + ".gate")
        path.touch()
        self.created.append(path)

    def start_order(self, log: str) -> list[str]:
        return [rec.get("job", "?") for rec in self._lines(log)]

    def cleanup(self, jobs, logs=()) -> None:
        for job in jobs:
            for suffix in (".runs", ".end", ".gate"):
                (self.dir / (job + suffix)).unlink(missing_ok=True)
        for log in logs:
            (self.dir / log).unlink(missing_ok=True)
