"""Issue 11 item 5: per-job cgroups. A process that leaves the job's session (setsid, double
fork) is still killed when the job ends or is killed, also after the agent was SIGKILLed and
restarted (adopted jobs, and jobs that ended while it was down)."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

from agent_helpers import new_id
from protos import launcher
from protos.client import AgentClient
from reference_agent.cgroups import Cgroups, _mounts, _own_paths

ESCAPER = """
import os, time
r, w = os.pipe()
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.write(w, str(os.getpid()).encode())
        os.close(w)
        time.sleep(300)
        os._exit(0)
    os._exit(0)
os.close(w)
pid = int(os.read(r, 32))
open("escaper.pid", "w").write(str(pid))
print("escaper", pid, flush=True)
time.sleep({hold})
"""


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def _gone(pid: int, within: float = 10.0) -> bool:
    end = time.monotonic() + within
    while time.monotonic() < end:
        if not _alive(pid):
            return True
        time.sleep(0.02)
    return False


def _escaper_pid(workdir: Path, within: float = 20.0) -> int:
    end = time.monotonic() + within
    while time.monotonic() < end:
        try:
            return int((workdir / "escaper.pid").read_text())
        except (OSError, ValueError):
            time.sleep(0.02)
    raise AssertionError(f"no escaper.pid in {workdir}")


def _reap(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


def _machine_refuses_cgroups(tmp_path: Path) -> bool:
    """Whether this machine refuses the agent's cgroups (not whether some agent uses them)."""
    probe = Cgroups.find(tmp_path / "probe")
    if probe is not None:
        probe.close()
    return probe is None


def _cgroups_or_skip(core) -> None:
    if _machine_refuses_cgroups(core.root):
        pytest.skip("cgroups refused on this machine (no writable cgroup v2 with cgroup.kill, "
                    "nor v1 pids/memory under this process's cgroup)")
    assert core.containment.name == "cgroup", core.containment.describe()


def test_a_setsid_escaper_is_killed_when_its_job_ends(agent):
    _cgroups_or_skip(agent.core)
    job = agent.submit(ESCAPER.format(hold=0))
    assert agent.wait_done(job).final.name == "DONE"
    escaper = _escaper_pid(agent.state / "jobs" / job / "work")
    try:
        assert _gone(escaper), f"process {escaper} that called setsid outlived its job"
        assert agent.row(job).exit_status == 0
        assert not any(h.job_dir(job).exists() for h in agent.core.containment.cgroups.hierarchies)
    finally:
        _reap(escaper)


def test_a_setsid_escaper_is_killed_with_its_job_at_the_time_limit(make_agent):
    agent = make_agent(job_timeout=1.5)
    _cgroups_or_skip(agent.core)
    job = agent.submit(ESCAPER.format(hold=120))
    escaper = _escaper_pid(agent.state / "jobs" / job / "work")
    try:
        assert agent.wait_done(job).final.name == "DONE"
        assert agent.row(job).reason == "killed"
        assert _gone(escaper)
    finally:
        _reap(escaper)


def test_the_process_limit_counts_processes_outside_the_session(make_agent):
    """Escapers are counted: 6 setsid sleepers break a limit of 4 (the census did not see them)."""
    agent = make_agent(limit_processes=4, job_timeout=60)
    _cgroups_or_skip(agent.core)
    job = agent.submit("""
        import os, time
        for _ in range(6):
            if os.fork() == 0:
                os.setsid()
                time.sleep(120)
                os._exit(0)
        time.sleep(120)
    """)
    assert agent.wait_done(job, deadline=30).final.name == "DONE"
    assert agent.row(job).note == "killed: processes"


def test_memory_limit_covers_the_whole_job(make_agent):
    agent = make_agent(limit_memory=64 * 1024 ** 2)
    _cgroups_or_skip(agent.core)
    if "memory" not in {h.kind for h in agent.core.containment.cgroups.hierarchies}:
        pytest.skip("no cgroup v1 memory hierarchy usable here (the v2 one has no memory controller)")
    job = agent.submit("""
        blocks = [bytearray(16 * 1024 * 1024) for _ in range(16)]  # 256 MiB, touched
        print("allocated", sum(len(b) for b in blocks))
    """)
    agent.wait_done(job)
    row = agent.row(job)
    assert row.exit_status != 0 and "allocated" not in open(row.stdout).read()


