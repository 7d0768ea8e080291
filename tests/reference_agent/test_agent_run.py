"""RunJob over loopback: AGT-RUN-1..9, AGT-STATE-1..3 and AGT-SCHED-1..3 with real processes."""
from __future__ import annotations

import json
import os
import threading
import time

import pytest

from agent_helpers import code_of, new_id, running_version


def output(h, job) -> str:
    return open(h.row(job).stdout).read()


def test_run_1_first_runjob_submits_and_answers_a_state(agent):
    job, entry = new_id(), agent.script("print('hi')\n")
    agent.client.stage_in(job, [entry])
    state = agent.client.run(job, [entry])
    assert state.name in ("WAIT", "RUN", "DONE")
    assert agent.wait_done(job).final.name == "DONE"
    assert output(agent, job) == "hi\n"


def test_run_2_no_files_is_invalid_and_changes_nothing(agent):
    job, entry = new_id(), agent.script("print('later')\n")
    agent.client.stage_in(job, [entry])
    assert code_of(agent.client.run, job, []) == "INVALID_ARGUMENT"
    assert code_of(agent.client.run, job, [], "3") == "INVALID_ARGUMENT"
    assert agent.core.job(job) is None
    agent.client.run(job, [entry])  # a later correct RunJob succeeds
    assert agent.wait_done(job).final.name == "DONE"


def test_run_3_unstaged_files_named_and_no_job_created(agent):
    job, entry = new_id(), agent.script("print('x')\n")
    missing, other = agent.put(b"1"), new_id()
    agent.client.stage_in(job, [entry])
    try:
        agent.client.run(job, [entry, missing.upper(), other, missing])
    except Exception as exc:  # AgentCallError
        assert exc.code_name == "FAILED_PRECONDITION"
        assert missing in exc.details and other in exc.details and entry not in exc.details
    else:
        pytest.fail("RunJob with unstaged files returned OK")
    assert agent.core.job(job) is None
    # staged for ANOTHER job does not count
    elsewhere = new_id()
    agent.client.stage_in(elsewhere, [missing])
    assert code_of(agent.client.run, job, [entry, missing]) == "FAILED_PRECONDITION"
    agent.client.stage_in(job, [missing])
    agent.client.run(job, [entry, missing])
    assert agent.wait_done(job).final.name == "DONE"


@pytest.fixture
def pythons_agent(make_agent, fake_python):
    pythons = (fake_python("3.9.18"), fake_python("3.10.4"), fake_python("3.12.1"),
               fake_python("3.14.0 candidate 1"), fake_python("3.12.1", name="python-3.12.1-second"))
    return make_agent(pythons=pythons, include_running=True)


def posed(h, job) -> str:
    h.wait_done(job)
    return output(h, job).strip()


POSED = "import os; print(os.environ.get('POSED_AS', 'real'))\n"


@pytest.mark.parametrize("requirement,expected", [
    ("3.9", "3.9.18"), ("3.10.4", "3.10.4"), (">=3.9,<3.11", "3.10.4"), ("==3.9.*", "3.9.18"),
    ("", "3.12.1"), (None, "3.12.1"), ("3", "3.12.1"), (" 3.10 ", "3.10.4"), ("~=3.9", "3.12.1"),
    (["<3.11", ">=3.9.5", ""], "3.10.4"), ([None, "3.9"], "3.9.18"), ("!=3.12.*", running_version()),
])
def test_run_4_5_requirement_matching_and_newest_choice(pythons_agent, requirement, expected):
    """AGT-RUN-4/5: bare releases are prefixes, sets AND together, the newest satisfying wins,
    the pre-release 3.14.0rc1 is never chosen, ties go to the first --python given."""
    job = pythons_agent.submit(POSED, requirement)
    got = posed(pythons_agent, job)
    assert got == ("real" if expected == running_version() else expected)
    if expected == "3.12.1":
        assert pythons_agent.row(job).interpreter.endswith("python-3.12.1")


@pytest.mark.parametrize("requirement", [">=3.14", "3.14", "==3.14.0rc1", ">=3.13", "2", "<3.9", ">=4",
                                         [">=3.10", "<3.10"]])
