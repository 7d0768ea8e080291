"""Issue 11 item 6: callers without a token cannot grow the agent's metrics or log lines."""
from __future__ import annotations

import io
import json

import grpc
import pytest

from reference_agent.auth import UNKNOWN_LABEL
from reference_agent.config import AgentConfig
from reference_agent.server import AgentServer
from reference_agent.telemetry import MAX_FIELD, Telemetry


@pytest.fixture
def guarded(tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("s3cret-token\n")
    log = io.StringIO()
    config = AgentConfig(listen="127.0.0.1:0", source=str(tmp_path / "source"), state_dir=str(tmp_path / "state"),
                         slots=1, discover_path=False, auth_tokens=str(tokens))
    server = AgentServer(config, telemetry=Telemetry(stream=log))
    server.start()
    channel = grpc.insecure_channel(server.address)
    yield server, channel, log
    channel.close()
    server.stop(grace=0.2, stop_jobs=True)


def _label_values(server: AgentServer) -> set[str]:
    return {sample.labels["method"] for metric in server.telemetry.registry.collect()
            if metric.name == "agent_rpcs" for sample in metric.samples if "method" in sample.labels}


def test_a_thousand_unknown_methods_add_one_metrics_label(guarded):
    server, channel, log = guarded
    before = _label_values(server)
    for i in range(1000):
        call = channel.unary_unary(f"/probe{i}.Service/Method{i}")
        with pytest.raises(grpc.RpcError) as failure:
            call(b"", timeout=10)
        assert failure.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert _label_values(server) - before == {UNKNOWN_LABEL}
    assert len(server.telemetry._rpc_counters) <= len(before) + 2  # one (label, code) pair, not 1,000


def test_logged_client_strings_are_cut_short(guarded):
    server, channel, log = guarded
    huge = "/" + "x" * 6000 + "/y"  # under the 8 KiB header limit: it reaches the agent
    with pytest.raises(grpc.RpcError):
        channel.unary_unary(huge)(b"", timeout=10)
    with pytest.raises(grpc.RpcError):
        channel.unary_unary("/Agent/RunJob")(b"", timeout=10)
    server.telemetry.flush()
    lines = [json.loads(line) for line in log.getvalue().splitlines()]
    refused = [line for line in lines if line.get("code") == "UNAUTHENTICATED"]
    assert len(refused) == 2
    for line in refused:
        assert all(len(v) <= MAX_FIELD for v in line.values() if isinstance(v, str))
    assert refused[0]["method"] == UNKNOWN_LABEL and refused[0]["requested"].startswith("/xxx")
    assert refused[1]["method"] == "RunJob"


def test_known_methods_keep_their_own_labels(guarded):
    server, channel, log = guarded
    for path in ("/Agent/RunJob", "/Agent/StageInFiles"):
        with pytest.raises(grpc.RpcError):
            channel.unary_unary(path)(b"", timeout=10)
    assert {"RunJob", "StageInFiles"} <= _label_values(server)
    assert UNKNOWN_LABEL not in _label_values(server)