class _Served:
    """`reference-agent serve` as a process (protos.launcher), to SIGKILL and restart."""

    def __init__(self, tmp: Path, extra=()):
        self.source, self.state = tmp / "source", tmp / "state"
        self.source.mkdir(exist_ok=True)
        self.agent = launcher.reference_agent(self.source, self.state, 2, ["--no-path-pythons", *extra],
                                              log_path=tmp / "agent.stderr", startup_timeout=60)
        self.log = tmp / "agent.stderr"
        self.connect()

    def connect(self) -> None:
        self.address = self.agent.start("127.0.0.1:0")
        self.channel = grpc.insecure_channel(self.address)
        self.client = AgentClient(self.channel, timeout=20)

    def submit(self, code: str) -> str:
        job, entry = new_id(), new_id()
        (self.source / entry).write_text(code)
        assert self.client.stage_in(job, [entry]) == [entry]
        self.client.run(job, [entry])
        return job

    def sigkill(self) -> None:
        self.channel.close()
        self.agent.kill(hard=True)

    def close(self) -> None:
        self.channel.close()
        self.agent.kill(hard=True)

    def wait_done(self, job: str) -> None:
        assert self.client.wait_until_done(job, poll_interval=0.02, deadline=60).final.name == "DONE"

    def note(self, job: str) -> str | None:
        with sqlite3.connect(self.state / "journal.sqlite3") as db:
            return db.execute("SELECT note FROM jobs WHERE job=?", (job,)).fetchone()[0]


def test_leftovers_of_jobs_are_killed_after_the_agent_was_sigkilled(tmp_path):
    served = _Served(tmp_path)
    escapers: list[int] = []
    try:
        if _machine_refuses_cgroups(tmp_path):
            pytest.skip("cgroups refused on this machine")
        assert "per-job cgroups" in served.log.read_text()
        adopted = served.submit(ESCAPER.format(hold=3))         # still running at the restart
        ended = served.submit(ESCAPER.format(hold=0.5))         # ends while the agent is down
        escapers = [_escaper_pid(served.state / "jobs" / j / "work") for j in (adopted, ended)]
        served.sigkill()  # no cleanup by the old agent
        time.sleep(1.5)   # `ended` ends while the agent is down; `adopted` is still running
        served.connect()
        served.wait_done(ended)
        assert served.note(ended) == "ended while the agent was down"
        assert _gone(escapers[1]), "the escaper of a job that ended while the agent was down survived"
        served.wait_done(adopted)
        assert _gone(escapers[0]), "the escaper of an adopted job survived its end"
    finally:
        served.close()
        for pid in escapers:
            _reap(pid)


def test_serve_says_which_containment_is_in_use(tmp_path):
    (tmp_path / "a").mkdir()
    served = _Served(tmp_path / "a")
    try:
        text = served.log.read_text()
        assert "jobs contained by" in text
        assert "per-job cgroups" in text or "process sessions" in text
    finally:
        served.close()
    (tmp_path / "b").mkdir()
    fallback = _Served(tmp_path / "b", ["--no-cgroups"])
    try:
        assert "jobs contained by process sessions" in fallback.log.read_text()
    finally:
        fallback.close()


def test_help_names_the_containment_options():
    out = subprocess.run([sys.executable, "-m", "reference_agent", "serve", "--help"],
                         capture_output=True, text=True, timeout=60).stdout
    assert "--no-cgroups" in out and "--limit-memory" in out and "setsid" in out


MOUNTINFO = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:36 /sub /elsewhere rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""


def test_mounts_and_own_paths_are_parsed():
    assert _mounts(MOUNTINFO) == {"memory": Path("/sys/fs/cgroup/memory"), "pids": Path("/sys/fs/cgroup/pids"),
                                  "v2": Path("/sys/fs/cgroup/unified")}
    assert _own_paths("8:pids:/\n4:memory:/a/b\n0::/user.slice\n") == {"pids": "/", "memory": "/a/b",
                                                                       "v2": "/user.slice"}


def test_no_cgroups_where_none_are_mounted(tmp_path):
    (tmp_path / "mountinfo").write_text("1 0 0:1 / / rw - ext4 /dev/vda rw\n")
    (tmp_path / "cgroup").write_text("0::/\n")
    assert Cgroups.find(tmp_path / "state", proc=tmp_path) is None
    assert Cgroups.find(tmp_path / "state", proc=tmp_path / "missing") is None


def test_empty_cgroups_of_killed_agents_are_removed_but_not_young_or_busy_ones(tmp_path):
    """On plain directories: rmdir removes only empty ones, as on a cgroup file system."""
    from reference_agent.cgroups import PREFIX, _remove_empty_siblings

    ours, old_empty, young, busy = (tmp_path / f"{PREFIX}{n}" for n in ("ours", "old", "young", "busy"))
    for directory in (ours, old_empty, young, busy / new_id()):
        directory.mkdir(parents=True)
    (busy / new_id()).mkdir()
    (busy / "a-file").write_text("x")  # stands for a job cgroup with processes: rmdir refuses
    unrelated = tmp_path / "someone-else"
    unrelated.mkdir()
    past = time.time() - 3600
    for directory in (old_empty, busy, *busy.iterdir(), unrelated):
        if directory.is_dir():
            os.utime(directory, (past, past))
    _remove_empty_siblings(ours)
    assert not old_empty.exists() and young.exists() and busy.exists() and unrelated.exists()
    assert not [p for p in busy.iterdir() if p.is_dir()]  # its empty, old job directories went
