"""AGT-DUR-1: after a restart (SIGKILL or clean) jobs keep their state and none runs twice; the scheduling
and staging requirements hold again after the restart (AGT-SCHED-1/2, AGT-STAGE-3)."""
from __future__ import annotations

import os
import time

from conformance.env import OK
from conformance.violations import also, covers, expect, violation
from protos.states import JobState

RID = "AGT-DUR-1"
BIG = 3 * 1024 * 1024 + 17   # a staged input of several MB, kept across the restart


def _before(env):
    """Jobs in every state before the restart: DONE, RUN (gated), the other slots busy, one WAIT, and one
    job whose files (a small and a big one) are staged, not submitted."""
    witness, slots = env.witness, env.target.slots
    done = env.job(RID)
    env.finish(done)
    running = env.job(RID, gate=witness is not None, sleep=0 if witness is not None else 2)
    if witness is not None:
        env.wait_started("AGT-SCHED-2", running)
    else:
        env.wait_state("AGT-SCHED-2", running, lambda s: s is not JobState.WAIT, "started", env.timing.start)
        env.not_checked(RID, "that no job runs twice across the restart, and the RUN job's process", "--witness-dir")
    fillers, waiting = [], None
    if witness is not None and slots is not None:
        fillers = [env.job(RID, gate=True) for _ in range(slots - 1)]
        for job in fillers:
            env.wait_started("AGT-SCHED-2", job)
        waiting = env.job(RID, gate=True)
        state = env.status(RID, waiting)
        if state is not JobState.WAIT:
            # RUN with every slot busy: one job too many runs. DONE: it ran (too many again), or it
            # is reported DONE without having started; its witness, given a moment, tells which.
            started = state is JobState.RUN or (time.sleep(env.timing(0.5)) or witness.started(waiting))
            expect("AGT-STATE-2" if not started else "AGT-SCHED-1", False,
                   "a job that has not started is not reported WAIT" if not started else
                   "a job started although every slot was busy",
                   f"--slots {slots}: job {waiting}\ntimeline: {env.timeline(waiting)}")
    else:
        env.not_checked(RID, "that a job in WAIT is still WAIT after the restart and runs later",
                        "--witness-dir and --slots")
    staged = env.new_id()
    staged_entry = env.script(staged)
    small, big = env.put(b"small input " + staged.encode()), env.put(os.urandom(BIG))
    env.stage(RID, staged, [staged_entry, small, big], [staged_entry, small, big])
    # the source changes after staging: the job must still see the bytes of staging time (AGT-STAGE-3)
    env.put(b"changed after staging", big)
    return done, running, fillers, waiting, (staged, [staged_entry, small, big])


def _slots_after_restart(env, held, waiting):
    """The jobs that survived the restart in RUN (adopted) still hold their slots: the waiting job does
    not start while they run, and starts when one ends (AGT-SCHED-1, AGT-SCHED-2)."""
    witness, slots = env.witness, env.target.slots
    alive = [j for j in held if env.status(RID, j) is JobState.RUN and not witness.ended(j)]
    time.sleep(env.timing(0.3))
    if len(alive) >= slots:
        expect("AGT-SCHED-1", not witness.started(waiting),
               "after the restart a job started although every slot was held by a job still running",
               lambda: f"--slots {slots}: {len(alive)} jobs adopted in RUN; job {waiting} started\n"
                       f"timeline: {env.timeline(waiting)}")
    for job in held:
        witness.open_gate(job)
        if job in alive and len(alive) >= slots:
            env.finish(job)
            alive.remove(job)
            env.wait_started("AGT-SCHED-2", waiting, "after the restart a waiting job did not start when a "
                             "slot was freed")
    witness.open_gate(waiting)


def _scenario(env, hard: bool):
    witness = env.witness
    done, running, fillers, waiting, (staged, staged_files) = _before(env)
    restarted_at = time.time()
    env.target.restart(hard=hard)

    with also(RID):
        forgotten = "a job known before the restart is unknown after it"
        for job in [done, running, *fillers] + ([waiting] if waiting else []):
            reply = env.run_call(job)
            env.expect_code(RID, reply, OK, forgotten, f"job {job}; before the restart: {env.timeline(job)}")
        expect(RID, env.last[done] is JobState.DONE, "a DONE job is not DONE after the restart",
               lambda: f"job {done}: {env.timeline(done)}")
        if waiting:
            expect(RID, env.last[waiting] is not JobState.DONE or witness.started(waiting),
                   "a job in WAIT before the restart is DONE after it without having run",
                   lambda: f"job {waiting}: {env.timeline(waiting)}")
        # every staged file named (RunJob refuses unstaged ones), the entry point first and, as a
        # duplicate, last: an entry-point defect (AGT-RUN-6, checked elsewhere) is not taken here
        # for a job lost across the restart
        reply = env.run_call(staged, staged_files + staged_files[:1])
        env.expect_code(RID, reply, OK, "files staged before the restart are no longer staged",
                        f"job {staged} staged {staged_files} before the restart, then RunJob")
        env.jobs.append(staged)
        if witness is not None:
            for job in [running, *fillers]:
                state = env.status(RID, job)
                if state is JobState.RUN:
                    expect(RID, not witness.ended(job), "a job whose process ended is still reported RUN after "
                           "the restart", lambda: f"job {job}: {env.timeline(job)}")
    if witness is not None and waiting:
        _slots_after_restart(env, [running, *fillers], waiting)
    elif witness is not None:
        witness.open_gate(running)
    with also(RID):
        for job in [running, *fillers, staged] + ([waiting] if waiting else []):
            if env.last.get(job) is not JobState.DONE:  # one DONE answer is enough (finished above)
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
        # the staged bytes (a small and a several-MB file) are checked by the audit after the test


@covers(RID, needs=("sigkill",))
def test_restart_after_sigkill(env):
    _scenario(env, hard=True)


@covers(RID, needs=("restart",))
def test_restart_clean(env):
    _scenario(env, hard=False)
