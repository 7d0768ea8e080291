"""Issue 11 item 7: every error message is bounded, so the client gets the contract's status
(not RESOURCE_EXHAUSTED or INTERNAL from an oversized trailer), over a real loopback channel."""
from __future__ import annotations

import grpc
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from agent_helpers import new_id
from protos import errors
from protos.client import AgentCallError, AgentClient
from reference_agent.config import AgentConfig
from reference_agent.server import AgentServer
from reference_agent.telemetry import Telemetry

SHORT = errors.MAX_MESSAGE  # every message the agent sends fits far under gRPC's 8 KiB
SIZES = st.integers(min_value=1, max_value=3000)
FAST = settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("messages")
    config = AgentConfig(listen="127.0.0.1:0", source=str(tmp / "source"), state_dir=str(tmp / "state"),
                         slots=1, discover_path=False, log_rpcs=False)
    server = AgentServer(config, telemetry=Telemetry(stream=None))
    server.start()
    channel = grpc.insecure_channel(server.address)
    client = AgentClient(channel, timeout=30.0)
    entry = new_id()
    (tmp / "source" / entry).write_text("print('ok')\n")
    yield server, client, entry
    channel.close()
    server.stop(grace=0.2, stop_jobs=True)


def _failure(fn, *args) -> AgentCallError:
    try:
        fn(*args)
    except AgentCallError as exc:
        return exc
    pytest.fail(f"{fn.__name__} answered OK")


def _short_and_counted(exc: AgentCallError, code: str, count: int) -> None:
    assert exc.code_name == code, f"expected {code}, got {exc.code_name}: {exc.details[:200]}"
    assert len(exc.details) <= SHORT
    if count > errors.FEW:
        assert f"({count} in all)" in exc.details


@FAST
@given(n=SIZES)
def test_unstaged_files_message_names_a_few_and_the_count(served, n):
    server, client, entry = served
    job, missing = new_id(), [new_id() for _ in range(n)]
    exc = _failure(client.run, job, missing)
    _short_and_counted(exc, "FAILED_PRECONDITION", n)
    assert missing[0] in exc.details
    assert server.core.job(job) is None


@FAST
@given(n=SIZES)
def test_unsatisfiable_requirements_message_names_a_few_and_the_count(served, n):
    server, client, entry = served
    job = new_id()
    client.stage_in(job, [entry])
    exc = _failure(client.run, job, [entry], [f">=9.{i}" for i in range(n)])
    assert exc.code_name == "FAILED_PRECONDITION" and len(exc.details) <= SHORT
    if n > errors.FEW:
        assert f"{n} in all" in exc.details
    assert server.core.job(job) is None


@FAST
@given(n=SIZES)
def test_repeat_with_other_files_is_already_exists_with_a_short_message(served, n):
    server, client, entry = served
    job = new_id()
    client.stage_in(job, [entry])
    client.run(job, [entry])
    exc = _failure(client.run, job, [entry] + [new_id() for _ in range(n)])
    assert exc.code_name == "ALREADY_EXISTS" and len(exc.details) <= SHORT
    exc = _failure(client.run, job, [], [f">=3.{i}" for i in range(n)])
    assert exc.code_name == "ALREADY_EXISTS" and len(exc.details) <= SHORT


@FAST
@given(n=st.integers(min_value=1, max_value=200_000))
def test_a_huge_bad_uuid_is_invalid_argument_with_a_short_message(served, n):
    server, client, entry = served
    exc = _failure(client.stage_in, "x" * n, [entry])
    assert exc.code_name == "INVALID_ARGUMENT" and len(exc.details) <= SHORT
    exc = _failure(client.run, new_id(), [entry], "3.?" + "9" * n)
    assert exc.code_name == "INVALID_ARGUMENT" and len(exc.details) <= SHORT


def test_stage_after_submit_is_failed_precondition_with_a_short_message(served):
    server, client, entry = served
    job = new_id()
    client.stage_in(job, [entry])
    client.run(job, [entry])
    exc = _failure(client.stage_in, job, [new_id() for _ in range(3000)])
    assert exc.code_name == "FAILED_PRECONDITION" and len(exc.details) <= SHORT


@given(text=st.text(min_size=0, max_size=20_000))
@settings(max_examples=50, deadline=None)
def test_every_protocol_error_is_cut_to_the_bound(text):
    assert len(errors.ProtocolError(text).message) <= SHORT
    assert len(errors.unstaged_files(new_id(), [text] * 50).message) <= SHORT
    assert len(errors.no_interpreter([text] * 50, [text] * 50).message) <= SHORT
