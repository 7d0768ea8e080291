"""The pytest11 plugin: importable and inert on load, the `fake_agent` fixture and its marker."""
from __future__ import annotations

import subprocess
import sys

import grpc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fakes
from fakes import FakeAgent
from protos import Common_pb2, RunJob_pb2, StageInFile_pb2
from protos.errors import ProtocolError
from protos.validation import choose_interpreter, parse_python_version

pytest_plugins = ["pytester"]


def test_loading_the_plugin_starts_nothing():
    code = ("import threading, fakes.pytest_plugin as p; "
            "assert threading.active_count() == 1, threading.enumerate(); "
            "assert callable(p.fake_agent) and p.MARKER == 'fake_agent'")
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


def test_fixture_serves_a_fresh_fake_per_test_with_strict_markers(pytester):
    pytester.makepyfile(test_uses_fake="""
        import pytest
        from fakes import Immediate
        from protos.client import AgentClient

        @pytest.mark.fake_agent(progression=Immediate())
        def test_configured(fake_agent):
            client = AgentClient.connect(fake_agent.address)
            f = fake_agent.source.add(b"x")
            job = "00000000-0000-0000-0000-0000000000aa"
            client.stage_in(job, [f])
            assert client.run(job, [f]).name == "DONE"

        def test_fresh(fake_agent):
            assert fake_agent.calls == [] and fake_agent.backend.jobs() == []
            assert fake_agent.address.startswith("127.0.0.1:")
    """)
    pytester.runpytest("-p", "no:cacheprovider", "--strict-markers").assert_outcomes(passed=2)


@pytest.mark.parametrize("marker, message", [
    ('@pytest.mark.fake_agent("3.11")', "keyword arguments only"),
    ("@pytest.mark.fake_agent(python_versions=['x.y'])", "not an interpreter version"),
    ("@pytest.mark.fake_agent(speed=3)", "speed"),
])
def test_fixture_reports_a_misconfigured_marker(pytester, marker, message):
    pytester.makepyfile(test_bad=f"""
        import pytest
        {marker}
        def test_it(fake_agent):
            pass
    """)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"*{message}*"])


VERSIONS = ["2.7.18", "3.8.18", "3.11.9", "3.12.4", "3.13.0rc1"]
PIECES = st.sampled_from(["", " ", "3", "3.11", "3.13", "2", "==3.11.*", ">=3.9", "<3.12", "!=3.12.4", "~=3.8",
                          ">=3.8,<3.12", "three", "3.x", "=>3", ">=", "*", "==3.*.1", "3.11.7.1"])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(PIECES, st.text(max_size=8)), max_size=3))
def test_fake_python_version_answers_follow_the_protocol_layer(texts):
    """INVALID_ARGUMENT iff some text does not parse; else OK iff choose_interpreter finds one."""
    agent = FakeAgent(python_versions=VERSIONS)
    server = fakes.testing_server(agent)
    job, f = "00000000-0000-0000-0000-000000000001", agent.source.add(b"x")
    stage = StageInFile_pb2.StageInFilesRequest(job=Common_pb2.JobId(uuid=job), files=[Common_pb2.FileId(uuid=f)])
    server.invoke_unary_unary(fakes.METHODS["StageInFiles"], (), stage, None).termination()
    run = RunJob_pb2.RunJobRequest(job=Common_pb2.JobId(uuid=job), files=[Common_pb2.FileId(uuid=f)],
                                   requirements=[RunJob_pb2.JobRequirement(python_version=t) for t in texts])
    _, _, code, _ = server.invoke_unary_unary(fakes.METHODS["RunJob"], (), run, None).termination()
    try:
        parsed = [parse_python_version(t) for t in texts]
    except ProtocolError:
        assert code is grpc.StatusCode.INVALID_ARGUMENT
        return
    chosen = choose_interpreter(parsed, VERSIONS)
    assert code is (grpc.StatusCode.OK if chosen else grpc.StatusCode.FAILED_PRECONDITION)
    if chosen:
        assert agent.backend.job(job).interpreter == chosen
