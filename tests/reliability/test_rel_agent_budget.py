"""Issue 18.3: jobs within their own limits cannot use the agent's process budget.

The agent runs in a pids cgroup (what systemd's TasksMax makes); its jobs' cgroups are one
subtree of it whose pids.max is what the agent's budget leaves minus a reserve the agent keeps.
Three jobs that each start threads until refused (each within --limit-processes: one process)
take what the jobs' subtree allows, and the agent still serves: new RPC threads, a new job."""
from __future__ import annotations

import concurrent.futures
import os
import textwrap
import time

import pytest

from protos.client import AgentClient
from protos.states import JobState
from reliability_helpers import new_id
from fault_helpers import agent_in_cgroup, pids_cgroup, wait_for
from reference_agent.cgroups import AGENT_RESERVE

pytestmark = pytest.mark.timeout(120)

HOG = """
import os, sys, threading, time
release = {release!r}
stop = threading.Event()
n = 0
while n < 400:
    try:
        threading.Thread(target=stop.wait, daemon=True).start()
    except RuntimeError:
        break
    n += 1
print(n, flush=True)
end = time.monotonic() + 60
while not os.path.exists(release) and time.monotonic() < end:
    time.sleep(0.05)
stop.set()
"""


def _put(source, code: str) -> str:
    file = new_id()
    (source / file).write_text(textwrap.dedent(code))
    return file


def test_jobs_hogging_tasks_leave_the_agent_its_reserve(tmp_path):
    limit = 420
    with pids_cgroup(limit) as cgroup:
        agent = agent_in_cgroup(tmp_path, cgroup, "--limit-processes", "100", slots=3)
        address = agent.start()
        try:
            source, state = tmp_path / "source0", tmp_path / "state0"
            release = tmp_path / "release"
            jobs_dir = next(cgroup.glob("reference-agent-*"))
            budget = int((jobs_dir / "pids.max").read_text())
            assert budget <= limit - AGENT_RESERVE, budget  # the reserve is kept off the jobs' subtree
            with AgentClient.connect(address, timeout=10) as client:
                hogs = []
                for _ in range(3):
                    job, entry = new_id(), _put(source, HOG.format(release=str(release)))
                    client.stage(job, [entry])
                    client.submit(job, [entry])
                    hogs.append(job)

                def printed(job):
                    out = state / "jobs" / job / "stdout"
                    return out.exists() and out.read_text().strip()

                # every hog either printed how many threads it got, or ended (could not even fork)
                wait_for(lambda: all(printed(j) or client.status(j) == JobState.DONE for j in hogs),
                         within=60, what="the hogs took their tasks")
                tasks_of_jobs = int((jobs_dir / "pids.current").read_text())
                assert tasks_of_jobs <= budget
                # the agent still has tasks of its own: 40 concurrent calls (new RPC threads)...
                with concurrent.futures.ThreadPoolExecutor(40) as pool:
                    states = list(pool.map(lambda j: client.status(j), hogs * 14))
                assert set(states) <= {JobState.RUN, JobState.DONE}
                # ...and a new job that waits for a slot
                job, entry = new_id(), _put(source, "print('after the hogs')")
                client.stage(job, [entry])
                client.submit(job, [entry])
                release.touch()
                assert client.wait_until_done(job, deadline=60).final == JobState.DONE
                assert (state / "jobs" / job / "stdout").read_text() == "after the hogs\n"
                for hog in hogs:
                    assert client.wait_until_done(hog, deadline=60).final == JobState.DONE
            assert agent.alive(), "the agent died while its jobs used their tasks"
        finally:
            agent.stop()


def test_too_small_a_budget_is_refused_in_one_line(tmp_path):
    """An agent whose cgroup leaves less than the reserve plus a minimum for jobs refuses to
    start: exit 2, one line naming the cgroup and what to raise, no traceback."""
    with pids_cgroup(60) as cgroup:
        agent = agent_in_cgroup(tmp_path, cgroup)
        from protos.launcher import LaunchError

        with pytest.raises(LaunchError):
            agent.start()
        assert agent.proc.wait(10) == 2
        log = (tmp_path / "agent0.log").read_text()
        assert "Traceback" not in log
        lines = [line for line in log.splitlines() if "error:" in line]
        assert len(lines) == 1 and str(cgroup) in lines[0] and "TasksMax" in lines[0], log
        agent.stop()