def test_run_4_unsatisfiable_is_failed_precondition_no_job(pythons_agent, requirement):
    h = pythons_agent
    job, entry = new_id(), h.script(POSED)
    h.client.stage_in(job, [entry])
    assert code_of(h.client.run, job, [entry], requirement) == "FAILED_PRECONDITION"
    assert h.core.job(job) is None
    h.client.run(job, [entry], python_version="3.9")  # not created: a correct RunJob still submits
    assert posed(h, job) == "3.9.18"


@pytest.mark.parametrize("requirement", ["abc", ">=", "3.x", "~=3", ">>3.9", "python3", "3.11.*", "=3.9",
                                         ["3.9", "bad"], "3..9", "3.9,"])
def test_run_4_malformed_python_version_is_invalid_argument(agent, requirement):
    job, entry = new_id(), agent.script("print(1)\n")
    agent.client.stage_in(job, [entry])
    assert code_of(agent.client.run, job, [entry], requirement) == "INVALID_ARGUMENT"
    assert agent.core.job(job) is None


def test_run_6_entry_point_cwd_files_and_no_arguments(agent):
    """AGT-RUN-6: first file runs with no arguments in the job directory holding every staged
    file (also those RunJob does not name) under its lower-case UUID."""
    job = new_id()
    data, unnamed = new_id().upper(), new_id()
    agent.put(b"data", data)
    agent.put(b"unnamed", unnamed)
    entry = agent.script("""
        import json, os, sys
        print(json.dumps({"argv": sys.argv, "cwd": os.getcwd(), "files": sorted(os.listdir("."))}))
    """)
    agent.client.stage_in(job, [entry, data, unnamed])
    agent.client.run(job, [entry, data, entry])
    agent.wait_done(job)
    seen = json.loads(output(agent, job))
    assert seen["argv"] == [entry]
    assert os.path.realpath(seen["cwd"]) == os.path.realpath(agent.state / "jobs" / job / "work")
    assert seen["files"] == sorted([entry, data.lower(), unnamed])


def test_run_7_8_repeats_are_queries_never_a_second_run(agent, tmp_path):
    """AGT-RUN-7/8: equal or empty lists query; anything else is ALREADY_EXISTS; one run ever."""
    marker = tmp_path / "runs.txt"
    job, entry = new_id(), agent.script(f"open({str(marker)!r}, 'a').write('ran\\n')\n")
    other = agent.put(b"x")
    agent.client.stage_in(job, [entry, other])
    agent.client.run(job, [entry, entry], [">=3", None])
    agent.wait_done(job)
    c = agent.client
    assert c.run(job).name == "DONE"
    assert c.run(job, [entry.upper(), entry]).name == "DONE"
    assert c.run(job, [], [">=3", ""]).name == "DONE"
    assert c.run(job, [entry, entry], [">=3", None]).name == "DONE"
    for files, reqs in (([entry], None), ([entry, entry, entry], None), ([other, entry], None),
                        ([], [">=3"]), ([], [">=3", "", ""]), ([], ["", ">=3"]), ([entry], [">=3", ""])):
        assert code_of(c.run, job, files, reqs) == "ALREADY_EXISTS", (files, reqs)
    assert code_of(c.run, job, [], "~=3") == "INVALID_ARGUMENT"  # checked on its own first
    assert code_of(c.run, job, [new_id()]) == "ALREADY_EXISTS"
    assert agent.core.counts().get("busy", 0) == 0  # no second execution started (it would hold a slot)
    assert marker.read_text() == "ran\n"
    assert len(agent.core.journal.jobs()) == 1


def test_run_8_unset_requirement_is_not_an_empty_list(agent):
    job, entry = new_id(), agent.script("pass\n")
    agent.client.stage_in(job, [entry])
    agent.client.run(job, [entry])
    assert code_of(agent.client.run, job, [], [None]) == "ALREADY_EXISTS"
    assert code_of(agent.client.run, job, [], [""]) == "ALREADY_EXISTS"
    assert code_of(agent.client.run, job, [entry], []) == "OK"


