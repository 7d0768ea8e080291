"""AGT-RUN-7..9: repeats are status queries, never a second execution; mismatches; concurrent submits."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import grpc

from conformance import wire
from conformance.env import OK
from conformance.violations import covers, expect
from protos.states import JobState

EXISTS = grpc.StatusCode.ALREADY_EXISTS


@covers("AGT-RUN-7")
def test_repeat_is_a_status_query(env):
    job = env.new_id()
    entry = env.script(job, sleep=0.2)
    data = env.put(b"d")
    env.stage("AGT-RUN-7", job, [entry, data], [entry, data])
    env.submit("AGT-RUN-7", job, [entry, data], ["3"])
    variants = (([], []), ([entry, data], []), ([], ["3"]), ([entry, data], ["3"]))
    for _ in range(3):
        for files, reqs in variants:
            env.expect_code("AGT-RUN-7", env.run_call(job, files, reqs, via="repeat"), OK,
                            "a repeat RunJob equal to the submission is not answered as a status query")
    env.finish(job)
    for files, reqs in variants:
        reply = env.run_call(job, files, reqs, via="repeat")
        expect("AGT-RUN-7", reply.ok and reply.state is JobState.DONE, "a repeat after DONE did not answer DONE",
               lambda: f"{reply.describe()}\nexpected: OK, code DONE\ntimeline: {env.timeline(job)}")


@covers("AGT-RUN-7", needs=("witness",))
def test_repeat_never_runs_again(env):
    job = env.new_id()
    entry = env.script(job)
    env.stage("AGT-RUN-7", job, [entry], [entry])
    env.submit("AGT-RUN-7", job, [entry])
    for _ in range(5):
        env.run_call(job, [entry], via="repeat")
    env.finish(job)
    for _ in range(5):
        env.run_call(job, [entry], via="repeat")
        env.run_call(job.upper(), [entry.upper()], via="repeat")
    env.expect_one_run("AGT-RUN-7", job)


@covers("AGT-RUN-8")
def test_repeat_equal_lists_are_status_queries(env):
    job = env.new_id()
    entry = env.script(job, sleep=0.2)
    a = env.put(b"a")
    env.stage("AGT-RUN-8", job, [entry, a], [entry, a])
    files = [entry, a, entry]             # duplicates kept
    pv = env.target.python_version
    env.submit("AGT-RUN-8", job, files, [pv, None])   # an unset python_version counts as ""
    for f, r in ((files, []), ([], [pv, ""]), (files, [pv, ""]), ([], [pv, None])):
        env.expect_code("AGT-RUN-8", env.run_call(job, f, r, via="repeat"), OK,
                        "a repeat with lists equal to the submission's is not a status query",
                        "files as ordered lower-case UUIDs with duplicates; requirements as ordered strings, "
                        "an unset python_version counting as ''")
    env.finish(job)


@covers("AGT-RUN-8")
def test_repeat_with_other_lists_is_already_exists(env):
    job = env.new_id()
    entry = env.script(job, gate=env.witness is not None, sleep=0 if env.witness is not None else 0.3)
    a, b = env.put(b"a"), env.put(b"b")
    env.stage("AGT-RUN-8", job, [entry, a, b], [entry, a, b])
    files, pv = [entry, a, entry], env.target.python_version
    env.submit("AGT-RUN-8", job, files, [pv, ""])
    mismatches = (
        ([entry, a], [], "duplicates dropped"), ([a, entry, entry], [], "reordered"),
        ([entry, a, entry, entry], [], "one more"), ([entry], [], "a prefix"), ([entry, a, b], [], "another file"),
        ([], [pv], "fewer requirements"), ([], ["", pv], "requirements reordered"),
        ([], [pv, "", ""], "one more requirement"), ([], [" " + pv, ""], "requirement text differs"),
        (files, [pv], "equal files, other requirements"), ([entry, b, entry], [pv, ""], "other files, equal requirements"),
    )
    for f, r, what in mismatches:
        env.expect_code("AGT-RUN-8", env.run_call(job, f, r, via="repeat"), EXISTS,
                        f"a repeat RunJob with other files or requirements is not ALREADY_EXISTS ({what})")
        env.expect_code("AGT-RUN-8", env.run_call(job, files, [pv, ""], via="repeat"), OK,
                        "after ALREADY_EXISTS the job no longer matches its own submission (it was changed)")
    if env.witness is not None:
        env.witness.open_gate(job)
    env.finish(job)
    if env.witness is None:
        env.not_checked("AGT-RUN-8", "that a refused repeat did not start the job again", "--witness-dir")
    else:
        env.expect_one_run("AGT-RUN-8", job, "a refused repeat started the job again")
        expect("AGT-RUN-8", env.runs(job)[0].mark == "entry", "the job ran other files than submitted")


@covers("AGT-RUN-9")
def test_concurrent_first_runjobs_create_one_job(env):
    jobs_, threads = [], 8
    for _ in range(3):
        job = env.new_id()
        entry = env.script(job, sleep=0.1)
        env.stage("AGT-RUN-9", job, [entry], [entry])
        jobs_.append((job, entry))
    for job, entry in jobs_:
        barrier = threading.Barrier(threads)

        def submit(job=job, entry=entry, barrier=barrier):
            barrier.wait(timeout=env.timing(10))
            # raw calls, not observed one by one: answers of simultaneous calls arrive in any order
            return env.target.call(wire.RUN_METHOD, wire.run_request(job, [entry]))

        with ThreadPoolExecutor(threads) as pool:
            results = list(pool.map(lambda _: submit(), range(threads)))
        for code, _, raw in results:
            if code is OK:
                expect("AGT-WIRE-2", wire.decode_run_response(raw)[0] is not None,
                       "OK RunJobResponse without a valid code", wire.decode_run_response(raw)[1])
        bad = [(code.name, details) for code, details, _ in results if code is not OK]
        expect("AGT-RUN-9", not bad, "concurrent identical first RunJobs did not all return OK",
               f"job {job}: {threads} simultaneous RunJob(job, [{entry}]) -> non-OK answers {bad}")
        env.confirm_created(job)
    if env.witness is None:
        env.not_checked("AGT-RUN-9", "that concurrent first RunJobs started one execution", "--witness-dir")
    for job, _ in jobs_:
        env.finish(job)
        if env.witness is not None:
            env.expect_one_run("AGT-RUN-9", job, "concurrent first RunJobs started more than one execution")
