"""The extension API: AgentCore subclasses served in-process (core_factory) and by `serve --core`."""
from __future__ import annotations

import os
import select
import subprocess
import sys
import textwrap

import grpc

from agent_helpers import code_of, new_id
from protos.client import AgentClient
from protos.states import JobState
from reference_agent.domain import AgentCore


class AcceptsUnstagedFiles(AgentCore):
    """Breaks AGT-RUN-3 by skipping one check; everything else is the reference behaviour."""

    def check_staged(self, job_id, files):
        return None


def test_core_factory_serves_a_subclass(make_agent):
    h = make_agent(slots=1)
    assert code_of(h.client.run, new_id(), [h.put(b"pass\n")]) == "FAILED_PRECONDITION"
    from reference_agent.config import AgentConfig
    from reference_agent.server import AgentServer
    from reference_agent.telemetry import Telemetry

    config = AgentConfig(listen="127.0.0.1:0", source=str(h.source), state_dir=str(h.tmp / "broken"), slots=1,
                         discover_path=False)
    with AgentServer(config, core_factory=AcceptsUnstagedFiles, telemetry=Telemetry(None)) as broken:
        with grpc.insecure_channel(broken.address) as channel:
            client = AgentClient(channel, timeout=10)
            job = new_id()
            assert code_of(client.run, job, [h.put(b"pass\n")]) == "OK"
            assert isinstance(broken.core, AcceptsUnstagedFiles)


def test_serve_core_option_loads_a_subclass(tmp_path):
    (tmp_path / "my_broken.py").write_text(textwrap.dedent('''
        from protos.states import JobState
        from reference_agent.domain import AgentCore

        class ReportsDoneBeforeRun(AgentCore):
            def report_state(self, job):
                return JobState.DONE
    '''))
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-m", "reference_agent", "serve", "--listen", "127.0.0.1:0", "--quiet",
                             "--core", "my_broken:ReportsDoneBeforeRun", "--no-path-pythons", "--slots", "1", "--stop-jobs-on-exit"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        address = proc.stdout.readline().decode().split()[-1] if ready else ""
        with grpc.insecure_channel(address) as channel:
            client = AgentClient(channel, timeout=10)
            job, entry = new_id(), new_id()
            (tmp_path / "agent-source" / entry).write_text("import time; time.sleep(30)\n")
            client.stage_in(job, [entry])
            assert client.run(job, [entry]) is JobState.DONE  # the defect is visible on the wire
    finally:
        proc.terminate()
        proc.wait(20)
        proc.stdout.close()
