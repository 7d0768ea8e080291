"""The suite end to end: passes the reference agent and the fake, reports, exit codes, expected failures."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from _conformance_runs import ROOT, FakeSource, broken_args, run_inprocess
from conformance import cli, plugin
from protos.requirements import REQUIREMENTS


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """One full run against the reference agent with the GitHub Actions command line of
    docs/CONFORMANCE.md as written (its console commands run from this checkout), with --level should
    added (the last --level wins), its Markdown summary in a file for $GITHUB_STEP_SUMMARY."""
    from _ci_docs import github_args, local

    tmp = tmp_path_factory.mktemp("reference")
    junit, summary = tmp / "junit.xml", tmp / "step-summary.md"
    args = [local(a).replace("$GITHUB_STEP_SUMMARY", str(summary)) for a in github_args()]
    # its report files in the run's folder; the JSON report where run_inprocess reads it
    args = [str(tmp / {"conformance.json": "report.json"}.get(a, a)) if a.startswith("conformance.") else a
            for a in args]
    run = run_inprocess(args + ["--level", "should", "--junitxml", str(junit)], tmp)
    return run, junit


def test_the_documented_ci_line_reaches_full_conformance(reference_run):
    """The GitHub Actions line of docs/CONFORMANCE.md gives 27/27 MUST, conformant, exit 0."""
    from _ci_docs import github_args

    args = github_args()
    assert "--max-request-bytes" in args and args[args.index("--max-request-bytes") + 1] == "4MiB"
    run, _ = reference_run
    assert run.code == 0 and run.report["summary"][0] == "MUST: 27/27 pass, conformant", run.report["summary"]
    assert run.report["verdict"] == "conformant" and run.report["conformant"] is True


def test_suite_passes_the_reference_agent(reference_run):
    run, _ = reference_run
    outcomes = run.outcomes()
    assert run.code == 0, {k: v for k, v in run.report["requirements"].items() if v["outcome"] != "PASS"}
    assert outcomes == {rid: "PASS" for rid in REQUIREMENTS}
    assert run.report["conformant"] is True and run.report["summary"][0] == "MUST: 27/27 pass, conformant"


def test_reports_carry_requirement_ids_and_timelines(reference_run):
    run, junit = reference_run
    assert run.report["suite_version"] and run.report["protocol"] == "v1"
    assert any(t["timelines"] for t in run.report["tests"])
    props = {(p.get("name"), p.get("value")) for p in ET.parse(junit).iter("property")}
    assert {("requirement", rid) for rid in REQUIREMENTS} <= props


def test_suite_passes_the_fake_agent(tmp_path):
    """The FakeAgent runs no process, so the witness, slot and restart checks are SKIP; every
    requirement the suite can check without them passes."""
    from fakes import AfterPolls, FakeAgent

    fake = FakeAgent(progression=AfterPolls(wait=1, run=3))
    report = tmp_path / "fake.json"
    ini = tmp_path / "pytest.ini"
    ini.write_text("[pytest]\n")
    with fake.serve() as address:
        code = pytest.main([str(ROOT / "conformance" / "suite"), "-c", str(ini), "--rootdir", str(ROOT / "conformance"),
                            "-p", "conformance.plugin", "-p", "no:cacheprovider", "-q", f"{plugin.TARGET}={address}", f"{plugin.LEVEL}=should",
                            f"{plugin.REPORT_JSON}={report}"], plugins=[FakeSource(fake)])
    data = json.loads(report.read_text())
    outcomes = {rid: v["outcome"] for rid, v in data["requirements"].items()}
    assert code == 0, {rid: v["reason"] for rid, v in data["requirements"].items() if v["outcome"] != "PASS"}
    assert not [rid for rid, o in outcomes.items() if o in ("FAIL", "ERROR")]
    passed = {rid for rid, o in outcomes.items() if o in ("PASS", "PARTIAL")}
    partial = {rid: v["reason"] for rid, v in data["requirements"].items() if v["outcome"] == "PARTIAL"}
    assert all("needs --" in why for why in partial.values()), partial
    assert {"AGT-WIRE-1", "AGT-WIRE-2", "AGT-ID-1", "AGT-ID-2", "AGT-ID-3", "AGT-STAGE-1", "AGT-STAGE-2",
            "AGT-STAGE-4", "AGT-STAGE-5", "AGT-RUN-1", "AGT-RUN-2", "AGT-RUN-3", "AGT-RUN-4", "AGT-RUN-5",
            "AGT-RUN-7", "AGT-RUN-8", "AGT-RUN-9", "AGT-STATE-1", "AGT-ERR-1", "AGT-ERR-2"} <= passed
    skipped = {rid: v["reason"] for rid, v in data["requirements"].items() if v["outcome"] == "SKIP"}
    assert all("needs --" in why for why in skipped.values()), skipped


def test_expected_failures_file_turns_a_known_failure_green(tmp_path):
    expected = tmp_path / "expected.txt"
    args = broken_args("OkWithoutCode") + ["-k", "test_ok_answers_carry_required_fields"]
    junit = tmp_path / "junit.xml"
    first = run_inprocess(args + ["--expected-failures", str(expected), "--update-expected", "--junitxml", str(junit)],
                          tmp_path)
    assert first.code == 1 and first.failed() == {"AGT-WIRE-2"}
    props = {(p.get("name"), p.get("value")) for p in ET.parse(junit).iter("property")}
    assert ("violated", "AGT-WIRE-2") in props and ("requirement", "AGT-WIRE-2") in props
    lines = [ln for ln in expected.read_text().splitlines() if not ln.startswith("#")]
    assert lines == ["AGT-WIRE-2  # OK RunJobResponse without a valid code"]
    second = run_inprocess(args + ["--expected-failures", str(expected)], tmp_path)
    assert second.code == 0 and second.report["requirements"]["AGT-WIRE-2"]["expected"] is True
    expected.write_text("AGT-WIRE-2  # some other message\n")
    assert run_inprocess(args + ["--expected-failures", str(expected)], tmp_path).code == 1
    expected.write_text("AGT-WIRE-2  # OK RunJobResponse\nAGT-ID-1  # listed but passing\n")
    third = run_inprocess(args + ["--expected-failures", str(expected), "-k",
                                  "test_ok_answers_carry_required_fields or test_malformed_uuids"], tmp_path)
    assert third.code == 1 and third.report["unexpected_passes"] == ["AGT-ID-1"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_target_exits_2(tmp_path, capsys):
    code = cli.main(["--target", f"127.0.0.1:{_free_port()}", "--source-dir", str(tmp_path), "--time-scale", "0.1",
                     "-k", "test_stage_is_idempotent"])
    out = capsys.readouterr().out
    assert code == 2 and out.count("not reachable") == 1, out   # reported once


@pytest.mark.parametrize("args, message", [
    (["--target", "nohost"], "--target 'nohost': expected HOST:PORT"),
    (["--target", "127.0.0.1:5"], "--target needs --source-dir or --put-cmd"),
    (["--slots", "-3"], "--slots '-3'"),
    (["--time-scale", "fast"], "--time-scale 'fast'"),
    (["--level", "MAYBE"], "--level 'MAYBE'"),
    (["--agent-cmd", "my-agent --port 1"], "no {listen} placeholder"),
    (["--expected-failures", "/nonexistent/expected.txt"], "no such file"),
    (["--junitxml", "/nonexistent/dir/j.xml"], "folder does not exist"),
    (["--hypothesis-profile", "huge"], "expected ci or deep"),
])
def test_malformed_options_exit_2_naming_the_value(args, message, capsys):
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("usage: agent-conformance")


def test_malformed_expected_file_exits_2(tmp_path, capsys):
    bad = tmp_path / "expected.txt"
    bad.write_text("AGT-WIRE-9  # no such requirement\n")
    assert cli.main(["--expected-failures", str(bad)]) == 2
    assert "expected.txt:1: 'AGT-WIRE-9' is not a requirement ID" in capsys.readouterr().err


def test_console_script_exit_code_and_help():
    script = Path(sys.executable).parent / "agent-conformance"
    done = subprocess.run([str(script), "--slots", "many"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--slots 'many'" in done.stderr
    done = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "examples:" in done.stdout and "exit codes" in done.stdout


def test_plugin_is_inert_without_its_options(tmp_path):
    (tmp_path / "test_plain.py").write_text("def test_one():\n    assert 1 + 1 == 2\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", str(tmp_path)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0 and "1 passed" in done.stdout
    assert "agent-conformance" not in done.stdout and "MUST" not in done.stdout
    done = subprocess.run([sys.executable, "-m", "pytest", "--help"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, env=env)
    assert plugin.TARGET not in done.stdout and "agent-conformance" not in done.stdout   # not loaded by itself
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "conformance.plugin", "--help"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, env=env)
    assert plugin.TARGET in done.stdout and plugin.WITNESS_DIR in done.stdout   # asked for: every option


def _cert(common_name, issuer=None, ca=False):
    """(certificate, key, PEM certificate, PEM key) for 127.0.0.1, signed by `issuer` or itself."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    issuer_name, issuer_key = (issuer[0].subject, issuer[1]) if issuer else (name, key)
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer_name).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(hours=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    cert = builder.sign(issuer_key, hashes.SHA256())
    pem_key = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert, key, cert.public_bytes(serialization.Encoding.PEM), pem_key


def test_mutual_tls_target_and_put_cmd(tmp_path):
    """--target with --tls-ca/--tls-cert/--tls-key against a reference agent that requires client
    certificates, its inputs put by --put-cmd; without the client certificate: exit 2."""
    from conformance.launcher import REFERENCE_CMD, AgentProcess

    ca = _cert("test CA", ca=True)
    server, client = _cert("agent", issuer=ca), _cert("suite", issuer=ca)
    files = {"ca.pem": ca[2], "server.pem": server[2], "server.key": server[3],
             "client.pem": client[2], "client.key": client[3]}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    source = tmp_path / "source"
    source.mkdir()
    cmd = (REFERENCE_CMD + f" --no-path-pythons --tls-cert {tmp_path / 'server.pem'} --tls-key {tmp_path / 'server.key'}"
           f" --tls-client-ca {tmp_path / 'ca.pem'}")
    agent = AgentProcess(cmd, source=str(source), state_dir=str(tmp_path / "state"), slots=2, insecure_probe=False)
    agent.start()
    try:
        base = ["--target", agent.address, "--put-cmd", f"cp {{path}} {source}/{{uuid}}", "--tls-ca",
                str(tmp_path / "ca.pem"), "-k", "test_stage_lists_staged_files_once_in_request_order"]
        run = run_inprocess(base + ["--tls-cert", str(tmp_path / "client.pem"), "--tls-key", str(tmp_path / "client.key")],
                            tmp_path)
        assert run.code == 0 and run.outcomes()["AGT-STAGE-1"] == "PARTIAL", run.report   # -k: not every test ran
        assert "deselected (-k)" in run.report["requirements"]["AGT-STAGE-1"]["reason"]
        assert cli.main(base + ["--time-scale", "0.1"]) == 2   # the agent refuses a client without certificate
    finally:
        agent.stop()


def test_two_runs_in_a_row_against_one_agent_both_pass(tmp_path):
    """Fresh UUIDs everywhere: a second run against the same agent (same source, same witness
    folder) passes as the first did, and the suite leaves no inputs or witness files behind."""
    from conformance.launcher import REFERENCE_CMD, AgentProcess

    source, witness = tmp_path / "source", tmp_path / "witness"
    source.mkdir()
    witness.mkdir()
    agent = AgentProcess(REFERENCE_CMD + " --no-path-pythons", source=str(source), state_dir=str(tmp_path / "state"),
                         slots=2)
    agent.start()
    try:
        args = ["--target", agent.address, "--source-dir", str(source), "--witness-dir", str(witness), "--slots", "2",
                "-k", "stateful or test_stage_is_idempotent or at_most_n"]
        for attempt in (1, 2):
            run = run_inprocess(args, tmp_path)
            assert run.code == 0, (attempt, run.report["summary"])
            assert {k for k, v in run.outcomes().items() if v in ("PASS", "PARTIAL")} >= {"AGT-STAGE-2", "AGT-RUN-8",
                                                                                        "AGT-SCHED-1"}
        assert not list(source.iterdir()) and not list(witness.iterdir())
    finally:
        agent.stop()
