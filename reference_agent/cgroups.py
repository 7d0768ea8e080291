"""Per-job cgroups: every process of a job, setsid or not, is in the job's cgroup until killed.

The agent makes `reference-agent-<hash of its state directory>` under its own cgroup, in the
cgroup v2 hierarchy (membership, `cgroup.kill`) and in the v1 `pids` and `memory` hierarchies
where they are mounted and writable (limits; v1 also gives membership and kill by listing). A
job's cgroup is that directory plus the job's UUID, so an agent restarted after SIGKILL finds
the cgroups of the jobs it adopts, and of the jobs that ended while it was down, by their ids.
"""
from __future__ import annotations

import errno
import hashlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

PREFIX = "reference-agent-"
SIBLING_GRACE = 60.0  # seconds: an empty sibling cgroup younger than this is left alone


@dataclass(frozen=True)
class Hierarchy:
    """One mounted cgroup hierarchy: "v2", or the v1 controller ("pids", "memory")."""

    kind: str
    parent: Path  # the agent's directory for job cgroups in this hierarchy

    def job_dir(self, job: str) -> Path:
        return self.parent / job


def _mounts(mountinfo: str) -> dict[str, Path]:
    """{"v2": mount point, "pids": ..., "memory": ...} from /proc/self/mountinfo, root "/" only."""
    found: dict[str, Path] = {}
    for line in mountinfo.splitlines():
        left, _, right = line.partition(" - ")
        fields, after = left.split(), right.split()
        if len(fields) < 5 or len(after) < 3 or fields[3] != "/":
            continue  # a bind of a sub-tree (a container's view): paths below would not match
        fstype, options = after[0], after[2].split(",")
        if fstype == "cgroup2":
            found.setdefault("v2", Path(fields[4]))
        elif fstype == "cgroup":
            for controller in ("pids", "memory"):
                if controller in options:
                    found.setdefault(controller, Path(fields[4]))
    return found


def _own_paths(proc_cgroup: str) -> dict[str, str]:
    """This process's cgroup path per hierarchy, from /proc/self/cgroup."""
    own: dict[str, str] = {}
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":
            own["v2"] = path
        for controller in controllers.split(","):
            if controller in ("pids", "memory"):
                own[controller] = path
    return own


