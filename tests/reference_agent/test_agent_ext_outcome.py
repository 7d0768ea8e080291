"""AgentExtensions on the reference agent over loopback: capabilities and outcomes (AGT-EXT-2/3/4)."""
from __future__ import annotations

import json

import grpc
import pytest

from agent_ext_helpers import Ext, gate_script, wait_until
from agent_harness import InProcessAgent
from agent_helpers import new_id, running_version
from protos import AgentExtensions_pb2, Common_pb2
from protos.extensions import TAIL_LIMIT, EndKind
from protos.states import JobState
from reference_agent import cli
from reference_agent.config import AgentConfig
from reference_agent.domain import AgentCore
from reference_agent.server import AgentServer
from reference_agent.telemetry import Telemetry


def done(agent, job: str):
    agent.wait_done(job)
    return Ext(agent.channel).outcome(job)


def test_capabilities_list_all_three(agent):
    """AGT-EXT-2: the reference agent offers outcome, cancel and watch, on the v1 port."""
    assert Ext(agent.channel).capabilities() == ["outcome", "cancel", "watch"]


def test_outcome_of_an_exit_status_with_tails_times_and_interpreter(agent):
    """AGT-EXT-3: EXITED with the status, both tails, interpreter, times in order."""
    job = agent.submit("import sys\nprint('to stdout')\nprint('to stderr', file=sys.stderr)\nsys.exit(3)\n")
    outcome = done(agent, job)
    assert (outcome.state, outcome.end, outcome.exit_status, outcome.signal) == (JobState.DONE, EndKind.EXITED, 3, None)
    assert (outcome.stdout, outcome.stderr) == (b"to stdout\n", b"to stderr\n")
    assert not outcome.stdout_truncated and not outcome.stderr_truncated
    assert outcome.interpreter_version == running_version()
    assert outcome.submitted_ms <= outcome.started_ms <= outcome.ended_ms
    row = agent.row(job)
    assert outcome.ended_ms == round(row.ended * 1000) and outcome.exit_status == row.exit_status


def test_long_output_is_cut_to_its_last_64_kib_and_flagged(agent):
    job = agent.submit("import sys\nsys.stdout.write(''.join(f'{i:09d}\\n' for i in range(20000)))\n")
    outcome = done(agent, job)
    full = "".join(f"{i:09d}\n" for i in range(20000)).encode()
    assert len(outcome.stdout) == TAIL_LIMIT and outcome.stdout == full[-TAIL_LIMIT:]
    assert outcome.stdout_truncated and not outcome.stderr_truncated
    assert outcome.end is EndKind.EXITED and outcome.exit_status == 0


def test_a_job_whose_group_is_signalled_is_signalled(agent):
    """SIGNALLED with the signal when the job's process group dies of it (the launcher too)."""
    job = agent.submit("import os, signal\nos.killpg(0, signal.SIGTERM)\n")
    outcome = done(agent, job)
    assert (outcome.end, outcome.signal, outcome.exit_status) == (EndKind.SIGNALLED, 15, None)


@pytest.mark.parametrize("code, expected", [
    ("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n", (EndKind.SIGNALLED, 9, None)),
    ("import os, signal\nos.kill(os.getpid(), signal.SIGTERM)\n", (EndKind.SIGNALLED, 15, None)),
    ("import sys\nsys.exit(137)\n", (EndKind.EXITED, None, 137)),
])
def test_an_interpreter_killed_by_a_signal_is_told_from_one_that_exits_128_plus_n(agent, code, expected):
    """AGT-EXT-3: SIGNALLED with the signal when the interpreter alone dies of it (a shell's $?
    would say 128+N), EXITED 137 when it exits with 137."""
    outcome = done(agent, agent.submit(code))
    assert (outcome.end, outcome.signal, outcome.exit_status) == expected


def test_outcomes_before_done_have_no_end(make_agent, tmp_path):
    """AGT-EXT-3/4: WAIT has no start, RUN has a start and the output so far, neither has an end;
    each agrees with v1 at that moment."""
    agent = make_agent(slots=1)
    ext = Ext(agent.channel)
    gate = tmp_path / "gate"
    running = agent.submit(gate_script(gate, "print('after the gate')", before="print('early', flush=True)"))
    waiting = agent.submit("print('never mind')")
    wait_until(lambda: agent.client.run(running) is JobState.RUN, "first job RUN")
    wait_until(lambda: ext.outcome(running).stdout == b"early\n", "output so far in the RUN outcome")
    run_outcome, wait_outcome = ext.outcome(running), ext.outcome(waiting)
    assert run_outcome.state is JobState.RUN and run_outcome.end is None and run_outcome.ended_ms is None
    assert run_outcome.started_ms is not None
    assert wait_outcome.state is JobState.WAIT and wait_outcome.started_ms is None and wait_outcome.end is None
    assert agent.client.run(waiting) is JobState.WAIT
    gate.touch()
    assert done(agent, running).stdout == b"early\nafter the gate\n"


