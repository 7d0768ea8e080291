"""AGT-STATE-1..3: monotonic states, what WAIT/RUN/DONE mean (witnessed), DONE within a bounded delay."""
from __future__ import annotations

import time

from conformance.violations import covers, expect, violation
from protos.states import JobState



@covers("AGT-STATE-1")
def test_states_are_monotonic_under_tight_polling(env):
    """Every answer goes through the Env's monotonic check: a backwards state fails at once."""
    jobs_ = [env.job("AGT-STATE-1", sleep=0.15 * i) for i in range(3)]
    limit = time.monotonic() + env.timing.done
    pending = set(jobs_)
    while pending and time.monotonic() < limit:
        for job in list(pending):
            if env.status("AGT-STATE-1", job) is JobState.DONE:
                pending.discard(job)
        time.sleep(env.timing(0.005))
    for job in pending:
        env.finish(job, 0)
    for _ in range(5):
        for job in jobs_:
            env.status("AGT-STATE-1", job)


@covers("AGT-STATE-2", needs=("witness",))
def test_states_mean_what_the_process_does(env):
    """WAIT: not started; RUN: started, not seen to end; DONE: ended (checked against the job's witness)."""
    job = env.job("AGT-STATE-2", gate=True)
    limit = time.monotonic() + env.timing.start
    while True:
        started_before = env.witness.started(job)
        state = env.status("AGT-STATE-2", job)
        if started_before:
            expect("AGT-STATE-2", state is not JobState.WAIT, "a job whose process has started is reported WAIT",
                   lambda: f"job {job}: its script wrote its start witness before the query\n"
                           f"timeline: {env.timeline(job)}")
            break
        if time.monotonic() > limit:
            raise violation("AGT-SCHED-2", "a job with a free slot did not start",
                            f"job {job}: no start witness\ntimeline: {env.timeline(job)}")
        time.sleep(env.timing.poll)
    # the script is blocked on its gate, alive: RUN for seconds, every answer (a DONE that comes only
    # after the job has run a while is as wrong as an early one)
    hold = time.monotonic() + env.timing(2.5)
    while time.monotonic() < hold:
        state = env.status("AGT-STATE-2", job)
        if state is JobState.DONE:
            _check_done_means_ended(env, job)
        expect("AGT-STATE-2", state is JobState.RUN, "a job whose process is running is not reported RUN",
               lambda: f"job {job}: started and blocked on its gate\ntimeline: {env.timeline(job)}")
        time.sleep(env.timing(0.02))
    env.witness.open_gate(job)
    env.finish(job)
    expect("AGT-STATE-2", env.witness.ended(job), "a job was reported DONE before its process ended",
           lambda: f"job {job}: DONE answered, the script's end witness is missing\ntimeline: {env.timeline(job)}")


def _check_done_means_ended(env, job):
    """DONE while the gate is closed: if the script later finishes, the process was alive at DONE."""
    env.witness.open_gate(job)
    deadline = time.monotonic() + env.timing(3.0)
    while time.monotonic() < deadline:
        if env.witness.ended(job):
            raise violation("AGT-STATE-2", "a job was reported DONE while its process was still running",
                            f"job {job}: DONE answered while the script waited on its gate; the script "
                            f"finished afterwards\ntimeline: {env.timeline(job)}")
        time.sleep(env.timing.poll)


@covers("AGT-STATE-3")
def test_long_job_is_reported_run_and_done_promptly(env):
    seconds = 1.5
    job = env.job("AGT-STATE-3", sleep=seconds)
    env.finish(job, env.timing.start + env.timing(seconds) + env.timing.done_after_end)
    expect("AGT-STATE-3", any(point[1] == "RUN" for point in env.timelines[job]),
           "a job running for seconds was never reported RUN",
           lambda: f"job {job} sleeps {env.timing(seconds):.1f} s; polled every {env.timing.poll:.3f} s\n"
                   f"timeline: {env.timeline(job)}")


@covers("AGT-STATE-3", needs=("witness",))
def test_ended_job_is_done_within_bounded_delay(env):
    jobs_ = [env.job("AGT-STATE-3") for _ in range(3)]
    for job in jobs_:
        env.wait_until("AGT-SCHED-2", lambda j=job: env.witness.ended(j), env.timing.done,
                       "a short job did not run to its end", lambda j=job: f"job {j}\ntimeline: {env.timeline(j)}")
        env.wait_done("AGT-STATE-3", job, env.timing.done_after_end)
