"""CancelJob on the reference agent over loopback (AGT-EXT-5/6), and across a SIGKILL of the agent."""
from __future__ import annotations

import collections
import random
import time
from pathlib import Path

import grpc
import pytest

from agent_ext_helpers import Ext, events_of, gate_script, wait_until
from agent_harness import InProcessAgent
from agent_helpers import new_id
from protos import launcher
from protos.client import AgentClient
from protos.extensions import EndKind
from protos.states import JobState
from reference_agent.config import AgentConfig
from reference_agent.domain import AgentCore
from reference_agent.journal import StorageError
from reference_agent.server import AgentServer
from reference_agent.telemetry import Telemetry

MARK = "open('started', 'w').write('yes')\n"   # in the job's work directory: proof that it ran


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def test_cancel_a_waiting_job_it_never_starts(make_agent, tmp_path):
    """AGT-EXT-5/6: DONE (cancelled) at once, DONE for v1, never started, its place in the queue
    gone (the next job starts), journalled DONE before the answer."""
    agent = make_agent(slots=1)
    ext = Ext(agent.channel)
    gate = tmp_path / "gate"
    blocker = agent.submit(gate_script(gate))
    waiting = agent.submit(MARK)
    wait_until(lambda: agent.client.run(blocker) is JobState.RUN, "blocker RUN")
    assert agent.client.run(waiting) is JobState.WAIT
    assert ext.cancel(waiting) is JobState.DONE
    assert agent.row(waiting).state == int(JobState.DONE) and agent.row(waiting).cancelled is not None
    assert agent.client.run(waiting) is JobState.DONE
    outcome = ext.outcome(waiting)
    assert (outcome.end, outcome.started_ms, outcome.exit_status) == (EndKind.CANCELLED, None, None)
    assert ext.cancel(waiting) is JobState.DONE and ext.outcome(waiting) == outcome  # DONE: nothing changes
    later = agent.submit(MARK)
    gate.touch()
    agent.wait_done(later)
    assert (agent.workdir(later) / "started").exists() and not (agent.workdir(waiting) / "started").exists()
    assert agent.core.counts()["busy"] == 0


@pytest.mark.parametrize("cgroups, escape", [(True, "start_new_session=True"), (False, "process_group=0")],
                         ids=["cgroup, child in its own session", "no cgroups, child in its own process group"])
def test_cancel_a_running_job_ends_its_whole_tree(make_agent, cgroups, escape):
    """AGT-EXT-5: a RUN job and a child that left its process group (with cgroups: its session)
    are gone, the job DONE (cancelled), its slot freed. Without cgroups the agent kills the job's
    session. (The time to DONE is printed, not asserted: the docs carry figures.)"""
    agent = make_agent(slots=1, use_cgroups=cgroups)
    if cgroups and agent.core.containment.name != "cgroup":
        pytest.skip(f"no usable cgroups here ({agent.core.containment.describe()}): a setsid child escapes a session kill")
    ext = Ext(agent.channel)
    job = agent.submit("import subprocess, time\n"
                       f"child = subprocess.Popen(['sleep', '300'], {escape})\n"
                       "open('child', 'w').write(str(child.pid))\n"
                       "time.sleep(300)\n")
    child_file = agent.workdir(job) / "child"
    child = int(wait_until(lambda: child_file.exists() and child_file.read_text(), "the job's child pid"))
    assert alive(child)
    start = time.monotonic()
    answer = ext.cancel(job)
    assert answer in (JobState.RUN, JobState.DONE)
    agent.wait_done(job)
    took = time.monotonic() - start
    assert not alive(child), "the job's child outlived the cancel"
    outcome = ext.outcome(job)
    assert outcome.end is EndKind.CANCELLED and outcome.started_ms is not None and outcome.ended_ms is not None
    assert agent.core.counts()["busy"] == 0
    after = agent.submit("print('slot free')")
    agent.wait_done(after)
    assert ext.outcome(after).stdout == b"slot free\n"
    print(f"cancel of a RUN job ({agent.core.containment.name}), child {escape}: answered {answer.name}, "
          f"DONE after {took * 1000:.0f} ms")


