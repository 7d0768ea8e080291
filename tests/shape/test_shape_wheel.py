"""The wheel, installed with each extra in a fresh virtual environment outside the checkout, runs
every console command it promises (--help and a short real run) and pulls nothing it should not."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("simpy", "numpy", "matplotlib", "rich", "dask", "fsspec", "prometheus_client", "grpc_health")


def _run(argv, *, cwd, timeout=300, env=None, check=True) -> subprocess.CompletedProcess:
    # a clean environment: nothing of the checkout on PYTHONPATH, no way back to /work/main
    base = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTEST_ADDOPTS")}
    base.update(env or {})
    out = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=base)
    if check and out.returncode != 0:
        raise AssertionError(f"{argv} exited {out.returncode}\nstdout:\n{out.stdout[-3000:]}\n"
                             f"stderr:\n{out.stderr[-3000:]}")
    return out


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # a copy of the sources (tracked, and new files not ignored), so that a build never writes
    # into the checkout
    src = out / "src"
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)], cwd=out)
    (found,) = out.glob("agent_protocol_toolkit-*.whl")
    return found


def venv_with(wheel: Path, extra: str, where: Path) -> Path:
    """A fresh venv at `where` with the wheel and `extra` installed; its bin folder."""
    _run([sys.executable, "-m", "venv", "--without-pip", str(where)], cwd=where.parent)
    spec = f"{wheel}[{extra}]" if extra else str(wheel)
    _run([sys.executable, "-m", "pip", "--python", str(where / "bin" / "python"), "install", "-q",
          "--disable-pip-version-check", spec], cwd=where.parent, timeout=600)
    return where / "bin"


def installed(bin_dir: Path, cwd: Path) -> set[str]:
    code = ("import importlib.util, json; print(json.dumps([m for m in %r if importlib.util.find_spec(m)]))"
            % (HEAVY,))
    return set(json.loads(_run([str(bin_dir / "python"), "-c", code], cwd=cwd).stdout))


ROUND_TRIP = textwrap.dedent("""
    import sys, tempfile, uuid
    from pathlib import Path
    from protos import launcher
    from protos.client import AgentClient
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp, "source"); source.mkdir()
        with launcher.reference_agent(source, Path(tmp, "state"), 1, ["--quiet"]) as agent:
            job, f = str(uuid.uuid4()), str(uuid.uuid4())
            (source / f).write_text("print('ran')\\n")
            client = AgentClient.connect(agent.address)
            assert client.stage_in(job, [f]) == [f]
            client.run(job, [f])
            print(client.wait_until_done(job, poll_interval=0.05, deadline=60).final.name)
""")

CLIENT_TEST = textwrap.dedent("""
    import uuid
    from protos.client import AgentClient
    from protos.states import JobState

    def test_fake_agent_runs_a_job(fake_agent):
        client, job = AgentClient.connect(fake_agent.address), str(uuid.uuid4())
        f = fake_agent.source.add(b"print(1)")
        assert client.stage_in(job, [f]) == [f]
        client.run(job, [f])
        assert client.wait_until_done(job, poll_interval=0, deadline=5).final is JobState.DONE
