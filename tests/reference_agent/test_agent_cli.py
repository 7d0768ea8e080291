"""The `reference-agent` command line: bad flags, the operator view, and a .proto-only client."""
from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agent_helpers import new_id
from reference_agent import cli

REPO = Path(__file__).resolve().parents[2]


def run_main(argv, capsys):
    """main(argv) in-process: (exit code, stdout, stderr)."""
    try:
        code = cli.main(argv)
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("argv,needle", [
    (["serve", "--slots", "0"], "'0' must be >= 1"),
    (["serve", "--slots", "two"], "'two' is not an integer"),
    (["serve", "--listen", "nohostport"], "HOST:PORT"),
    (["serve", "--listen", "127.0.0.1:99999"], "99999"),
    (["serve", "--listen", "127.0.0.1:http"], "'http' is not a number"),
    (["serve", "--job-timeout", "-1"], "'-1' must be a finite number > 0"),
    (["serve", "--job-timeout", "nan"], "'nan'"),
    (["serve", "--max-request-bytes", "12"], "--max-request-bytes 12"),
    (["serve", "--max-request-bytes", "lots"], "'lots' is not a size"),
    (["serve", "--metrics-port", "70000"], "'70000' is outside 0..65535"),
    (["serve", "--python", "/nonexistent/python9"], "--python '/nonexistent/python9'"),
    (["serve", "--tls-cert", "cert.pem"], "--tls-cert and --tls-key go together"),
    (["serve", "--job-env", "NOEQUALS"], "'NOEQUALS' is not NAME=VALUE"),
    (["serve", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    (["job", "not-a-uuid"], "'not-a-uuid' is not a canonical"),
    (["job", "00000000-0000-0000-0000-000000000000", "--tail", "-5"], "--tail -5"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
])
def test_bad_flags_exit_2_naming_the_value(argv, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_main(argv, capsys)
    assert code == 2, (out, err)
    assert needle in err, err
    assert not (tmp_path / "agent-state").exists()  # refused before touching anything


def test_no_command_prints_help_and_exits_2(capsys):
    code, out, _ = run_main([], capsys)
    assert code == 2 and "serve" in out and "examples:" in out


def test_help_teaches_with_examples(capsys):
    code, out, _ = run_main(["serve", "--help"], capsys)
    assert code == 0 and "examples:" in out and "listening on HOST:PORT" in out


def test_jobs_without_journal_is_a_clear_error(capsys, tmp_path):
    code, _, err = run_main(["jobs", "--state-dir", str(tmp_path / "nowhere")], capsys)
    assert code == 1 and "no journal" in err


def test_jobs_and_job_show_the_journal(agent, capsys):
    job = agent.submit("print('operator view')\nraise SystemExit(4)\n")
    agent.wait_done(job)
    code, out, _ = run_main(["jobs", "--state-dir", str(agent.state)], capsys)
    assert code == 0 and job in out and "DONE" in out and "failed" in out and "1 job(s)" in out
    code, out, _ = run_main(["job", job.upper(), "--state-dir", str(agent.state)], capsys)
    assert code == 0 and "operator view" in out and "exit status:  4" in out
    code, out, _ = run_main(["jobs", "--json", "--state-dir", str(agent.state)], capsys)
    rows = json.loads(out)
    assert rows[0]["job"] == job and rows[0]["state"] == "DONE" and rows[0]["exit_status"] == 4
    code, _, err = run_main(["job", new_id(), "--state-dir", str(agent.state)], capsys)
    assert code == 1 and "no job" in err


def test_serve_first_line_and_clean_sigterm(tmp_path):
    """The interface contract: the first stdout line is `listening on HOST:PORT` (real port)."""
    proc = subprocess.Popen([sys.executable, "-m", "reference_agent", "serve", "--listen", "127.0.0.1:0",
                             "--no-path-pythons", "--quiet", "--slots", "1"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        line = proc.stdout.readline().decode() if ready else ""
        host, port = line.removeprefix("listening on ").strip().rsplit(":", 1)
        assert line.startswith("listening on ") and host == "127.0.0.1" and int(port) > 0
        assert (tmp_path / "agent-source").is_dir() and (tmp_path / "agent-state").is_dir()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    proc.stdout.close()
    proc.stderr.close()


def test_serve_busy_port_is_an_error(agent, tmp_path):
    out = subprocess.run([sys.executable, "-m", "reference_agent", "serve", "--listen", agent.address,
                          "--no-path-pythons", "--state-dir", str(tmp_path / "s2"), "--source", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "cannot bind" in out.stderr and out.stdout == ""


CLIENT = '''
import sys, time, grpc
import protos
assert protos.__file__.startswith(sys.argv[4]), protos.__file__  # the generated code, not the toolkit
from protos import AgentService_pb2_grpc, Common_pb2, RunJob_pb2, StageInFile_pb2
address, job, script = sys.argv[1:4]
stub = AgentService_pb2_grpc.AgentStub(grpc.insecure_channel(address))
staged = stub.StageInFiles(StageInFile_pb2.StageInFilesRequest(
    job=Common_pb2.JobId(uuid=job), files=[Common_pb2.FileId(uuid=script)]), timeout=10)
assert [s.file.uuid for s in staged.success_files] == [script]
request = RunJob_pb2.RunJobRequest(job=Common_pb2.JobId(uuid=job), files=[Common_pb2.FileId(uuid=script)],
                                   requirements=[RunJob_pb2.JobRequirement(python_version="3")])
code = stub.RunJob(request, timeout=10).code
for _ in range(3000):
    if code == RunJob_pb2.DONE:
        break
    time.sleep(0.01)
    code = stub.RunJob(RunJob_pb2.RunJobRequest(job=Common_pb2.JobId(uuid=job)), timeout=10).code
print(RunJob_pb2.ResponseCode.Name(code))
'''


def test_client_written_only_against_the_proto_files(agent, tmp_path):
    """A new user's client: protoc on protos/*.proto, stage, run with "3", poll to DONE, then
    `reference-agent job UUID` shows the script's stdout."""
    from grpc_tools import protoc

    gen = tmp_path / "gen"
    gen.mkdir()
    protos = sorted(str(p.relative_to(REPO)) for p in (REPO / "protos").glob("*.proto"))
    include = str(Path(protoc.__file__).parent / "_proto")
    old = os.getcwd()
    os.chdir(REPO)
    try:
        assert protoc.main(["protoc", "-I.", f"-I{include}", f"--python_out={gen}", f"--grpc_python_out={gen}",
                            *protos]) == 0
    finally:
        os.chdir(old)
    (gen / "protos" / "__init__.py").write_text("")
    (gen / "client.py").write_text(CLIENT)
    script = agent.script("print('hello from a proto-only client')\n")
    job = new_id()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run = subprocess.run([sys.executable, "client.py", agent.address, job, script, str(gen)], cwd=gen,
                         capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "DONE"
    shown = subprocess.run([sys.executable, "-m", "reference_agent", "job", job, "--state-dir", str(agent.state)],
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0
    assert "hello from a proto-only client" in shown.stdout.split("--- stdout ---")[1]


def test_module_and_console_script_agree():
    out = subprocess.run([sys.executable, "-m", "reference_agent", "--help"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and "reference-agent" in out.stdout
    assert textwrap.dedent(cli.EPILOG).strip().splitlines()[0] in out.stdout
