"""CancelJob (AGT-EXT-5/6): durable before answered, a WAIT job never starts, a RUN job's tree ends."""
from __future__ import annotations

import time

from protos.extensions import unknown_jobs
from protos.states import Event, JobState, next_state
from reference_agent.job import Job
from reference_agent.tables import JobTables
from reference_agent.transitions import Transitions

# How long CancelJob waits for a killed job's DONE before it answers RUN (the kill under way).
ANSWER_WAIT_SECONDS = 0.5
# How long a cancel waits for a start under way to finish (it takes milliseconds).
START_WAIT_SECONDS = 10.0
CANCEL_NOTE = "cancelled"
KILL_REASON = "cancel"   # Job.kill_reason of a job being cancelled: its end is a KILL


class Canceller:
    """Cancels jobs of a core. The decisions are the core's hooks: `record_cancel(job, columns)`
    makes a cancel durable (the journal) and `end_process_tree(job)` ends a running job's whole
    cgroup (or session); this object owns the order of things under the core's lock.

    - WAIT: one journal write makes it DONE (killed) with `cancelled` set, then it leaves the queue
      and the state machine moves in memory. A job being launched (holding its slot, still WAIT) is
      cancelled once its start has finished, as RUN. A restart reads DONE: it never starts (AGT-EXT-5).
    - RUN: `cancelled` is journalled first, then the tree is killed; the supervisor sees the end
      and the job becomes DONE (killed) through the scheduler, like any end (one outcome,
      AGT-EXT-6). A restart kills the tree of a RUN job with `cancelled` set (`resume`).
    - DONE: nothing changes."""

    def __init__(self, tables: JobTables, transitions: Transitions, hooks, answer_wait: float = ANSWER_WAIT_SECONDS):
        self.tables, self.transitions, self.hooks = tables, transitions, hooks
        self.answer_wait = answer_wait

    def cancel(self, job_id: str) -> JobState:
        """The job's state after the call: DONE, or RUN while the kill is under way.
        NOT_FOUND for a job never submitted; StorageError (nothing changed) when the journal
        cannot record the cancel."""
        tables = self.tables
        with tables.wake:
            job = tables.jobs.get(job_id)
            if job is None:
                raise unknown_jobs([job_id], "AGT-EXT-5")
            self._let_start_finish(job)
            if job.state is JobState.DONE:
                return JobState.DONE
            if job.state is JobState.WAIT:
                self._cancel_waiting(job)
                return JobState.DONE
            if getattr(job, "cancelled", None) is None:
                when = time.time()
                self.hooks.record_cancel(job, {"cancelled": when})  # durable first; StorageError: unchanged
                job.hold({"cancelled": when})
            job.kill_reason = KILL_REASON
        self.hooks.end_process_tree(job)
        with tables.wake:
            tables.wake.wait_for(lambda: job.machine.done, timeout=self.answer_wait)
            return job.state

    def _let_start_finish(self, job: Job) -> None:
        """Under the lock: a WAIT job holding a slot is being launched (outside the lock, a few ms):
        wait until it is RUN (then cancelled as RUN) or back in the queue or failed, so that a
        start never meets a job cancelled under it. Bounded: a start that hangs is cancelled as WAIT."""
        end = time.monotonic() + START_WAIT_SECONDS
        while job.state is JobState.WAIT and job.job in self.tables.busy and time.monotonic() < end:
            self.tables.wake.wait(0.005)  # the start does not notify: a short, bounded wait

    def _cancel_waiting(self, job: Job) -> None:
        """Under the lock: WAIT -> DONE (killed, cancelled), journalled in one write before anything."""
        when = time.time()
        new, reason = next_state(job.state, Event.KILL)
        columns = {"cancelled": when, "ended": when, "note": CANCEL_NOTE}
        self.hooks.record_cancel(job, {"state": int(new), "reason": reason.value, **columns})
        self.transitions.apply(job, Event.KILL, journalled=True, **columns)
        if job.job in self.tables.queue:
            self.tables.queue.remove(job.job)
        self.tables.wake.notify_all()

    def resume(self) -> list[str]:
        """After recovery: a RUN job whose cancel was recorded before the agent went down is ended
        now (its end is then recorded as for any cancelled job). Returns their ids."""
        ended = []
        for job in self.tables.running():
            if getattr(job, "cancelled", None) is not None and job.state is JobState.RUN:
                job.kill_reason = KILL_REASON
                self.hooks.end_process_tree(job)
                ended.append(job.job)
        return ended