""")


def test_core_is_the_client_developers_install(wheel, tmp_path):
    """Core: the protocol layer, the client and the fakes; no simulator or agent dependencies;
    the pytest plugins stay silent in a project that does not ask for them."""
    bin_dir = venv_with(wheel, "", tmp_path / "venv")
    assert installed(bin_dir, tmp_path) == set()
    project = tmp_path / "project"
    project.mkdir()
    (project / "test_client.py").write_text(CLIENT_TEST)
    out = _run([str(bin_dir / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=project).stdout
    assert "1 passed" in out
    header = _run([str(bin_dir / "python"), "-m", "pytest", "--collect-only", "-p", "no:cacheprovider"],
                  cwd=project).stdout
    before = header.split("collected")[0].splitlines()
    ours = [line for line in before if line.strip() and not line.startswith(
        ("=", "platform ", "rootdir:", "configfile:", "plugins:", "cachedir:", "hypothesis profile"))]
    assert not ours, f"header lines added by the toolkit's plugins: {ours}"
    shutil.copy(ROOT / "examples" / "demo.toml", tmp_path / "demo.toml")
    # without their extra, the commands say what to install (exit 2), never a traceback; the
    # conformance suite itself runs on the core, and says why its embedded reference agent
    # cannot start
    real_runs = {
        "reference-agent": (["serve", "--listen", "127.0.0.1:0", "--source", str(tmp_path),
                             "--state-dir", str(tmp_path / "state")], "pip install 'agent-protocol-toolkit[agent]'"),
        "agent-conformance": (["--only", "AGT-ID-1"], "pip install 'agent-protocol-toolkit[agent]'"),
        "agent-sim": (["run", "demo.toml", "--out", str(tmp_path / "out")], "pip install 'agent-protocol-toolkit[sim]'"),
    }
    for command, (args, expected) in real_runs.items():
        helped = _run([str(bin_dir / command), "--help"], cwd=tmp_path, check=False)
        assert (helped.returncode, "usage:" in helped.stdout) == (0, True) or helped.returncode == 2, helped
        out = _run([str(bin_dir / command), *args], cwd=tmp_path, check=False, timeout=60)
        assert out.returncode == 2 and expected in out.stdout + out.stderr, out
        assert "Traceback" not in out.stderr + helped.stderr
    helptext = _run([str(bin_dir / "python"), "-m", "pytest", "--help"], cwd=project).stdout
    assert "--agent-target" not in helptext and "conformance" not in helptext.lower()


def test_agent_extra_runs_the_reference_agent(wheel, tmp_path):
    bin_dir = venv_with(wheel, "agent", tmp_path / "venv")
    assert installed(bin_dir, tmp_path) == {"fsspec", "prometheus_client", "grpc_health"}
    for sub in ((), ("serve",), ("jobs",), ("job",)):
        assert "usage:" in _run([str(bin_dir / "reference-agent"), *sub, "--help"], cwd=tmp_path).stdout
    assert _run([str(bin_dir / "python"), "-c", ROUND_TRIP], cwd=tmp_path).stdout.strip() == "DONE"
    assert "usage:" in _run([str(bin_dir / "python"), "-m", "fakes.broken", "--help"], cwd=tmp_path).stdout


def test_conformance_extra_checks_the_embedded_agent(wheel, tmp_path):
    bin_dir = venv_with(wheel, "conformance", tmp_path / "venv")
    assert "simpy" not in installed(bin_dir, tmp_path)
    assert "usage:" in _run([str(bin_dir / "agent-conformance"), "--help"], cwd=tmp_path).stdout
    out = _run([str(bin_dir / "agent-conformance"), "--only", "AGT-ID-*", "--report-json", "r.json"],
               cwd=tmp_path, timeout=300)
    report = json.loads((tmp_path / "r.json").read_text())
    assert "AGT-ID-1" in out.stdout and report, out.stdout


def test_sim_extra_simulates_and_calibrates(wheel, tmp_path):
    bin_dir = venv_with(wheel, "sim", tmp_path / "venv")
    assert {"simpy", "numpy", "matplotlib"} <= installed(bin_dir, tmp_path)
    sim = str(bin_dir / "agent-sim")
    help_text = _run([sim, "--help"], cwd=tmp_path).stdout
    commands = [c for c in ("run", "sweep", "plan", "validate", "calibrate", "replay") if c in help_text]
    assert len(commands) == 6, help_text
    for command in commands:
        assert "usage:" in _run([sim, command, "--help"], cwd=tmp_path).stdout
    shutil.copy(ROOT / "examples" / "demo.toml", tmp_path / "demo.toml")
    _run([sim, "run", "demo.toml", "--out", "out"], cwd=tmp_path)
    assert (tmp_path / "out" / "summary.json").is_file()
    _run([sim, "calibrate", "--quick", "--out", "cal.toml"], cwd=tmp_path, timeout=300)
    assert "[clients]" in (tmp_path / "cal.toml").read_text()
