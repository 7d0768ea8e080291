"""The premises of a run (issue 19.1, 19.3, 19.4, 19.6, 19.7, 19.8), each over real processes: restart and
kill commands must be seen taking the agent down, a witness folder the jobs cannot write and a wrong --slots
are usage errors naming the option before any test, restart tests run last and a failing restart command
costs no other requirement its verdict, a restart command that leaves a background agent on the suite's
output does not hang it, a failed run leaves no gate files, deadlines grow with the request."""
from __future__ import annotations

import math
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from _conformance_runs import BROKEN_CMD, run_inprocess
from conformance.launcher import REFERENCE_CMD
from conformance.target import Target

FAST = REFERENCE_CMD + " --no-path-pythons"


class ServiceAgent:
    """An agent started by a shell in the background, as a service manager would (no child of this
    process, so no zombie for `kill -0`), always on the same address; `restart` is a shell command
    that stops it cleanly and starts it again, `kill` one that SIGKILLs it."""

    def __init__(self, tmp: Path, module: str = "reference_agent serve", redirect: bool = True):
        self.source, self.witness, self.state = tmp / "source", tmp / "witness", tmp / "state"
        for d in (self.source, self.witness):
            d.mkdir()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.address = f"127.0.0.1:{s.getsockname()[1]}"
        self.pidfile = tmp / "pid"
        out = f" > {tmp}/out.log 2>&1" if redirect else ""   # without: the agent keeps the caller's stdout
        self.start = (f"{sys.executable} -m {module} --listen {self.address} --source {self.source} "
                      f"--state-dir {self.state} --slots 2 --no-path-pythons{out} & echo $! > {self.pidfile}")
        self.stop = (f"kill -TERM $(cat {self.pidfile}) 2>/dev/null; while kill -0 $(cat {self.pidfile}) "
                     f"2>/dev/null; do sleep 0.05; done; ")
        self.kill = f"kill -KILL $(cat {self.pidfile}); while kill -0 $(cat {self.pidfile}) 2>/dev/null; do sleep 0.05; done"
        self.restart = self.stop + self.start

    def __enter__(self):
        subprocess.run(self.start, shell=True, check=True, timeout=30, stdout=subprocess.DEVNULL)
        Target(self.address, None).wait_reachable(60)
        return self

    def __exit__(self, *exc):
        subprocess.run(f"kill -KILL $(cat {self.pidfile}) 2>/dev/null", shell=True)

    def args(self, *extra: str) -> list[str]:
        return ["--target", self.address, "--source-dir", str(self.source), "--witness-dir", str(self.witness),
                "--slots", "2", *extra]


def _tests(run) -> dict[str, dict]:
    return {t["nodeid"].rsplit("::", 1)[-1]: t for t in run.report["tests"]}


def test_noop_restart_and_kill_commands_are_an_error_naming_the_option(tmp_path):
    """ForgetsDoneAfterRestart fails AGT-DUR-1 whenever a real restart happens; with no-op commands the
    suite used to PASS it. Now each restart test is an ERROR naming the command that did nothing."""
    module = BROKEN_CMD.split(" -m ", 1)[1].split(" --listen")[0].format(name="ForgetsDoneAfterRestart")
    with ServiceAgent(tmp_path, module) as agent:
        run = run_inprocess(agent.args("--restart-cmd", "true", "--kill-cmd", "true", "--time-scale", "0.5",
                                       "-k", "test_restart_after_sigkill or test_restart_clean"), tmp_path)
    v = run.report["requirements"]["AGT-DUR-1"]
    assert run.code == 1 and v["outcome"] == "ERROR", v
    tests = _tests(run)
    sigkill, clean = tests["test_restart_after_sigkill"], tests["test_restart_clean"]
    assert sigkill["outcome"] == "error" and "--kill-cmd 'true' returned, but the agent" in sigkill["message"]
    assert clean["outcome"] == "error" and "--restart-cmd 'true' returned, but the agent" in clean["message"]
    assert "did not go down" in v["reason"] and "PASS" not in {v["outcome"]}


def test_real_restart_commands_pass_and_leave_the_agent_serving(tmp_path):
    """The same options with commands that really restart the reference agent (the second started in the
    background with its output left on the suite's stdout, as `cmd &` in a CI script does): PASS, promptly."""
    with ServiceAgent(tmp_path, redirect=False) as agent:
        run = run_inprocess(agent.args("--restart-cmd", agent.restart, "--kill-cmd", agent.kill,
                                       "-k", "test_restart_after_sigkill or test_restart_clean"), tmp_path)
        assert Target(agent.address, None).wait_reachable(5) is None
    assert run.code == 0 and run.report["requirements"]["AGT-DUR-1"]["outcome"] == "PASS", run.report["summary"]
    assert not [n for n in run.report["notes"] if "not serving" in n]


def test_a_failing_restart_command_runs_last_and_costs_no_other_verdict(tmp_path):
    """A restart command that stops the agent and fails to start it (systemctl in a container without
    systemd): the restart test runs after every other test, whose verdicts stand; the report says the agent
    is not serving after it."""
    with ServiceAgent(tmp_path) as agent:
        broken = agent.stop + "echo 'System has not been booted with systemd' >&2; exit 1"
        run = run_inprocess(agent.args("--restart-cmd", broken, "--time-scale", "0.5", "-k",
                                       "test_restart_clean or test_stage_is_idempotent or test_at_most_n_jobs_run"
                                       " or test_first_runjob_submits_and_answers_state"), tmp_path)
    outcomes = run.outcomes()
    order = [t["nodeid"].rsplit("::", 1)[-1] for t in run.report["tests"]]
    assert order[-1] == "test_restart_clean", order
    assert outcomes["AGT-DUR-1"] == "ERROR" and "--restart-cmd" in run.report["requirements"]["AGT-DUR-1"]["reason"]
    assert "exited 1: System has not been booted with systemd" in run.report["requirements"]["AGT-DUR-1"]["reason"]
    assert outcomes["AGT-SCHED-1"] == "PASS" and outcomes["AGT-RUN-1"] in ("PASS", "PARTIAL")
    assert outcomes["AGT-STAGE-2"] in ("PASS", "PARTIAL"), outcomes
    assert any("not serving after test_restart_clean" in n for n in run.report["notes"]), run.report["notes"]


