"""AGT-EXT-5/6: CancelJob ends a WAIT job before it starts (durably, also across a restart) and a RUN job's
whole process tree within a bounded delay; a cancelled job is DONE for v1, frees its slot, never runs again;
a cancel racing a job's end gives one outcome."""
from __future__ import annotations

import time

from conformance.suite_ext import _ext
from conformance.violations import covers, expect
from protos.states import JobState

# A job that starts a child process which appends a heartbeat to the witness folder every 50 ms: once the
# job's process tree is gone, the heartbeat file stops growing.
TREE = r'''import os, subprocess, sys, time
W, JOB = {witness!r}, {job!r}
GATE = os.path.join(W, JOB + ".gate")   # opened by the suite's cleanup: both processes then end
child = """import os, time
end = time.time() + 60
while time.time() < end and not os.path.exists(%r):
    with open(%r, "a") as f:
        f.write("x")
    time.sleep(0.05)
""" % (GATE, os.path.join(W, JOB + ".beat"))
subprocess.Popen([sys.executable, "-c", child])
end = time.time() + 60
while time.time() < end and not os.path.exists(GATE):
    time.sleep(0.05)
'''
BOUND = 5.0   # seconds (times --time-scale) for a cancelled RUN job to be DONE: the contract's "bounded delay"


def _fill(env, rid):
    """A gated job in every slot. One that does not start breaks AGT-EXT-6 once a RUN job was cancelled in
    this run (its slot was kept), AGT-SCHED-2 before that."""
    gated = [env.job(rid, gate=True) for _ in range(env.target.slots)]
    kept = env.target.cancelled_running
    for job in gated:
        env.wait_started("AGT-EXT-6" if kept else "AGT-SCHED-2", job,
                         "a job did not start although every cancelled job's slot should be free" if kept
                         else "a job with a free slot did not start")
    return gated


@covers("AGT-EXT-5", "AGT-EXT-6", needs=("cancel", "witness", "slots"))
def test_cancel_of_a_waiting_job(env):
    gated = _fill(env, "AGT-EXT-6")
    waiting = env.job("AGT-EXT-5")
    answer = _ext.cancel(env, "AGT-EXT-5", waiting)
    expect("AGT-EXT-5", answer is JobState.DONE, "CancelJob of a WAIT job did not answer DONE",
           f"job {waiting}: answered {answer.name}")
    expect("AGT-EXT-6", env.status("AGT-EXT-6", waiting) is JobState.DONE, "a cancelled job is not DONE for RunJob",
           f"job {waiting}: {env.timeline(waiting)}")
    for job in gated:
        env.witness.open_gate(job)
    for job in gated:
        env.finish(job)
    after = env.job("AGT-EXT-6")   # the slots are free again: a new job runs
    env.finish(after)
    time.sleep(env.timing(0.3))
    expect("AGT-EXT-5", not env.witness.started(waiting), "a job cancelled in WAIT started later",
           f"job {waiting}: {env.timeline(waiting)}")
    again = _ext.cancel(env, "AGT-EXT-5", waiting)
    expect("AGT-EXT-5", again is JobState.DONE, "CancelJob of a DONE job did not answer DONE",
           f"answered {again.name}")
    if "outcome" in (env.target.extensions or ()):
        o = _ext.outcome(env, "AGT-EXT-5", waiting)
        expect("AGT-EXT-5", _ext.END.get(o.end) == "CANCELLED" and not o.HasField("started_ms"),
               "a job cancelled before it started is not CANCELLED without a start time", _ext.describe(o))


@covers("AGT-EXT-5", "AGT-EXT-6", needs=("cancel", "witness"))
def test_cancel_of_a_running_job_ends_its_process_tree(env):
    job = env.new_id()
    entry = env.put(TREE.format(witness=str(env.witness.dir), job=job.lower()).encode())
    env.stage("AGT-EXT-5", job, [entry], [entry])
    env.submit("AGT-EXT-5", job, [entry])
    env.gated.add(job.lower())
    beat = env.witness.dir / (job.lower() + ".beat")
    env.logs.append(job.lower() + ".beat")
    env.wait_until("AGT-EXT-5", lambda: beat.exists(), env.timing.start, "the job's child process never ran")
    answer = _ext.cancel(env, "AGT-EXT-5", job)
    env.target.cancelled_running = True
    expect("AGT-EXT-5", answer in (JobState.RUN, JobState.DONE), "CancelJob of a RUN job answered WAIT",
           f"job {job}: answered {answer.name}")
    env.wait_state("AGT-EXT-5", job, lambda s: s is JobState.DONE, "DONE after CancelJob", env.timing(BOUND))
    size = beat.stat().st_size
    time.sleep(env.timing(0.5))
    expect("AGT-EXT-5", beat.stat().st_size == size, "a cancelled job's child process still runs after DONE",
           f"job {job}: its child's heartbeat file grew from {size} to {beat.stat().st_size} bytes after DONE")
    if "outcome" in (env.target.extensions or ()):
        o = _ext.outcome(env, "AGT-EXT-5", job)
        expect("AGT-EXT-5", _ext.END.get(o.end) == "CANCELLED", "a cancelled RUN job's outcome is not CANCELLED",
               _ext.describe(o))
    if env.target.slots is not None:   # its slot was freed: every slot takes a job again
        for job in _fill(env, "AGT-EXT-6"):
            env.witness.open_gate(job)
    else:
        env.finish(env.job("AGT-EXT-6"))


@covers("AGT-EXT-6", needs=("cancel", "outcome", "witness"))
def test_cancel_racing_the_end_gives_one_outcome(env):
    for k in range(6):
        job = env.job("AGT-EXT-6", sleep=0.02 * k)
        time.sleep(env.timing(0.02 * k))
        _ext.cancel(env, "AGT-EXT-6", job)
        env.finish(job)
        first = _ext.outcome(env, "AGT-EXT-6", job)
        time.sleep(env.timing(0.05))
        second = _ext.outcome(env, "AGT-EXT-6", job)
        expect("AGT-EXT-6", _ext.END.get(first.end) in ("EXITED", "CANCELLED") and first == second,
               "a cancel racing the job's end gave no single outcome",
               f"{_ext.describe(first)}\nthen {_ext.describe(second)}")
        expect("AGT-EXT-6", len(env.runs(job)) <= 1, "a cancelled job ran again", f"job {job}: {env.timeline(job)}")


@covers("AGT-EXT-5", needs=("cancel", "witness", "slots", "restart"))
def test_cancel_of_a_waiting_job_survives_a_restart(env):
    gated = _fill(env, "AGT-EXT-5")
    waiting = env.job("AGT-EXT-5")
    _ext.cancel(env, "AGT-EXT-5", waiting)
    env.target.restart(hard=True if env.target.can_sigkill else False)
    expect("AGT-EXT-5", env.status("AGT-EXT-5", waiting) is JobState.DONE,
           "a job cancelled in WAIT is not DONE after a restart (the cancel was not durable)",
           f"job {waiting}: {env.timeline(waiting)}")
    for job in gated:
        env.witness.open_gate(job)
    for job in gated:
        env.finish(job)
    time.sleep(env.timing(0.5))
    expect("AGT-EXT-5", not env.witness.started(waiting), "a job cancelled in WAIT ran after a restart",
           f"job {waiting}: {env.timeline(waiting)}")
