"""AGT-EXT-3/4: GetOutcome says how a job ended (exit status or signal, interpreter, times, bounded output
tails), nothing of an end before DONE, and never changes once DONE (also across a restart)."""
from __future__ import annotations

import time

import grpc

from conformance.suite_ext import _ext
from conformance.violations import covers, expect
from protos.states import JobState

EXITS = r'''import sys
sys.stdout.write("version %d.%d.%d\n" % sys.version_info[:3])
sys.stdout.write("begin\n" + "o" * 1000 + "\nout-marker {job}\n")
sys.stderr.write("err-marker {job}\n")
sys.stdout.flush(); sys.stderr.flush()
sys.exit(3)
'''
SIGNALLED = r'''import os, signal, sys
for i in range(40000):
    sys.stdout.write("%07d\n" % i)   # 320,000 bytes: more than any sensible tail
sys.stdout.flush()
os.kill(os.getpid(), signal.SIGTERM)
'''
SLOW = "import time\ntime.sleep({seconds})\n"


def _done(env, rid, job):
    env.finish(job)
    return _ext.outcome(env, rid, job)


@covers("AGT-EXT-3", needs=("outcome", "witness"))   # witness: jobs really run (what they print is checked)
def test_outcome_of_a_job_that_exited(env):
    job = env.new_id()
    entry = env.put(EXITS.format(job=job).encode())
    env.stage("AGT-EXT-3", job, [entry], [entry])
    before = int(time.time() * 1000)
    env.submit("AGT-EXT-3", job, [entry])
    o = _done(env, "AGT-EXT-3", job)
    after = int(time.time() * 1000)
    d = _ext.describe(o)
    expect("AGT-EXT-3", o.job.uuid == job.lower(), "the outcome's job id is not the job's (lower case)", d)
    expect("AGT-EXT-3", o.code == JobState.DONE, "the outcome of a DONE job does not say DONE", d)
    expect("AGT-EXT-3", o.HasField("end") and _ext.END.get(o.end) == "EXITED" and o.HasField("exit_status")
           and o.exit_status == 3 and not o.HasField("signal"),
           "a job that exited with status 3 is not EXITED with exit_status 3", d)
    expect("AGT-EXT-3", o.interpreter_version.startswith("3."), "the outcome does not name the interpreter version", d)
    # each time present and within the run (Unix ms, 5 s of clock slack); their order is not checked: a
    # wall clock may step (docs/SPEC.md, the extension's readings)
    times = [o.submitted_ms, o.started_ms, o.ended_ms]
    expect("AGT-EXT-3", all(o.HasField(f) for f in ("submitted_ms", "started_ms", "ended_ms"))
           and all(before - 5000 <= t <= after + 5000 for t in times),
           "submission, start and end times are missing or not Unix milliseconds of the run",
           f"{d}\nthe suite submitted at {before} and saw DONE by {after} (Unix ms, 5 s of clock slack)")
    expect("AGT-EXT-3", o.stdout_tail.endswith(f"out-marker {job}\n".encode())
           and o.stderr_tail.endswith(f"err-marker {job}\n".encode())
           and not o.stdout_truncated and not o.stderr_truncated,
           "the output tails are not the last bytes the job wrote (1 KB, not cut)",
           f"{d}\nstdout tail ends {o.stdout_tail[-40:]!r}, stderr tail {o.stderr_tail[-40:]!r}")
    ran = o.stdout_tail.split(b"\n", 1)[0].decode("ascii", "replace").removeprefix("version ")
    expect("AGT-EXT-3", o.interpreter_version == ran, "the outcome's interpreter version is not the one the "
           "job ran under", f"{d}\nthe job printed Python {ran}")
    for bad, code in (("not-a-uuid", grpc.StatusCode.INVALID_ARGUMENT),
                      (env.new_id(), grpc.StatusCode.NOT_FOUND)):
        got = _ext.call(env, "outcome", _ext.job_id(bad))[0]
        expect("AGT-EXT-3", got is code, "GetOutcome of a malformed or never-submitted id is not as in v1",
               f"GetOutcome({bad!r}) answered {got.name}, expected {code.name}")


@covers("AGT-EXT-3", needs=("outcome", "witness"))
def test_outcome_of_a_signalled_job_with_long_output(env):
    job = _ext.script_job(env, "AGT-EXT-3", SIGNALLED)
    running = _ext.outcome(env, "AGT-EXT-3", job)
    if running.code != JobState.DONE:
        expect("AGT-EXT-3", not running.HasField("end"), "an outcome says how a job ended before it is DONE",
               _ext.describe(running))
    o = _done(env, "AGT-EXT-3", job)
    d = _ext.describe(o)
    # The interpreter killed itself with SIGTERM: SIGNALLED 15 (AGT-EXT-3). EXITED 143 is what a
    # launcher shell's $? says, which cannot tell this job from one that called exit(143): refused.
    signalled = _ext.END.get(o.end) == "SIGNALLED" and o.signal == 15 and not o.HasField("exit_status")
    expect("AGT-EXT-3", signalled, "a job killed by SIGTERM is not SIGNALLED with signal 15"
           + (" (EXITED 143 is a launcher shell's 128 + 15, which an exit(143) also gives)"
              if _ext.END.get(o.end) == "EXITED" and o.exit_status == 143 else ""), d)
    written = b"".join(b"%07d\n" % i for i in range(40000))
    expect("AGT-EXT-3", o.stdout_truncated and 0 < len(o.stdout_tail) < len(written) and written.endswith(o.stdout_tail),
           "a 320 KB stdout is not a bounded tail of its last bytes, flagged as cut",
           f"{d}\nstdout_truncated={o.stdout_truncated}, tail of {len(o.stdout_tail)} bytes")


@covers("AGT-EXT-4", needs=("outcome",))
def test_outcome_never_changes_once_done_and_agrees_with_v1(env):
    slow = _ext.script_job(env, "AGT-EXT-4", SLOW.format(seconds=env.timing(0.6)))
    o = _ext.outcome(env, "AGT-EXT-4", slow)
    v1 = env.status("AGT-EXT-4", slow)
    expect("AGT-EXT-4", v1 >= JobState(o.code), "RunJob reports an earlier state than the outcome just did",
           f"{_ext.describe(o)}\nthen RunJob: {v1.name}")
    first = _done(env, "AGT-EXT-4", slow)
    time.sleep(env.timing(0.3))
    again = _ext.outcome(env, "AGT-EXT-4", slow)
    expect("AGT-EXT-4", first == again, "a DONE job's outcome changed", f"first:  {_ext.describe(first)}\n"
           f"later:  {_ext.describe(again)}")


@covers("AGT-EXT-4", needs=("outcome", "restart"))
def test_outcome_is_the_same_after_a_restart(env):
    job = _ext.script_job(env, "AGT-EXT-4", EXITS.format(job="x"))
    first = _done(env, "AGT-EXT-4", job)
    env.target.restart(hard=False)
    again = _ext.outcome(env, "AGT-EXT-4", job)
    expect("AGT-EXT-4", first == again, "a DONE job's outcome changed across a restart",
           f"before: {_ext.describe(first)}\nafter:  {_ext.describe(again)}")