def test_a_witness_folder_the_jobs_cannot_write_is_a_usage_error(tmp_path):
    """Jobs run as nobody cannot write the suite's witness folder: exit 2 naming --witness-dir, before
    any requirement test (it used to be an AGT-SCHED-2 failure after 145 s)."""
    run = run_inprocess(["--agent-cmd", FAST + " --job-user nobody", "-k", "test_at_most_n_jobs_run"], tmp_path)
    assert run.code == 2 and run.report["tests"] == [], run.report["reason"]
    assert run.report["reason"].startswith("premise not met: --witness-dir ")
    assert "left no witness there within 8 s" in run.report["reason"]


def test_a_wrong_slot_count_is_a_usage_error(tmp_path):
    """--slots 4 for an agent with 2 slots: exit 2 naming --slots and the count the jobs showed."""
    cmd = FAST.replace("--slots {slots}", "--slots 2")
    run = run_inprocess(["--agent-cmd", cmd, "--slots", "4", "-k", "test_at_most_n_jobs_run"], tmp_path)
    assert run.code == 2 and run.report["tests"] == [], run.report["reason"]
    assert run.report["reason"].startswith("premise not met: --slots 4: only 2 of 4 jobs ran at once within 8 s")
    assert "(--slots 2?)" in run.report["reason"]


def test_a_failed_run_leaves_no_gate_files(tmp_path):
    """An agent that never starts a job fails the slot tests with gated jobs still waiting: no .gate file,
    nor any other witness of the suite's, stays in the user's witness folder."""
    module = BROKEN_CMD.split(" -m ", 1)[1].split(" --listen")[0].format(name="NeverLeavesWait")
    with ServiceAgent(tmp_path, module) as agent:
        run = run_inprocess(agent.args("--time-scale", "0.3", "-k", "test_waiting_job_starts_when_a_slot_frees"),
                            tmp_path)
        left = sorted(p.name for p in agent.witness.iterdir())
    assert run.code == 1 and run.outcomes()["AGT-SCHED-2"] == "FAIL", run.report["summary"]
    assert not [n for n in left if n.endswith(".gate")], left


def test_deadlines_grow_with_the_request_and_name_the_option():
    from conformance.target import Timing

    t = Timing(1.0)
    assert t.call_for(0, 0) == t.call
    assert t.call_for(2_500, 100_000) > t.call_for(1, 100) > t.call
    assert math.isclose(Timing(2.0).call_for(2_500, 10**6), 2 * t.call_for(2_500, 10**6))
    assert "raise --time-scale" in t.hint(15.0) and "--time-scale 1" in t.hint(15.0)


def test_determinism_sample_count_follows_from_the_math():
    """11 jobs: a uniform random choice among m >= 2 interpreters gives one interpreter to all of them with
    probability m**(1 - k) <= 2**-10 < 0.1 %; 10 jobs would not do (2**-9 > 0.1 %)."""
    from conformance.suite import test_run

    k = test_run.DETERMINISM_SAMPLES
    assert k == test_run._determinism_samples(0.001) == 11
    assert all(m ** (1 - k) <= 0.001 for m in range(2, 10)) and 2 ** (2 - k) > 0.001


@pytest.mark.parametrize("per_file", [0.002])
def test_a_slow_but_correct_agent_gets_the_time_its_request_needs(tmp_path, per_file):
    """An agent that takes 2 ms per staged file (fsync on a loaded machine) stages 2,500 files in 5 s or
    more: past the old fixed deadline at --time-scale 0.2 (3 s), within the new one, which grows with the
    request (0.2 x (15 s + 0.04 s per file) = 23 s)."""
    cmd = f"{sys.executable} {Path(__file__).with_name('_slow_agent.py')} {per_file} --listen {{listen}} " \
          f"--source {{source}} --state-dir {{state_dir}} --slots {{slots}}"
    run = run_inprocess(["--agent-cmd", cmd, "--time-scale", "0.2", "-k", "test_large_stage_request_lists_every_file"],
                        tmp_path)
    assert run.code == 0 and run.outcomes()["AGT-STAGE-1"] in ("PASS", "PARTIAL"), run.report["reason"]


def test_a_deadline_hit_says_which_option_to_raise(tmp_path):
    """An agent slower than any deadline of the suite (2 s per staged file at --time-scale 0.1): the
    error says the deadline and to raise --time-scale."""
    cmd = f"{sys.executable} {Path(__file__).with_name('_slow_agent.py')} 2 --listen {{listen}} " \
          f"--source {{source}} --state-dir {{state_dir}} --slots {{slots}}"
    run = run_inprocess(["--agent-cmd", cmd, "--time-scale", "0.1", "-k", "test_stage_is_idempotent"], tmp_path)
    assert run.code == 2 and "DEADLINE_EXCEEDED" in run.report["reason"], run.report["reason"]
    assert "raise --time-scale" in run.report["reason"] and "--time-scale 0.1" in run.report["reason"]
