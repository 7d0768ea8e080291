"""protos.launcher: the one way to start an agent process, read its address, kill and restart it."""
from __future__ import annotations

import os
import sys
import time

import pytest

from protos import launcher

# A stand-in agent: prints its address line, starts a child in its own process group, waits.
FAKE = ("import os, subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "open(sys.argv[2], 'w').write(str(child.pid))\n"
        "print('warming up', flush=True)\n"
        "print('listening on ' + sys.argv[1], flush=True)\n"
        "time.sleep(60)\n")


def fake(tmp_path, **kwargs) -> launcher.AgentProcess:
    script = tmp_path / "agent.py"
    script.write_text(FAKE)
    return launcher.AgentProcess(lambda listen: [sys.executable, str(script), listen, str(tmp_path / "child")],
                                 probe=False, startup_timeout=20, **kwargs)


def _gone(pid: int, within: float = 10.0) -> bool:
    end = time.monotonic() + within
    while _alive(pid) and time.monotonic() < end:
        time.sleep(0.02)
    return not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def test_address_from_the_listening_line_and_stop_ends_the_whole_group(tmp_path):
    agent = fake(tmp_path)
    assert agent.start("127.0.0.1:4242") == "127.0.0.1:4242" and agent.alive() and agent.starts == 1
    child = int((tmp_path / "child").read_text())
    assert _alive(child)
    agent.stop()
    assert not agent.alive()
    assert _gone(child), "stop() left a process of the agent's group running"


def test_kill_leaves_the_group_and_restart_keeps_the_address(tmp_path):
    agent = fake(tmp_path)
    agent.start("127.0.0.1:4243")
    child = int((tmp_path / "child").read_text())
    agent.kill(hard=True)
    assert not agent.alive() and _alive(child)          # as after a crash: jobs live on
    assert agent.restart() == "127.0.0.1:4243" and agent.starts == 2
    agent.stop()
    assert _gone(child)                                 # stop() ends every group it ever had


@pytest.mark.parametrize("log", [False, True])
def test_an_agent_that_exits_says_why(tmp_path, log):
    code = "import sys; print('cannot bind: port taken', file=sys.stderr); sys.exit(3)"
    agent = launcher.AgentProcess(lambda listen: [sys.executable, "-c", code],
                                  log_path=tmp_path / "agent.log" if log else None)
    with pytest.raises(launcher.LaunchError, match="exited with 3 before listening.*cannot bind: port taken"):
        agent.start()


def test_an_agent_that_never_prints_its_address_times_out(tmp_path):
    agent = launcher.AgentProcess(lambda listen: [sys.executable, "-c", "import time; time.sleep(30)"],
                                  startup_timeout=0.5)
    with pytest.raises(launcher.LaunchError, match="no 'listening on HOST:PORT' line within"):
        agent.start()
    assert not agent.alive()


def test_a_command_that_cannot_start_is_named(tmp_path):
    missing = str(tmp_path / "no-such-agent")
    with pytest.raises(launcher.LaunchError, match="cannot start agent.*no-such-agent"):
        launcher.AgentProcess(lambda listen: [missing]).start()
    with pytest.raises(launcher.LaunchError, match="empty"):
        launcher.AgentProcess(lambda listen: []).start()


def test_reference_agent_argv_names_every_setting(tmp_path):
    argv = launcher.reference_agent_argv("127.0.0.1:0", source=tmp_path / "s", state_dir=tmp_path / "t",
                                         slots=3, extra=["--quiet"], python="/py")
    assert argv == ["/py", "-m", "reference_agent", "serve", "--listen", "127.0.0.1:0", "--source",
                    str(tmp_path / "s"), "--state-dir", str(tmp_path / "t"), "--slots", "3", "--quiet"]
    assert os.path.basename(launcher.reference_agent_argv("x", source="s", state_dir="t")[0]).startswith("python")
