"""Hostile jobs: fork bombs, unbounded allocation, spinning, stragglers, tampering with the
agent's files. The agent's limits stop them, it reports them DONE, leaves no process behind,
and keeps serving other jobs. Every bomb here is bounded by itself too, so that a broken agent
fails the test without endangering the machine."""
from __future__ import annotations

import os
import time

import pytest

from protos.states import JobState
from reliability_helpers import none_left, processes_of

# A binary tree of processes 9 levels deep: at most 2**10 - 1 = 1023 processes, every one
# sleeping; children leave their parent's process group (setpgid) but stay in the session.
FORK_TREE = """
    import os, time
    def grow(depth):
        for _ in range(2):
            try:
                child = os.fork()
            except OSError:
                return
            if child == 0:
                os.setpgid(0, 0)
                if depth:
                    grow(depth - 1)
                time.sleep(120)
                os._exit(0)
    grow(8)
    time.sleep(120)
"""

HARMLESS = "print(sum(range(1000)))\n"


def _ordinary_jobs(agent, n=3):
    return [agent.submit(HARMLESS) for _ in range(n)]


def _assert_served(agent, jobs):
    for job in jobs:
        assert agent.wait_done(job).final is JobState.DONE
        assert agent.row(job).reason == "succeeded", agent.row(job)
        assert agent.output(job).strip() == "499500"


def test_fork_bomb_is_stopped_by_the_process_limit_even_as_root(start_agent):
    agent = start_agent(limit_processes=16, job_timeout=60, slots=3)
    bomb = agent.submit(FORK_TREE)
    others = _ordinary_jobs(agent)
    began = time.monotonic()
    assert agent.wait_done(bomb, deadline=30).final is JobState.DONE
    assert time.monotonic() - began < 20, "the bomb ran until the wall-clock limit, not the process limit"
    row = agent.row(bomb)
    assert row.reason == "killed" and "processes" in (row.note or ""), row
    assert none_left(agent.workdir(bomb)) == [], "processes of the fork bomb survived its end"
    _assert_served(agent, others)


def test_children_in_other_process_groups_are_killed_when_the_job_ends(start_agent, tmp_path):
    agent = start_agent()
    job = agent.submit("""
        import os, subprocess, sys
        for _ in range(3):
            subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"],
                             process_group=0)  # a new process group in the same session
        if os.fork() == 0:
            if os.fork() == 0:   # a grandchild orphaned at once (a "daemon" without setsid)
                os.setpgid(0, 0)
                import time; time.sleep(120)
            os._exit(0)
        print("leaving")
    """)
    assert agent.wait_done(job).final is JobState.DONE
    assert agent.row(job).reason == "succeeded"
    assert none_left(agent.workdir(job)) == [], "a child of a DONE job is still alive"


def test_unbounded_allocation_hits_the_address_space_limit(start_agent):
    agent = start_agent(limit_address_space=512 * 1024 ** 2, job_timeout=60)
    job = agent.submit("""
        hoard = []
        while len(hoard) < 10_000:          # 100 GB at most: bounded, far above the limit
            hoard.append(bytearray(10 * 1024 ** 2))
    """)
    others = _ordinary_jobs(agent, 2)
    assert agent.wait_done(job, deadline=40).final is JobState.DONE
    row = agent.row(job)
    assert row.reason == "failed" and "MemoryError" in open(row.stderr).read(), row
    assert none_left(agent.workdir(job)) == []
    _assert_served(agent, others)


def test_spinning_job_is_killed_at_the_wall_clock_limit(start_agent):
    agent = start_agent(job_timeout=1.0, kill_grace=0.2)
    job = agent.submit("""
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)   # ignores the polite request
        end = time.time() + 120
        while time.time() < end:
            pass
    """)
    began = time.monotonic()
    assert agent.wait_done(job, deadline=30).final is JobState.DONE
    assert time.monotonic() - began < 15
    row = agent.row(job)
    assert row.reason == "killed" and "timeout" in (row.note or "")
    assert none_left(agent.workdir(job)) == []
    _assert_served(agent, _ordinary_jobs(agent, 1))


@pytest.mark.parametrize("replacement", ["fifo", "dev_zero", "directory"])
def test_tampered_exit_status_file_does_not_hang_or_flood_the_agent(start_agent, replacement):
    """The launcher writes the exit status next to the job's directory, where the job can put
    a FIFO or a symlink to /dev/zero first; the agent must still report DONE and stay small."""
    agent = start_agent(job_timeout=2.0, kill_grace=0.2)
    make = {"fifo": "os.mkfifo(path)", "dev_zero": "os.symlink('/dev/zero', path)",
            "directory": "os.mkdir(path)"}[replacement]
    job = agent.submit(f"""
        import os
        path = os.path.join(os.path.dirname(os.getcwd()), "exit_status")
        {make}
    """)
    assert agent.wait_done(job, deadline=30).final is JobState.DONE
    assert agent.row(job).reason in ("failed", "killed", "succeeded")
    _assert_served(agent, _ordinary_jobs(agent, 2))


def test_job_that_deletes_its_own_directory_still_ends_done(start_agent):
    """A job removes everything the agent keeps about it on disk (work dir, stdout, exit-status
    path); the agent still reports it DONE and keeps serving."""
    agent = start_agent()
    job = agent.submit("""
        import os, shutil
        top = os.path.dirname(os.getcwd())
        os.chdir("/")
        shutil.rmtree(top)
    """)
    assert agent.wait_done(job).final is JobState.DONE
    assert agent.row(job).reason in ("succeeded", "failed")
    _assert_served(agent, _ordinary_jobs(agent, 2))


def test_job_that_overwrites_its_input_does_not_change_another_jobs_bytes(start_agent):
    """Inputs are hard links to the content cache; the cache is read-only, which root ignores.
    A later job staging the same file must still get the source's bytes (AGT-STAGE-3)."""
    agent = start_agent()
    data = agent.put("print('original')\n")
    vandal = agent.submit(f"""
        with open({data!r}, "r+b") as f:
            f.write(b"print('TAMPERED')  ")
    """, extra=[data])
    job = "00000000-0000-0000-0000-00000000abcd"
    assert agent.wait_done(vandal).final is JobState.DONE and agent.row(vandal).reason == "succeeded"
    assert agent.client.stage_in(job, [data]) == [data]
    agent.client.run(job, [data])
    assert agent.wait_done(job).final is JobState.DONE
    assert agent.output(job) == "original\n"
    assert (agent.workdir(job) / data).read_bytes() == b"print('original')\n"


def _printed(agent, job, text) -> bool:
    try:
        return text in agent.output(job)
    except (OSError, AttributeError):  # not started yet: no row or no stdout file
        return False


def test_helpers_see_the_processes_of_a_live_job(start_agent):
    """The process listing used above really finds a job's processes (so `none_left` can fail)."""
    agent = start_agent(job_timeout=30)
    job = agent.submit("import subprocess, sys, time\n"
                       "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'])\n"
                       "print('up', flush=True)\ntime.sleep(30)\n")
    end = time.monotonic() + 20
    while time.monotonic() < end and not _printed(agent, job, "up"):
        time.sleep(0.05)
    assert len(processes_of(agent.workdir(job))) >= 3  # launcher, job, its child
    os.killpg(agent.row(job).pid, 9)
    assert agent.wait_done(job).final is JobState.DONE
