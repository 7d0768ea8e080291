"""Issue 18.2, the launcher's side: a launcher that ends before its interpreter runs is the agent's
failed start, never the job's end.

The agent journals RUN only once the job's interpreter runs the paused waiter (it writes on a
ready pipe): a launcher that dies before (a fork child aborted at a process limit, a failed
namespace mount) leaves the job WAIT, retried with backoff, and the job then runs once. An
interpreter that cannot be run at all (gone or not executable since it was chosen: the shell's
126/127) is the job's end, DONE (failed), as before. Real agents over loopback, real processes."""
from __future__ import annotations

import os
import sys

import pytest

from agent_harness import InProcessAgent
from protos.states import JobState
from reliability_helpers import new_id
from reference_agent.telemetry import Telemetry

pytestmark = pytest.mark.timeout(90)


def _aborting_python(tmp_path, aborts: int) -> str:
    """The real interpreter behind a wrapper whose first `aborts` launches die of SIGABRT before
    anything runs (as a launcher's fork child aborted at a pids limit); probes pass through."""
    count = tmp_path / "aborts"
    path = tmp_path / "python-aborting"
    path.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = "-E" ]; then\n'
        f'  n=$(cat "{count}" 2>/dev/null || echo 0)\n'
        f'  if [ "$n" -lt {aborts} ]; then echo $((n + 1)) > "{count}"; kill -ABRT $$; fi\n'
        "fi\n"
        f'exec {sys.executable} "$@"\n')
    path.chmod(0o755)
    return str(path)


def _faults(agent, cause: str) -> float:
    value = agent.core.telemetry.registry.get_sample_value("agent_start_faults_total", {"cause": cause})
    return value or 0.0


def _run(agent, code: str) -> tuple[str, str]:
    job, entry = new_id(), agent.put(code)
    agent.client.stage_in(job, [entry])
    agent.client.run(job, [entry])
    return job, entry


def test_a_launcher_that_dies_before_its_interpreter_runs_leaves_the_job_waiting_then_it_runs_once(tmp_path):
    agent = InProcessAgent.start(tmp_path, pythons=(_aborting_python(tmp_path, 2),), include_running=False,
                                 slots=1, telemetry=Telemetry(stream=None))
    try:
        job, _entry = _run(agent, "print('ran')\n")
        result = agent.wait_done(job, deadline=30)
        assert result.final is JobState.DONE
        row = agent.row(job)
        assert (row.reason, row.exit_status) == ("succeeded", 0)
        assert (tmp_path / "state0" / "jobs" / job / "stdout").read_text() == "ran\n"  # once
        assert _faults(agent, "LauncherLost") == 2.0
        assert (tmp_path / "aborts").read_text().strip() == "2"
    finally:
        agent.close()


def test_a_job_queued_behind_a_lost_launch_keeps_its_order(tmp_path):
    agent = InProcessAgent.start(tmp_path, pythons=(_aborting_python(tmp_path, 1),), include_running=False,
                                 slots=1, telemetry=Telemetry(stream=None))
    order = tmp_path / "order"
    try:
        first, _ = _run(agent, f"open({str(order)!r}, 'a').write('first\\n')\n")
        second, _ = _run(agent, f"open({str(order)!r}, 'a').write('second\\n')\n")
        for job in (first, second):
            assert agent.wait_done(job, deadline=30).final is JobState.DONE
            assert agent.row(job).reason == "succeeded"
        assert order.read_text() == "first\nsecond\n"  # AGT-SCHED-3: the lost start kept its place
    finally:
        agent.close()


def test_an_interpreter_gone_since_it_was_chosen_ends_the_job_failed_not_retried(tmp_path):
    python = tmp_path / "python-vanishing"
    python.write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    python.chmod(0o755)
    agent = InProcessAgent.start(tmp_path, pythons=(str(python),), include_running=False, slots=1,
                                 telemetry=Telemetry(stream=None))
    try:
        probed, _ = _run(agent, "pass\n")  # the interpreter is probed (in the background) and runs
        assert agent.wait_done(probed, deadline=30).final is JobState.DONE and agent.row(probed).reason == "succeeded"
        os.chmod(python, 0o644)  # known to the agent, not executable at the next start
        job, _ = _run(agent, "print('never')\n")
        assert agent.wait_done(job, deadline=30).final is JobState.DONE
        row = agent.row(job)
        assert row.reason == "failed" and "could not be run" in (row.note or "")
        assert _faults(agent, "LauncherLost") == 0.0
        assert (tmp_path / "state0" / "jobs" / job / "stdout").read_text() == ""
    finally:
        agent.close()


@pytest.mark.parametrize("exc,label", [
    (OSError(24, "Too many open files"), "EMFILE"),
    (OSError(11, "Resource temporarily unavailable"), "EAGAIN"),
    (RuntimeError("can't start new thread"), "EAGAIN"),  # pthread_create refused at a pids limit
    (RuntimeError("something else"), "RuntimeError"),
])
def test_start_fault_labels_name_the_os_cause(exc, label):
    from reference_agent.launchretry import cause
    from reference_agent.processes import LauncherLost

    assert cause(exc) == label
    assert cause(LauncherLost(-6)) == "LauncherLost" and "SIGABRT" in str(LauncherLost(-6))
