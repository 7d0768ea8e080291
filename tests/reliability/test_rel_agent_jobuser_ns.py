"""Issue 18.5: with --job-user, jobs do not see each other's file UUIDs, /tmp or /dev/shm, and the
interpreter chosen is one the job user can run (probed as that user)."""
from __future__ import annotations

import os
import shutil
import tempfile
import textwrap
from pathlib import Path

import pytest

from protos.client_errors import AgentCallError
from protos.states import JobState
from fault_helpers import wait_for
from reference_agent.processes import private_namespaces
from reliability_helpers import new_id
from test_rel_security_jobuser import SYSTEM_PYTHON, USER, _runs_as_nobody, needs_root_and_nobody

pytestmark = [needs_root_and_nobody, pytest.mark.timeout(90)]

HOLDER = """
    import os, time
    open("/tmp/left-by-a", "w").write("a")
    if os.path.isdir("/dev/shm"):
        open("/dev/shm/left-by-a", "w").write("a")
    end = time.monotonic() + 60
    while not os.path.exists("release") and time.monotonic() < end:
        time.sleep(0.02)
"""

LOOKER = """
    import os
    seen = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            for name in ("cmdline", "environ"):
                try:
                    data = open(f"/proc/{{pid}}/{{name}}", "rb").read().decode("utf-8", "replace")
                except OSError:
                    continue
                seen += [word for word in ({secrets!r}) if word in data]
    print("seen", sorted(set(seen)))
    print("tmp", sorted(os.listdir("/tmp")))
    print("shm", sorted(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else [])
"""


@pytest.fixture
def outer(request):
    if not _runs_as_nobody(SYSTEM_PYTHON):
        pytest.skip(f"{SYSTEM_PYTHON} cannot be run by {USER!r} here")
    if not private_namespaces():
        pytest.skip("unshare of pid and mount namespaces refused here: jobs share /tmp (docs/SECURITY.md)")
    directory = Path(tempfile.mkdtemp(prefix="job-user-ns-"))
    request.addfinalizer(lambda: shutil.rmtree(directory, ignore_errors=True))
    os.chmod(directory, 0o711)
    return directory


def test_jobs_see_neither_each_others_uuids_nor_tmp(start_agent, outer):
    agent = start_agent(job_user=USER, pythons=(SYSTEM_PYTHON,), include_running=False,
                        state_dir=str(outer / "state"), slots=2)
    holder = agent.submit(textwrap.dedent(HOLDER))
    holder_entry = agent.row(holder).files[0]
    wait_for(lambda: agent.client.status(holder) == JobState.RUN, what="the holder running")
    looker = agent.submit(textwrap.dedent(LOOKER.format(secrets=(holder_entry, holder))))
    agent.wait_done(looker)
    out = agent.output(looker)
    assert "seen []" in out, out  # the holder's file UUID and job id: in no command line or environment
    # its own /tmp (holding only the way to its work directory) and /dev/shm
    assert f"tmp [{outer.name!r}]" in out and "shm []" in out, out
    (agent.workdir(holder) / "release").touch()
    agent.wait_done(holder)
    later = agent.submit(textwrap.dedent(LOOKER.format(secrets=(holder_entry,))))
    agent.wait_done(later)
    assert "left-by-a" not in agent.output(later)  # nothing outlives a job


def test_interpreter_the_job_user_cannot_run_is_not_offered(start_agent, outer):
    hidden = outer / "root-only"
    hidden.mkdir(mode=0o700)
    fake = hidden / "python3.99"
    fake.write_text('#!/bin/sh\necho "3.99.0 final 0"\n')
    fake.chmod(0o755)
    agent = start_agent(job_user=USER, pythons=(SYSTEM_PYTHON, str(fake)), include_running=False,
                        state_dir=str(outer / "state"))
    job, entry = new_id(), agent.script("print('hi')")
    agent.client.stage_in(job, [entry])
    with pytest.raises(AgentCallError) as refused:
        agent.client.run(job, [entry], python_version="3.99")
    assert "FAILED_PRECONDITION" in str(refused.value)
    assert str(fake) in agent.core.interpreters.rejected
