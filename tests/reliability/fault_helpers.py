"""Faults at the OS boundary for the agent-fault tests: a pids cgroup around an agent process, a
read-only bind mount, an agent process started inside a cgroup, polling with a deadline."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Callable

import pytest

from protos.launcher import AgentProcess, reference_agent_argv

PIDS_V1 = Path("/sys/fs/cgroup/pids")


def wait_for(predicate: Callable[[], object], within: float = 20.0, every: float = 0.05, what: str = "condition"):
    """Poll predicate until it returns a true value (returned) or `within` seconds pass (fail)."""
    end = time.monotonic() + within
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            pytest.fail(f"{what} not reached within {within} s")
        time.sleep(every)


def pids_root() -> Path:
    """Where a pids cgroup can be made here (v1 pids hierarchy, or v2 with the pids controller),
    or skip with the reason."""
    if os.geteuid() != 0:
        pytest.skip("cgroups: the test makes a pids cgroup, which needs root")
    if (PIDS_V1 / "cgroup.procs").exists() and os.access(PIDS_V1, os.W_OK):
        return PIDS_V1
    v2 = Path("/sys/fs/cgroup")
    if "pids" in (v2 / "cgroup.subtree_control").read_text() if (v2 / "cgroup.subtree_control").exists() else False:
        return v2
    pytest.skip("cgroups: no writable pids controller (neither v1 /sys/fs/cgroup/pids nor v2 with pids)")


@contextlib.contextmanager
def pids_cgroup(limit: int):
    """A fresh pids cgroup with pids.max = limit; at the end every process left in it (or below)
    is killed and the directories removed."""
    directory = pids_root() / f"test-faults-{uuid.uuid4().hex[:10]}"
    directory.mkdir()
    try:
        (directory / "pids.max").write_text(str(limit))
        yield directory
    finally:
        _remove_tree(directory)


def _remove_tree(directory: Path) -> None:
    for _ in range(200):
        children = sorted((p for p in directory.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True)
        for cgroup in [*children, directory]:
            for pid in (cgroup / "cgroup.procs").read_text().split() if (cgroup / "cgroup.procs").exists() else []:
                with contextlib.suppress(OSError):
                    os.kill(int(pid), 9)
        for cgroup in [*children, directory]:
            with contextlib.suppress(OSError):
                cgroup.rmdir()
        if not directory.exists():
            return
        time.sleep(0.05)


def agent_in_cgroup(tmp: Path, cgroup: Path | None, *extra: str, slots: int = 2, n: int = 0) -> AgentProcess:
    """A `reference-agent serve` process (not started) that moves itself into `cgroup` before it
    runs Python, with its source and state under tmp."""
    source, state = tmp / f"source{n}", tmp / f"state{n}"
    source.mkdir(parents=True, exist_ok=True)

    def command(listen: str) -> list[str]:
        argv = reference_agent_argv(listen, source=source, state_dir=state, slots=slots,
                                    extra=["--no-path-pythons", "--python", sys.executable, *extra])
        if cgroup is None:
            return argv
        return ["/bin/sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', str(cgroup), *argv]

    return AgentProcess(command, log_path=tmp / f"agent{n}.log", cwd=os.getcwd())


@contextlib.contextmanager
def read_only(directory: Path):
    """directory made read-only by a read-only bind mount of itself (root only), undone after."""
    if os.geteuid() != 0:
        pytest.skip("EROFS: a read-only bind mount needs root")
    done = subprocess.run(["mount", "--bind", str(directory), str(directory)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"EROFS: bind mounts refused here ({done.stderr.strip()})")
    try:
        ro = subprocess.run(["mount", "-o", "remount,bind,ro", str(directory)], capture_output=True, text=True)
        if ro.returncode != 0:
            pytest.skip(f"EROFS: read-only remount refused here ({ro.stderr.strip()})")
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], capture_output=True)


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))
