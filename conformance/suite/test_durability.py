"""AGT-DUR-1: after a restart (SIGKILL or clean) jobs keep their state and none runs twice."""
from __future__ import annotations

import time

from conformance.env import OK
from conformance.violations import also, covers, expect, violation
from protos.states import JobState

RID = "AGT-DUR-1"


def _scenario(env, hard: bool):
    witness, slots = env.witness, env.target.slots
    done = env.job(RID)
    env.finish(done)
    running = env.job(RID, gate=witness is not None, sleep=0 if witness is not None else 2)
    if witness is not None:
        env.wait_started("AGT-SCHED-2", running)
    else:
        env.wait_state("AGT-SCHED-2", running, lambda s: s is not JobState.WAIT, "started", env.timing.start)
    fillers, waiting = [], None
    if witness is not None and slots is not None:
        fillers = [env.job(RID, gate=True) for _ in range(slots - 1)]
        for job in fillers:
            env.wait_started("AGT-SCHED-2", job)
        waiting = env.job(RID)
        state = env.status(RID, waiting)
        if state is not JobState.WAIT:
            # RUN with every slot busy: one job too many runs. DONE: it ran (too many again), or it
            # is reported DONE without having started; its witness, given a moment, tells which.
            started = state is JobState.RUN or (time.sleep(env.timing(0.5)) or witness.started(waiting))
            expect("AGT-STATE-2" if not started else "AGT-SCHED-1", False,
                   "a job that has not started is not reported WAIT" if not started else
                   "a job started although every slot was busy",
                   f"--slots {slots}: job {waiting}\ntimeline: {env.timeline(waiting)}")
    staged = env.new_id()
    staged_entry = env.script(staged)
    env.stage(RID, staged, [staged_entry], [staged_entry])

    restarted_at = time.time()
    env.target.restart(hard=hard)

    with also(RID):
        forgotten = "a job known before the restart is unknown after it"
        for job in [done, running, *fillers] + ([waiting] if waiting else []):
            reply = env.run_call(job)
            env.expect_code(RID, reply, OK, forgotten, f"job {job}; before the restart: {env.timeline(job)}")
        expect(RID, env.last[done] is JobState.DONE, "a DONE job is not DONE after the restart",
               lambda: f"job {done}: {env.timeline(done)}")
        reply = env.run_call(staged, [staged_entry])
        env.expect_code(RID, reply, OK, "files staged before the restart are no longer staged",
                        f"job {staged} staged {staged_entry} before the restart, then RunJob")
        env.jobs.append(staged)
        if witness is not None:
            for job in [running, *fillers]:
                state = env.status(RID, job)
                if state is JobState.RUN:
                    expect(RID, not witness.ended(job), "a job whose process ended is still reported RUN after "
                           "the restart", lambda: f"job {job}: {env.timeline(job)}")
            for job in [running, *fillers]:
                witness.open_gate(job)
        for job in [running, *fillers, staged] + ([waiting] if waiting else []):
            env.finish(job)
    if witness is not None:
        time.sleep(env.timing(0.3))
        for job in [done, running, *fillers, staged] + ([waiting] if waiting else []):
            runs = sorted(env.runs(job), key=lambda r: r.start)
            detail = f"job {job}: {len(runs)} executions\ntimeline: {env.timeline(job)}"
            if job in (done, staged, waiting):
                expect(RID, runs, "a job known before the restart never ran", detail)
            if len(runs) > 1:
                done_at = env.done_at.get(job, float("inf"))
                if runs[1].start > done_at and done_at < restarted_at:  # rerun by a query, before the restart
                    raise violation("AGT-RUN-7", "a job ran again after it was answered DONE", detail)
                raise violation((RID, "AGT-RUN-7") if runs[1].start > done_at else RID,
                                "a job ran more than once across the restart", detail)


@covers(RID, needs=("sigkill",))
def test_restart_after_sigkill(env):
    _scenario(env, hard=True)


@covers(RID, needs=("restart",))
def test_restart_clean(env):
    _scenario(env, hard=False)