def test_an_outcome_never_changes_after_done_across_a_restart(make_agent, tmp_path):
    """AGT-EXT-4: asked again, and asked of the agent restarted on the same state directory."""
    first = make_agent()
    jobs = [first.submit("print('ok')"), first.submit("import sys; sys.exit(7)"),
            first.submit("import os, signal\nos.killpg(0, signal.SIGKILL)\n")]
    before = [done(first, j) for j in jobs]
    assert [o.end for o in before] == [EndKind.EXITED, EndKind.EXITED, EndKind.SIGNALLED]
    assert [Ext(first.channel).outcome(j) for j in jobs] == before
    state = first.state
    first.close()
    second = make_agent(state_dir=str(state), source=str(first.source))
    assert [Ext(second.channel).outcome(j) for j in jobs] == before


def test_operator_view_shows_the_outcome(agent, capsys):
    """`reference-agent jobs --json` agrees with GetOutcome: exit status, end and signal."""
    ok, signalled = agent.submit("import sys; sys.exit(4)"), agent.submit("import os, signal\nos.killpg(0, signal.SIGTERM)\n")
    outcomes = {j: done(agent, j) for j in (ok, signalled)}
    capsys.readouterr()
    assert cli.main(["jobs", "--json", "--state-dir", str(agent.state)]) == 0
    rows = {r["job"]: r for r in json.loads(capsys.readouterr().out)}
    for job, outcome in outcomes.items():
        assert rows[job]["end"] == outcome.end.name.lower()
        assert rows[job]["exit_status"] == outcome.exit_status
        assert rows[job]["signal"] == outcome.signal


@pytest.mark.parametrize("method", ["GetOutcome", "CancelJob"])
def test_unknown_and_malformed_ids(agent, method):
    """AGT-EXT-3/5: NOT_FOUND naming a well-formed unknown id, INVALID_ARGUMENT for a malformed or
    missing one and for bytes that do not parse; nothing changes."""
    ext = Ext(agent.channel)
    unknown = new_id()
    with pytest.raises(grpc.RpcError) as info:
        ext.raw(method, Common_pb2.JobId(uuid=unknown.upper()).SerializeToString())
    assert info.value.code().name == "NOT_FOUND" and unknown in info.value.details()
    for data, needle in ((Common_pb2.JobId(uuid="not-a-uuid").SerializeToString(), "not-a-uuid"),
                         (Common_pb2.JobId().SerializePartialToString(), "uuid"),
                         (b"\xff\xff\xff", "parse")):
        with pytest.raises(grpc.RpcError) as info:
            ext.raw(method, data)
        assert info.value.code().name == "INVALID_ARGUMENT" and needle in info.value.details()
    assert agent.core.counts().get("WAIT", 0) == 0 and agent.core.job(unknown) is None


class _OutcomeOnly(AgentCore):
    """Offers only the outcome extension."""

    def capabilities(self):
        return ("outcome",)


def test_methods_of_extensions_not_listed_answer_unimplemented(tmp_path):
    """AGT-EXT-2: an agent listing only "outcome" answers CancelJob and WatchJobs UNIMPLEMENTED,
    naming the extension, and changes nothing; GetOutcome works."""
    source = tmp_path / "source"
    source.mkdir()
    config = AgentConfig(listen="127.0.0.1:0", source=str(source), state_dir=str(tmp_path / "state"), slots=1,
                         discover_path=False, log_rpcs=False)
    server = AgentServer(config, core_factory=_OutcomeOnly, telemetry=Telemetry(stream=None))
    server.start()
    agent = InProcessAgent(server, source, tmp_path / "state", tmp_path)
    try:
        ext = Ext(agent.channel)
        job = agent.submit("print('kept')")
        assert ext.capabilities() == ["outcome"]
        for call, name in ((lambda: ext.cancel(job), "cancel"), (lambda: next(ext.watch([job])), "watch")):
            with pytest.raises(grpc.RpcError) as info:
                call()
            assert info.value.code() is grpc.StatusCode.UNIMPLEMENTED and repr(name) in info.value.details()
        agent.wait_done(job, poll_interval=0.02)
        assert ext.outcome(job).stdout == b"kept\n"
    finally:
        agent.close()


def test_the_extension_is_behind_the_v1_token(make_agent, tmp_path):
    """AGT-EXT-1: the same port and token as v1: no token, UNAUTHENTICATED; with it, served."""
    tokens = tmp_path / "tokens"
    tokens.write_text("s3cret-token-for-ext\n")
    agent = make_agent(auth_tokens=str(tokens))
    ext = Ext(agent.channel)
    with pytest.raises(grpc.RpcError) as info:
        ext.capabilities()
    assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as info:
        ext.outcome(new_id())
    assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED
    token = (("authorization", "Bearer s3cret-token-for-ext"),)
    request = AgentExtensions_pb2.CapabilitiesRequest()
    assert list(ext.stub.GetCapabilities(request, timeout=20, metadata=token).extensions) == ["outcome", "cancel", "watch"]
    with pytest.raises(grpc.RpcError) as info:
        ext.stub.GetOutcome(Common_pb2.JobId(uuid=new_id()), timeout=20, metadata=token)
    assert info.value.code() is grpc.StatusCode.NOT_FOUND
