"""The extension defects of the broken-agent catalogue (fakes/broken/extensions.py) really show:
each scenario here passes against the reference agent's behaviour only where the defect is absent."""
from __future__ import annotations

import grpc
import pytest

from agent_ext_helpers import Ext, events_of, gate_script, wait_until
from agent_harness import InProcessAgent
from agent_helpers import new_id
from fakes.broken import CATALOGUE, build_server
from protos.extensions import EndKind
from protos.requirements import EXT_REQUIREMENTS
from protos.states import JobState
from reference_agent.config import AgentConfig
from reference_agent.watch import WatchLimits

W, R, D = JobState.WAIT, JobState.RUN, JobState.DONE


@pytest.fixture
def broken(tmp_path):
    """broken(name, slots=1, n=0) -> an in-process agent with that one defect, on loopback."""
    made = []

    def start(name: str, slots: int = 1, n: int = 0) -> InProcessAgent:
        source, state = tmp_path / "source", tmp_path / "state"
        source.mkdir(exist_ok=True)
        config = AgentConfig(listen="127.0.0.1:0", source=str(source), state_dir=str(state), slots=slots,
                             discover_path=False, log_rpcs=False)
        server = build_server(CATALOGUE[name], config)
        server.start()
        made.append(InProcessAgent(server, source, state, tmp_path))
        return made[-1]

    yield start
    for agent in made:
        agent.close()


def blocked(agent, tmp_path, name="gate"):
    """A RUN job holding the only slot until `gate` exists; returns (job, gate)."""
    gate = tmp_path / name
    job = agent.submit(gate_script(gate))
    wait_until(lambda: agent.client.run(job) is R, "blocker RUN")
    return job, gate


def test_every_extension_defect_names_extension_ids_only():
    ext = {n: c for n, c in CATALOGUE.items() if any(r in EXT_REQUIREMENTS for r in c.violates)}
    assert len(ext) >= 11 and all(set(c.violates) <= set(EXT_REQUIREMENTS) for c in ext.values())


def test_outcome_changes_after_done(broken):
    agent = broken("OutcomeChangesAfterDone")
    job = agent.submit("pass")
    agent.wait_done(job)
    ext = Ext(agent.channel)
    first = ext.outcome(job)
    wait_until(lambda: ext.outcome(job) != first, "a second, different outcome of a DONE job")


def test_outcome_for_unknown_job(broken):
    agent = broken("OutcomeForUnknownJob")
    assert Ext(agent.channel).outcome(new_id()).state is W  # the reference: NOT_FOUND


def test_cancel_not_durable(broken, tmp_path):
    agent = broken("CancelNotDurable")
    _, gate = blocked(agent, tmp_path)
    waiting = agent.submit("open('started', 'w').close()")
    assert Ext(agent.channel).cancel(waiting) is D
    agent.server.stop(grace=0.2, stop_jobs=False)
    gate.touch()
    again = broken("CancelNotDurable", n=1)
    wait_until(lambda: (again.workdir(waiting) / "started").exists(), "the cancelled job running after a restart")


def test_cancel_leaves_processes_running(broken, tmp_path):
    agent = broken("CancelLeavesProcessesRunning")
    job, gate = blocked(agent, tmp_path)
    assert Ext(agent.channel).cancel(job) is R and agent.client.run(job) is R  # nothing was killed
    gate.touch()
    agent.wait_done(job)
    assert Ext(agent.channel).outcome(job).end is EndKind.CANCELLED


def test_watch_skips_run(broken, tmp_path):
    agent = broken("WatchSkipsRun")
    _, gate = blocked(agent, tmp_path)
    waiting = agent.submit("pass")
    call = Ext(agent.channel).watch([waiting])
    first = next(call)
    gate.touch()
    assert [first.code] + [e.code for e in call] == [W, D]


def test_watch_reports_done_early(broken, tmp_path):
    agent = broken("WatchReportsDoneEarly")
    _, gate = blocked(agent, tmp_path)
    second_gate = tmp_path / "second"
    waiting = agent.submit(gate_script(second_gate))
    call = Ext(agent.channel).watch([waiting])
    assert next(call).code == W
    gate.touch()
    assert [e.code for e in call][-1] == D
    assert agent.client.run(waiting) is R  # v1 still says RUN
    second_gate.touch()


def test_watch_never_ends(broken):
    agent = broken("WatchNeverEnds")
    job = agent.submit("pass")
    wait_until(lambda: agent.client.run(job) is D, "DONE")  # by polling: this agent's watch never ends
    call = Ext(agent.channel).watch([job], timeout=1.0)
    assert next(call).code == D
    with pytest.raises(grpc.RpcError) as info:
        next(call)
    assert info.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED  # the reference ends it with OK


def test_watch_ignores_unknown_ids(broken):
    agent = broken("WatchIgnoresUnknownIds")
    assert events_of(Ext(agent.channel).watch([new_id()])) == []  # the reference: NOT_FOUND


def test_lists_watch_without_serving_it(broken):
    agent = broken("ListsWatchWithoutServingIt")
    ext = Ext(agent.channel)
    job = agent.submit("pass")
    assert "watch" in ext.capabilities()
    with pytest.raises(grpc.RpcError) as info:
        next(ext.watch([job]))
    assert info.value.code() is grpc.StatusCode.UNIMPLEMENTED


def test_cancel_keeps_the_slot(broken, tmp_path):
    agent = broken("CancelKeepsTheSlot")
    job, _ = blocked(agent, tmp_path)
    assert Ext(agent.channel).cancel(job) in (R, D)
    wait_until(lambda: agent.client.run(job) is D, "the cancelled job DONE")
    later = agent.submit("pass")
    assert agent.client.run(later) is W and agent.core.counts()["busy"] == 0  # the slot never came back


def test_watch_bounded_only_in_all(broken, tmp_path):
    agent = broken("WatchBoundedOnlyInAll")
    agent.core.events.limits = WatchLimits(per_caller=2, total=10)
    job, gate = blocked(agent, tmp_path)
    ext = Ext(agent.channel)
    calls = [ext.watch([job]) for _ in range(3)]
    assert [next(c).code for c in calls] == [R, R, R]  # the reference refuses the third (per caller 2)
    gate.touch()
