"""AGT-SCHED-1..3: at most N running, waiting jobs start when a slot frees, submission order."""
from __future__ import annotations

import time

from conformance.violations import covers, expect
from protos.states import JobState


def _saturate(env, rid, log=None):
    """Submit N gated jobs and wait until all N have started; return them."""
    gated = [env.job(rid, gate=True, start_log=log) for _ in range(env.target.slots)]
    for job in gated:
        env.wait_started("AGT-SCHED-2", job,
                         "a job did not start although a slot was free")
    return gated


def _running(env, jobs_):
    """Jobs whose script has started and not yet ended (by their witnesses)."""
    return [j for j in jobs_ if env.witness.started(j) and not env.witness.ended(j)]


@covers("AGT-SCHED-1", needs=("witness", "slots"))
def test_at_most_n_jobs_run(env):
    n = env.target.slots
    jobs_ = _saturate(env, "AGT-SCHED-1")
    extra = [env.job("AGT-SCHED-1", gate=True) for _ in range(2)]
    all_jobs = jobs_ + extra
    limit = time.monotonic() + env.timing(0.5)
    while time.monotonic() < limit:  # every gate closed: nothing can end, nothing more may start
        running = _running(env, all_jobs)
        states = {j: env.status("AGT-SCHED-1", j) for j in all_jobs}
        reported = [j for j, s in states.items() if s is JobState.RUN]
        expect("AGT-SCHED-1", len(running) <= n and len(reported) <= n, "more jobs running than slots",
               lambda: f"--slots {n}: {len(running)} scripts running, {len(reported)} reported RUN\n"
                       + "\n".join(f"job {j}: {env.timeline(j)}" for j in all_jobs))
        time.sleep(env.timing(0.05))
    for job in all_jobs:  # free one slot at a time
        env.witness.open_gate(job)
        limit = time.monotonic() + env.timing(0.3)
        while time.monotonic() < limit:
            running = _running(env, all_jobs)
            expect("AGT-SCHED-1", len(running) <= n, "more jobs running than slots",
                   lambda: f"--slots {n}: running {running}")
            time.sleep(env.timing.poll)
    for job in all_jobs:
        env.finish(job)


@covers("AGT-SCHED-2")
def test_every_job_runs_eventually(env):
    """More short jobs than slots: the waiting ones start as slots free up."""
    count = (env.target.slots or 2) + 3
    jobs_ = [env.job("AGT-SCHED-2", sleep=0.2) for _ in range(count)]
    for job in jobs_:  # each job, in turn, has the start deadline to finish once the one before did
        env.finish(job, env.timing.start)


@covers("AGT-SCHED-2", needs=("witness", "slots"))
def test_waiting_job_starts_when_a_slot_frees(env):
    gated = _saturate(env, "AGT-SCHED-2")
    waiting = env.job("AGT-SCHED-2")
    time.sleep(env.timing(0.2))
    expect("AGT-SCHED-1", not env.witness.started(waiting), "a job started although every slot was busy",
           f"--slots {env.target.slots}; job {waiting} started while {len(gated)} gated jobs ran")
    env.witness.open_gate(gated[0])
    env.wait_started("AGT-SCHED-2", waiting, "a waiting job did not start after a slot was freed")
    env.finish(waiting)


@covers("AGT-SCHED-3", needs=("witness", "slots"))
def test_jobs_start_in_submission_order(env):
    """Free one slot at a time: each time, the oldest waiting job is the one that starts."""
    gated = _saturate(env, "AGT-SCHED-3")
    waiting = [env.job("AGT-SCHED-3", gate=True) for _ in range(3)]
    time.sleep(env.timing(0.2))
    early = [j for j in waiting if env.witness.started(j)]
    expect("AGT-SCHED-1", not early, "a job started although every slot was busy",
           f"--slots {env.target.slots}: {len(early)} of the waiting jobs started")
    release = list(gated)
    for k in range(len(waiting)):
        env.witness.open_gate(release.pop(0))
        env.wait_until(("AGT-SCHED-2", "AGT-SCHED-3"), lambda: sum(map(env.witness.started, waiting)) > k,
                       env.timing.start, "a waiting job did not start after a slot was freed")
        time.sleep(env.timing(0.05))
        started = [j for j in waiting if env.witness.started(j)]
        expect("AGT-SCHED-3", started == waiting[:k + 1], "waiting jobs did not start in submission order",
               f"submitted {waiting}\nafter freeing {k + 1} slot(s) one at a time, started: {started}")
        release.append(waiting[k])
    for job in gated + waiting:
        env.witness.open_gate(job)
    for job in gated + waiting:
        env.finish(job)
