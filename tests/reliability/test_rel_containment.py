"""reference_agent.containment on real processes: counting a session, killing it, waiting with limits."""
from __future__ import annotations

import os
import subprocess
import sys
import time

from reference_agent.containment import kill_session, session_members, wait_contained

# A session leader that starts 3 sleepers, each in a process group of its own, then sleeps.
SPAWNER = ("import subprocess, sys, time\n"
           "for _ in range(3):\n"
           "    subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], process_group=0)\n"
           "print('ready', flush=True)\n"
           "time.sleep(60)\n")


def _session():
    proc = subprocess.Popen([sys.executable, "-c", SPAWNER], start_new_session=True, stdout=subprocess.PIPE)
    assert proc.stdout.readline() == b"ready\n"
    return proc


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def test_session_members_and_kill_session():
    proc = _session()
    try:
        members = session_members(proc.pid)
        assert proc.pid in members and len(members) == 4
        assert os.getpid() not in members
        children = [p for p in members if p != proc.pid]
        assert {os.getpgid(p) for p in children} == set(children)  # other process groups
        assert kill_session(proc.pid) == 0
        proc.wait(10)
        deadline = time.monotonic() + 5
        while any(_alive(p) for p in children) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not any(_alive(p) for p in children)
    finally:
        kill_session(proc.pid)
        proc.stdout.close()


def test_wait_contained_outcomes():
    proc = _session()
    try:
        pidfd = os.pidfd_open(proc.pid)
        assert wait_contained(pidfd, proc.pid, 0.3, None) == "timeout"
        assert wait_contained(pidfd, proc.pid, 1.0, 10) == "timeout"
        began = time.monotonic()
        assert wait_contained(pidfd, proc.pid, 30.0, 3) == "processes"
        assert time.monotonic() - began < 5
        kill_session(proc.pid)
        assert wait_contained(pidfd, proc.pid, 30.0, 3) == "ended"
        os.close(pidfd)
    finally:
        kill_session(proc.pid)
        proc.wait(10)
        proc.stdout.close()


def test_session_members_of_an_unknown_session_is_empty():
    assert session_members(2 ** 22 + 12345) == []
    assert kill_session(2 ** 22 + 12345) == 0
