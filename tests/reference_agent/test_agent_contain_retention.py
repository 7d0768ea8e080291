"""Retention (issue 11): DONE jobs' directories and cache entries go by age and size, in the
background and by `reference-agent gc`; waiting, running and unsubmitted jobs keep theirs; a
removed job's id still never runs again (AGT-DUR-1, AGT-RUN-7)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from agent_helpers import new_id
from protos.states import JobState
from reference_agent.journal import JobRow
from reference_agent.retention import RetentionPolicy, plan


def _gc(state: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reference_agent", "gc", "--state-dir", str(state), *args],
                          capture_output=True, text=True, timeout=60)


def _wait_for(predicate, within: float = 15.0) -> bool:
    end = time.monotonic() + within
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_background_retention_keeps_what_waiting_running_and_unsubmitted_jobs_use(make_agent):
    agent = make_agent(slots=1, retain_age=0.5, gc_interval=0.1)
    jobs, cache = agent.state / "jobs", agent.state / "cache"
    old_data = agent.put(b"only a DONE job used this")
    done = agent.submit("print('done')\n", extra=[old_data])
    assert agent.wait_done(done).final.name == "DONE"
    started = agent.row(done).started
    running = agent.submit("import time; time.sleep(30)\n")
    waiting_data, unsubmitted_data = agent.put(b"for the waiting job"), agent.put(b"for nobody yet")
    waiting = agent.submit("print('w')\n", extra=[waiting_data])
    unsubmitted = new_id()
    assert agent.client.stage_in(unsubmitted, [unsubmitted_data]) == [unsubmitted_data]
    assert agent.client.run(waiting).name == "WAIT"
    assert _wait_for(lambda: not (jobs / done).exists() and not (cache / old_data).exists())
    retention = agent.core.retention  # everything now older than the policy's age, for two more passes
    retention.clock = lambda: time.time() + 3600
    assert retention.wait_passes(2, timeout=30)
    for job in (running, waiting, unsubmitted):
        assert (jobs / job).is_dir(), job
    for file in (waiting_data, unsubmitted_data):
        assert (cache / file).is_file(), file
    # the removed job is still DONE, and its id never runs again, also with its files sent again
    assert agent.client.run(done).name == "DONE"
    entry = agent.row(done).files[0]
    assert agent.client.run(done, [entry]).name == "DONE"
    assert agent.row(done).started == started and not (jobs / done).exists()
    # an unsubmitted job's staged file is still staged, and runs
    agent.client.run(unsubmitted, [unsubmitted_data])  # a data file as entry point: it fails, but runs
    assert agent.core.job(unsubmitted) is not None


def test_gc_command_dry_run_then_removal_then_restart(make_agent, tmp_path):
    agent = make_agent()
    data = agent.put(os.urandom(50_000))
    done = agent.submit("print('x' * 1000)\n", extra=[data])
    agent.wait_done(done)
    state = agent.state
    # while the agent runs: job directories only, the cache is the agent's
    dry = _gc(state, "--max-age", "1s", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    agent.core.journal.update_job(done, ended=time.time() - 60)  # it ended a minute ago, not a sleep
    live = _gc(state, "--max-age", "1s", "--json")
    report = json.loads(live.stdout)
    assert [r["kind"] for r in report["removed"]] == ["job"] and "running agent" in report["skipped"]
    assert not (state / "jobs" / done).exists() and (state / "cache" / data).exists()
    shown = subprocess.run([sys.executable, "-m", "reference_agent", "job", done, "--state-dir", str(state)],
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0 and "(not kept: removed by retention" in shown.stdout
    agent.server.stop(grace=0.2, stop_jobs=True)
    dry = _gc(state, "--max-bytes", "1", "--dry-run")
    assert dry.returncode == 0 and "would remove" in dry.stdout and (state / "cache" / data).exists()
    gone = _gc(state, "--max-bytes", "1")
    assert gone.returncode == 0 and f"removed cache {data}" in gone.stdout
    assert not (state / "cache" / data).exists()
    again = make_agent(state_dir=str(state), source=str(agent.source))
    assert again.client.run(done).name == "DONE"  # AGT-DUR-1: still DONE after gc and restart
    assert again.client.stage_in(new_id(), [data]) == [data]  # fetched afresh from the source


@pytest.mark.parametrize("args, message", [
    ([], "give --max-age and/or --max-bytes"),
    (["--max-age", "soon"], "'soon' is not a duration"),
    (["--max-age=-3d"], "must be a finite duration > 0"),
    (["--max-age=0"], "must be a finite duration > 0"),
    (["--max-bytes", "lots"], "'lots' is not a size"),
])
def test_gc_command_refuses_malformed_values_without_change(tmp_path, args, message):
    state = tmp_path / "state"
    (state / "jobs" / new_id()).mkdir(parents=True)
    (state / "journal.sqlite3").write_bytes(b"")
    before = sorted(p.name for p in state.rglob("*"))
    result = _gc(state, *args)
    assert result.returncode == 2 and message in result.stderr
    assert sorted(p.name for p in state.rglob("*")) == before


def test_gc_command_without_a_journal_says_so(tmp_path):
    result = _gc(tmp_path / "nothing-here", "--max-age", "1d")
    assert result.returncode == 1 and "no journal" in result.stderr


def _row(job: str, state: JobState, ended: float | None, files=("f",)) -> JobRow:
    reason = "succeeded" if state is JobState.DONE else None
    return JobRow(seq=1, job=job, files=tuple(files), requirements=(), interpreter="/py", python_version="3",
                  state=int(state), reason=reason, submitted=0.0, ended=ended, workdir="w", stdout="o", stderr="e")


@settings(max_examples=30, deadline=None)
@given(ages=st.lists(st.integers(1, 1000), min_size=1, max_size=6),
       sizes=st.lists(st.integers(1, 40), min_size=6, max_size=6),
       limit=st.integers(1, 300))
def test_plan_by_size_removes_oldest_done_first_and_never_protected_entries(tmp_path_factory, ages, sizes, limit):
    root = tmp_path_factory.mktemp("plan")
    now = 10_000.0
    rows, staged = [], []
    for i, age in enumerate(ages):
        job = new_id()
        (root / "jobs" / job).mkdir(parents=True)
        (root / "jobs" / job / "out").write_bytes(b"x" * 4096 * sizes[i])
        rows.append(_row(job, JobState.DONE, now - age))
    waiting, file = new_id(), new_id()
    (root / "jobs" / waiting).mkdir(parents=True)
    rows.append(_row(waiting, JobState.WAIT, None))
    (root / "cache").mkdir()
    (root / "cache" / file).write_bytes(b"y" * 4096 * 10)
    staged.append((waiting, file))
    report = plan(root, rows, staged, RetentionPolicy(max_bytes=limit * 4096), now=now)
    removed = [r.name for r in report.removed]
    assert waiting not in removed and file not in removed and report.protected == 1
    done = [r for r in rows if r.job != waiting]
    kept_ages = [now - r.ended for r in done if r.job not in removed]
    removed_ages = [now - r.ended for r in done if r.job in removed]
    if kept_ages and removed_ages:
        assert min(removed_ages) >= max(kept_ages)  # the oldest first, none skipped
    assert report.total_before - report.total_after == sum(r.bytes for r in report.removed)
    if len(removed) < len(done):
        assert report.total_after <= limit * 4096  # it stopped because it was under the bound
    if removed:
        assert report.total_after + report.removed[-1].bytes > limit * 4096  # none removed needlessly


def test_policy_values_are_checked():
    for bad in (dict(max_age=0), dict(max_age=float("inf")), dict(max_bytes=0)):
        with pytest.raises(ValueError):
            RetentionPolicy(**bad)
    assert not RetentionPolicy().active and RetentionPolicy(max_age=1).active
