"""--job-user: jobs run as another user, who can reach only the job's own work directory."""
from __future__ import annotations

import os
import pwd
import shutil
import tempfile
from pathlib import Path

import pytest

from reference_agent.config import AgentConfig, ConfigError

USER = "nobody"
SYSTEM_PYTHON = "/usr/bin/python3"  # the tests' own interpreter may sit where nobody cannot reach


def _runs_as_nobody(python: str) -> bool:
    import subprocess

    try:
        return subprocess.run([python, "-c", "pass"], user=USER, capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _nobody():
    try:
        return pwd.getpwnam(USER)
    except KeyError:
        return None


needs_root_and_nobody = pytest.mark.skipif(
    os.geteuid() != 0 or _nobody() is None,
    reason="--job-user needs the tests to run as root and a user 'nobody' to exist")

PROBE = """
    import os, sys
    print("uid", os.getuid())
    for what, path, mode in (("journal", "../../../journal.sqlite3", "rb"), ("other", "../../{other}/work/{secret}", "rb"),
                             ("input", "{data}", "ab"), ("status", "../exit_status", "w")):
        try:
            open(path, mode).close()
            print(what, "reachable")
        except OSError as exc:
            print(what, "refused", type(exc).__name__)
    print("data", open("{data}").read())
    open("made-by-the-job.txt", "w").write("mine")
    sys.exit(3)
"""


@needs_root_and_nobody
def test_jobs_run_as_the_job_user_and_reach_only_their_work_directory(start_agent, request):
    if not _runs_as_nobody(SYSTEM_PYTHON):
        pytest.skip(f"{SYSTEM_PYTHON} cannot be run by {USER!r} here")
    # The state directory's parents must be searchable by the job user (pytest's are 0700).
    outer = Path(tempfile.mkdtemp(prefix="job-user-"))
    request.addfinalizer(lambda: shutil.rmtree(outer, ignore_errors=True))
    os.chmod(outer, 0o711)
    agent = start_agent(job_user=USER, pythons=(SYSTEM_PYTHON,), include_running=False,
                        state_dir=str(outer / "state"))
    secret = agent.put("another job's input")
    other = agent.submit("print('other')\n", extra=[secret])
    agent.wait_done(other)
    data = agent.put("the input")
    job = agent.submit(PROBE.format(other=other, secret=secret, data=data), extra=[data])
    agent.wait_done(job)
    row = agent.row(job)
    out = agent.output(job)
    assert f"uid {_nobody().pw_uid}" in out, (row.reason, row.exit_status, row.note, open(row.stderr).read())
    for what in ("journal", "other", "input", "status"):
        assert f"{what} refused PermissionError" in out, out
    assert "data the input" in out
    assert row.exit_status == 3 and row.reason == "failed"  # the status came through its descriptor
    assert (agent.workdir(job) / "made-by-the-job.txt").stat().st_uid == _nobody().pw_uid
    assert (agent.workdir(job) / data).read_text() == "the input"


def test_job_user_values_are_checked():
    with pytest.raises(ConfigError, match="--job-user 'no-such-user-here': no such user"):
        AgentConfig(listen="127.0.0.1:0", job_user="no-such-user-here").validate()
    me = pwd.getpwuid(os.geteuid()).pw_name
    assert AgentConfig(listen="127.0.0.1:0", job_user=me).validate().job_identity() is None  # nothing to switch


def test_job_user_needs_root(monkeypatch):
    if _nobody() is None:
        pytest.skip("no user 'nobody' to name")
    monkeypatch.setattr(os, "geteuid", lambda: 12345)
    with pytest.raises(ConfigError, match="must run as root"):
        AgentConfig(listen="127.0.0.1:0", job_user=USER).validate()