def _write(path: Path, value: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _pids(directory: Path) -> list[int]:
    try:
        return [int(p) for p in (directory / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


def _remove_empty_siblings(parent: Path) -> None:
    """Remove the empty cgroups that agents killed with SIGKILL left beside ours (an empty
    cgroup is removed only when no process is in it; rmdir refuses anything else). Another
    running agent just recreates its directory when it next makes a job's cgroup."""
    try:
        siblings = [p for p in parent.parent.glob(PREFIX + "*") if p != parent and p.is_dir()]
    except OSError:
        return
    now = time.time()
    for sibling in siblings:
        for directory in [*sibling.glob("*-*-*-*-*"), sibling]:
            try:
                if now - directory.stat().st_mtime < SIBLING_GRACE:
                    continue  # just made by an agent that is starting or starting a job
                directory.rmdir()
            except OSError:
                pass


# Tasks (processes and threads) of the agent's own cgroup that jobs can never take: the agent's
# RPC and executor threads, one reaper per running job, grpc's own threads, the scheduler, the
# log writer, probes, the job launchers before they enter their cgroups. On top of what the agent
# holds when it starts.
AGENT_RESERVE = 128
# Fewer tasks than this for all jobs together and the agent refuses to start.
MIN_JOBS_TASKS = 16


def _read_int(path: Path) -> int | None:
    """An integer cgroup file ("max" and missing files read as None)."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    try:
        return int(text)
    except ValueError:
        return None


def headroom(own: Path, root: Path) -> tuple[int, Path] | None:
    """The fewest tasks any limited cgroup from `own` up to (not including) `root` can still take,
    and that cgroup; None when none of them has a pids limit."""
    tightest: tuple[int, Path] | None = None
    directory = own
    while directory != root and root in directory.parents:
        limit, current = _read_int(directory / "pids.max"), _read_int(directory / "pids.current")
        if limit is not None and current is not None and (tightest is None or limit - current < tightest[0]):
            tightest = (limit - current, directory)
        directory = directory.parent
    return tightest


class BudgetError(OSError):
    """The agent's own cgroup leaves too few tasks for jobs once the agent's reserve is kept."""


def pids_cap(max_processes: int) -> int:
    """pids.max for a job limited to max_processes (pids counts threads as well)."""
    return 2 * max_processes + 2


class Cgroups:
    """The job cgroups of one agent. `find(state_dir)` returns None where cgroups are refused
    (not mounted, read-only, not permitted); the agent then falls back to session counting."""

    def __init__(self, hierarchies: list[Hierarchy]):
        self.hierarchies = hierarchies
        self.v2 = next((h for h in hierarchies if h.kind == "v2"), None)
        self.v1 = [h for h in hierarchies if h.kind != "v2"]

    @classmethod
    def find(cls, state_dir: Path, proc: Path = Path("/proc/self")) -> "Cgroups | None":
        try:
            mounts = _mounts((proc / "mountinfo").read_text())
            own = _own_paths((proc / "cgroup").read_text())
        except OSError:
            return None
        name = PREFIX + hashlib.sha256(str(state_dir).encode()).hexdigest()[:12]
        usable = []
        for kind, mount in mounts.items():
            if kind not in own:
                continue
            parent = mount / own[kind].lstrip("/") / name
            _remove_empty_siblings(parent)
            try:
                parent.mkdir(mode=0o755, exist_ok=True)
            except OSError:
                continue
            if kind == "v2" and not (parent / "cgroup.kill").exists():
                try:  # before Linux 5.14: no one-write kill; the v1 hierarchies may still do
                    parent.rmdir()
                except OSError:
                    pass
                continue
            usable.append(Hierarchy(kind, parent))
        if not usable:
            return None
        return cls(usable)

    def limit_jobs(self, reserve: int = AGENT_RESERVE) -> tuple[int, Path] | None:
        """Keep jobs off the agent's own process budget: when the agent's cgroup (or one above
        it) has a pids limit, the agent's directory for job cgroups (a child of the agent's
        cgroup, so every job is in one subtree) gets pids.max = what is left of that budget
        minus `reserve`, which the agent always keeps. Returns (the jobs' budget, the limiting
        cgroup), None without a limit; BudgetError when fewer than MIN_JOBS_TASKS are left."""
        for h in self.hierarchies:
            if not (h.parent / "pids.max").exists():
                self._enable_pids(h)
            if not (h.parent / "pids.max").exists():
                continue
            found = headroom(h.parent.parent, self._root_of(h))
            if found is None:
                return None
            left, where = found
            jobs_now = _read_int(h.parent / "pids.current") or 0
            budget = left + jobs_now - reserve
            if budget < MIN_JOBS_TASKS:
                raise BudgetError(
                    f"cgroup {where} allows {left + jobs_now} more tasks (pids.max minus pids.current); "
                    f"the agent keeps {reserve} for itself, which leaves {max(budget, 0)} for jobs (at least "
                    f"{MIN_JOBS_TASKS} needed): raise the service's TasksMax (pids.max) or start fewer processes "
                    f"beside the agent")
            _write(h.parent / "pids.max", str(budget))
            return budget, where
        return None

    @staticmethod
    def _root_of(h: Hierarchy) -> Path:
        directory = h.parent
        while directory.parent != directory and (directory.parent / "cgroup.procs").exists():
            directory = directory.parent
        return directory

    @staticmethod
    def _enable_pids(h: Hierarchy) -> None:
        """cgroup v2: the pids controller must be enabled from the agent's cgroup down."""
        if h.kind != "v2":
            return
        for directory in (h.parent.parent, h.parent):
            try:
                _write(directory / "cgroup.subtree_control", "+pids")
            except OSError:
                return

    def describe(self) -> str:
        parts = []
        if self.v2 is not None:
            parts.append("v2 with cgroup.kill")
        parts += [f"v1 {h.kind}" for h in self.v1]
        where = self.hierarchies[0].parent
        return f"per-job cgroups ({', '.join(parts)}) under {where}"

    # --- one job --------------------------------------------------------------------------
    def create(self, job: str, max_processes: int | None, max_memory: int | None) -> None:
        """Make the job's cgroups and set its limits; OSError when one cannot be made."""
        for h in self.hierarchies:
            directory = h.job_dir(job)
            directory.mkdir(mode=0o755, parents=True, exist_ok=True)  # parents: see _remove_empty_siblings
            if max_processes is not None and (directory / "pids.max").exists():
                # Room above the limit: the agent sees the job go over it and kills it (DONE,
                # killed: processes) before its forks fail; the kernel caps a fast bomb meanwhile.
                _write(directory / "pids.max", str(pids_cap(max_processes)))
            if max_memory is not None:
                for name in ("memory.max", "memory.limit_in_bytes"):
                    if (directory / name).exists():
                        _write(directory / name, str(max_memory))

    def enter(self, job: str, pid: int) -> None:
        """Move pid (the paused launcher, before it runs anything) into the job's cgroups."""
        for h in self.hierarchies:
            _write(h.job_dir(job) / "cgroup.procs", str(pid))

    def count(self, job: str) -> int:
        """Processes in the job's cgroup (zombies included until reaped)."""
        return max((len(_pids(h.job_dir(job))) for h in self.hierarchies), default=0)

    def kill(self, job: str, rounds: int = 200) -> int:
        """SIGKILL every process of the job's cgroup (one write in v2; by listing in v1, where
        pids.max bounds what a fork loop can add between rounds). Returns how many are left."""
        if self.v2 is not None:
            try:
                _write(self.v2.job_dir(job) / "cgroup.kill", "1")
            except OSError:
                pass
        left: list[int] = []
        for attempt in range(rounds):
            left = [pid for h in self.hierarchies for pid in _pids(h.job_dir(job))]
            if not left:
                return 0
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(min(0.001 * 2 ** attempt, 0.05))
        return len(left)

    def remove(self, job: str) -> None:
        """Remove the job's (empty) cgroups; killed processes may take a moment to leave."""
        for h in self.hierarchies:
            directory = h.job_dir(job)
            for _ in range(100):
                try:
                    directory.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    if exc.errno != errno.EBUSY:
                        break
                    time.sleep(0.01)

    def jobs(self) -> set[str]:
        """Job ids that have a cgroup (for the sweep at start)."""
        out: set[str] = set()
        for h in self.hierarchies:
            try:
                out.update(entry.name for entry in h.parent.iterdir() if entry.is_dir())
            except OSError:
                pass
        return out

    def close(self) -> None:
        """Remove the agent's own directories if no job cgroup is left in them."""
        for h in self.hierarchies:
            try:
                h.parent.rmdir()
            except OSError:
                pass