def test_cancel_racing_the_natural_end_yields_one_outcome(make_agent, tmp_path):
    """AGT-EXT-6: cancels sent as a job ends on its own. Each job has exactly one outcome: v1 says
    DONE, GetOutcome says the same twice, a watch gives one DONE with that same outcome; the end
    is CANCELLED or EXITED 0 depending on which came first. Both orders must occur."""
    agent = make_agent(slots=2)
    ext = Ext(agent.channel)
    rng = random.Random(21)
    seen: collections.Counter[str] = collections.Counter()
    for i in range(60):
        mark = tmp_path / f"ending-{i}"
        job = agent.submit(f"open({str(mark)!r}, 'w').close()\n")
        wait_until(mark.exists, "the job about to end")
        time.sleep(rng.choice((0, 0.002, 0.005, 0.01, 0.02, 0.05)))  # spread the cancel around the end
        answer = ext.cancel(job)
        agent.wait_done(job)
        first, again = ext.outcome(job), ext.outcome(job)
        assert first == again
        assert (first.end, first.exit_status) in ((EndKind.CANCELLED, None), (EndKind.EXITED, 0)), first
        events = events_of(ext.watch([job]))
        assert [(s, o) for _, s, o in events] == [(JobState.DONE, first)]
        if answer is JobState.DONE and first.end is EndKind.EXITED:
            seen["ended first"] += 1
        elif first.end is EndKind.CANCELLED:
            seen["cancel first"] += 1
        else:
            raise AssertionError(f"answer {answer.name} but outcome {first}")
        if i >= 20 and seen["ended first"] >= 3 and seen["cancel first"] >= 3:
            break
    print(f"cancel racing the end, {sum(seen.values())} runs: {dict(seen)}")
    assert seen["ended first"] and seen["cancel first"], f"only one order happened: {dict(seen)}"


def test_unknown_job_cancel_changes_nothing(agent):
    ext = Ext(agent.channel)
    unknown = new_id()
    try:
        ext.cancel(unknown)
    except grpc.RpcError as exc:
        assert exc.code() is grpc.StatusCode.NOT_FOUND and unknown in exc.details()
    else:
        raise AssertionError("CancelJob of an unknown job answered OK")
    assert agent.core.job(unknown) is None


def test_cancelled_waiting_job_never_starts_after_sigkill(tmp_path):
    """AGT-EXT-5: cancel a WAIT job, SIGKILL the agent at once, restart it: the job is DONE
    (cancelled), never started, though the queue ran on after the restart."""
    source, state, gate = tmp_path / "source", tmp_path / "state", tmp_path / "gate"
    source.mkdir()
    agent = launcher.reference_agent(source, state, 1, ["--no-path-pythons"], log_path=tmp_path / "agent.log",
                                     startup_timeout=60)
    channel = None
    try:
        address = agent.start()
        channel = grpc.insecure_channel(address)
        client, ext = AgentClient(channel, timeout=20), Ext(channel)

        def submit(code: str) -> str:
            job, entry = new_id(), new_id()
            (source / entry).write_text(code)
            assert client.stage_in(job, [entry]) == [entry]
            client.run(job, [entry])
            return job

        blocker = submit(gate_script(gate))
        waiting = submit(MARK)
        wait_until(lambda: client.run(blocker) is JobState.RUN, "blocker RUN")
        assert ext.cancel(waiting) is JobState.DONE
        agent.kill(hard=True)  # SIGKILL right after the answer: the cancel must already be durable
        channel.close()
        address = agent.restart()
        channel = grpc.insecure_channel(address)
        client, ext = AgentClient(channel, timeout=20), Ext(channel)
        assert client.run(waiting) is JobState.DONE
        gate.touch()
        later = submit(MARK)
        wait_until(lambda: client.run(later) is JobState.DONE, "a job submitted after the restart DONE", 60)
        assert client.run(blocker) is JobState.DONE
        assert ext.outcome(waiting).end is EndKind.CANCELLED
        assert not (state / "jobs" / waiting / "work" / "started").exists(), "the cancelled job ran"
        assert (state / "jobs" / later / "work" / "started").exists()
    finally:
        if channel is not None:
            channel.close()
        agent.stop()  # the agent and every process group it had


class _FullDiskAtCancel(AgentCore):
    """The journal cannot record a cancel (a full disk)."""

    def record_cancel(self, job, columns):
        raise StorageError(OSError(28, "No space left on device"), f"the cancel of job {job.job}")


def test_a_cancel_the_journal_cannot_record_changes_nothing(tmp_path):
    """AGT-EXT-5: not durable, not done: RESOURCE_EXHAUSTED naming the job, and the job still
    WAIT, then runs when its turn comes."""
    source, gate = tmp_path / "source", tmp_path / "gate"
    source.mkdir()
    config = AgentConfig(listen="127.0.0.1:0", source=str(source), state_dir=str(tmp_path / "state"), slots=1,
                         discover_path=False, log_rpcs=False)
    server = AgentServer(config, core_factory=_FullDiskAtCancel, telemetry=Telemetry(stream=None))
    server.start()
    agent = InProcessAgent(server, source, tmp_path / "state", tmp_path)
    try:
        blocker = agent.submit(gate_script(gate))
        wait_until(lambda: agent.client.run(blocker) is JobState.RUN, "blocker RUN")
        waiting = agent.submit(MARK)
        try:
            Ext(agent.channel).cancel(waiting)
        except grpc.RpcError as exc:
            assert exc.code() is grpc.StatusCode.RESOURCE_EXHAUSTED and waiting in exc.details()
        else:
            raise AssertionError("a cancel that was not journalled answered OK")
        assert agent.client.run(waiting) is JobState.WAIT and agent.row(waiting).cancelled is None
        gate.touch()
        agent.wait_done(waiting)
        assert (agent.workdir(waiting) / "started").exists()
    finally:
        agent.close()
