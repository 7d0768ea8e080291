"""The GitLab CI example of docs/CONFORMANCE.md, run as written (issue 19.8): a reference agent started in
the background, SIGKILLed and restarted by the example's own shell commands, reaches 27/27 MUST."""
from __future__ import annotations

import json
import os
import socket
import subprocess

import pytest

from _ci_docs import gitlab_script, local
from _conformance_runs import ROOT


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_gitlab_example_is_complete():
    script = gitlab_script()
    line = next(c for c in script if c.startswith("agent-conformance"))
    for option in ("--target", "--source-dir", "--witness-dir", "--slots", "--restart-cmd", "--kill-cmd",
                   "--max-request-bytes 4MiB", "--junitxml", "--report-json"):
        assert option in line, option
    assert gitlab_script("after_script")


@pytest.mark.slow
def test_the_gitlab_script_reaches_full_conformance(tmp_path):
    port = str(_free_port())
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    script = [local(c).replace("50051", port) for c in gitlab_script() if not c.startswith("pip ")]
    try:
        for command in script:
            done = subprocess.run(command, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True,
                                  timeout=900)
            assert done.returncode == 0, (command[:200], done.stdout[-3000:], done.stderr[-2000:])
    finally:
        for command in gitlab_script("after_script"):
            subprocess.run(local(command), shell=True, cwd=tmp_path, env=env, capture_output=True, timeout=60)
    data = json.loads((tmp_path / "conformance.json").read_text())
    assert data["summary"][0] == "MUST: 27/27 pass, conformant" and data["exit_code"] == 0, data["summary"]
    assert data["conformant"] is True and data["premises"], data["premises"]
    assert not list((tmp_path / "witness").iterdir())