def test_run_9_concurrent_first_runjob_one_job_one_execution(agent, tmp_path):
    """AGT-RUN-9: 8 concurrent first RunJob calls: all answered, one job, one process."""
    marker = tmp_path / "concurrent.txt"
    job, entry = new_id(), agent.script(f"import os; open({str(marker)!r}, 'a').write(f'{{os.getpid()}}\\n')\n")
    agent.client.stage_in(job, [entry])
    barrier = threading.Barrier(8)
    results = []

    def submit(i):
        client = agent.client if i == 0 else type(agent.client)(agent.new_channel())
        barrier.wait()
        results.append(code_of(client.run, job.upper() if i % 2 else job, [entry]))

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["OK"] * 8
    agent.wait_done(job)
    assert agent.core.counts().get("busy", 0) == 0  # no second execution started (it would hold a slot)
    assert len(marker.read_text().split()) == 1
    assert len(agent.core.journal.jobs()) == 1


def test_state_1_2_monotonic_run_while_running_done_whatever_the_exit(agent):
    """AGT-STATE-1/2/3: WAIT/RUN/DONE never backwards; RUN while a 1.5 s job runs; a failing
    job is DONE too."""
    job = agent.submit("import time; time.sleep(1.5); raise SystemExit(7)\n")
    timeline = agent.wait_done(job)
    states = [s for _, s in timeline.points]
    assert states == sorted(states) and states[-1].name == "DONE"
    assert any(s.name == "RUN" for s in states)
    assert agent.row(job).exit_status == 7 and agent.row(job).reason == "failed"


def test_state_3_recorded_end_follows_the_process_end(agent, tmp_path):
    """AGT-STATE-3: the end the agent records is never before the job's last act and follows it
    within a bound (2 s here, loose enough for a loaded machine). The 100 ms figure is a speed, measured by bench/agent_bench.py and `agent-sim
    calibrate` (done_delay), not asserted here."""
    stamp = tmp_path / "end"
    job = agent.submit(f"import os, time\nopen({str(stamp)!r}, 'w').write(repr(time.time()))\nos._exit(0)\n")
    agent.wait_done(job)
    last_act = float(stamp.read_text())
    ended = agent.row(job).ended
    assert last_act <= ended < last_act + 2.0, (last_act, ended)


def test_sched_1_2_3_slots_fifo_and_no_starvation(make_agent, tmp_path):
    """AGT-SCHED-1..3: with 2 slots at most 2 jobs overlap, all 6 finish, starts follow submission."""
    h = make_agent(slots=2)
    log = tmp_path / "sched.log"
    code = (f"import time\nopen({str(log)!r}, 'a').write(f'start {{time.time()!r}}\\n')\ntime.sleep(0.3)\n"
            f"open({str(log)!r}, 'a').write(f'end {{time.time()!r}}\\n')\n")
    jobs = [h.submit(code) for _ in range(6)]
    busy_seen = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        counts = h.core.counts()
        busy_seen.append(counts.get("RUN", 0))
        if counts.get("DONE", 0) == 6:
            break
        time.sleep(0.02)
    assert max(busy_seen) <= 2
    for job in jobs:
        assert h.client.run(job).name == "DONE"
    starts = [h.row(j).started for j in jobs]
    assert starts == sorted(starts)
    events = sorted((float(t), kind) for kind, t in (line.split() for line in log.read_text().splitlines()))
    running = peak = 0
    for _, kind in events:
        running += 1 if kind == "start" else -1
        peak = max(peak, running)
    assert peak <= 2


@pytest.mark.parametrize("content", [b"def broken(:\n", b"\x00\xff\xfe binary", b"", b"import os; os.kill(os.getpid(), 9)\n"])
def test_state_2_any_file_content_ends_done_and_the_agent_serves_on(agent, content):
    """AGT-STATE-2 / AGT-ERR-2: a syntax error, binary bytes, an empty file or a self-kill is DONE."""
    job, entry = new_id(), agent.put(content)
    agent.client.stage_in(job, [entry])
    agent.client.run(job, [entry])
    assert agent.wait_done(job).final.name == "DONE"
    assert agent.row(job).reason == ("succeeded" if content == b"" else "failed")
    assert agent.client.stage_in(new_id(), []) == []
