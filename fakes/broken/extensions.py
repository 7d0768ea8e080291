"""Broken agents that offer the AgentExtensions service wrongly (AGT-EXT-2..9), one defect each."""
from __future__ import annotations

import dataclasses
import itertools
import threading
import time

from fakes.broken._registry import register
from protos.extensions import Outcome, not_offered
from protos.states import JobState
from reference_agent.domain import AgentCore


@register
class OutcomeChangesAfterDone(AgentCore):
    """Reports a DONE job's ended_ms as the time of each GetOutcome, so the outcome changes after DONE."""

    violates = ("AGT-EXT-4",)

    def get_outcome(self, job_id):
        outcome = super().get_outcome(job_id)
        if outcome.end is None:
            return outcome
        return dataclasses.replace(outcome, ended_ms=int(time.time() * 1000))


@register
class OutcomeForUnknownJob(AgentCore):
    """Answers GetOutcome for a job id never submitted with a WAIT outcome instead of NOT_FOUND."""

    violates = ("AGT-EXT-3",)

    def get_outcome(self, job_id):
        if self.job(job_id) is None:
            return Outcome(job=job_id.lower(), state=JobState.WAIT)
        return super().get_outcome(job_id)


@register
class CancelNotDurable(AgentCore):
    """Does not journal the cancel of a WAIT job: answered DONE, but after a restart the job is WAIT again and runs."""

    violates = ("AGT-EXT-5",)

    def record_cancel(self, job, columns):
        if job.state is JobState.WAIT:
            return  # memory only: the journal still says WAIT
        super().record_cancel(job, columns)


@register
class CancelLeavesProcessesRunning(AgentCore):
    """Records a RUN job's cancel but kills nothing: the job runs to its natural end before it is DONE (cancelled)."""

    violates = ("AGT-EXT-5",)

    def end_process_tree(self, job):
        pass


@register
class WatchSkipsRun(AgentCore):
    """Never sends RUN as a change on a watch stream (only as a first event): a watched WAIT job goes WAIT, DONE."""

    violates = ("AGT-EXT-7",)

    def publish_state(self, job, state):
        if state is not JobState.RUN:
            super().publish_state(job, state)


@register
class WatchReportsDoneEarly(AgentCore):
    """Sends DONE on watch streams as soon as a job starts, while RunJob still reports it RUN."""

    violates = ("AGT-EXT-8",)

    def publish_state(self, job, state):
        super().publish_state(job, state)
        if state is JobState.RUN:
            super().publish_state(job, JobState.DONE)


@register
class WatchNeverEnds(AgentCore):
    """Keeps a watch stream open after the last watched job's DONE (it ends only when the agent stops)."""

    violates = ("AGT-EXT-7",)

    def watch_jobs(self, job_ids, caller):
        subscription = super().watch_jobs(job_ids, caller)
        return _Endless(subscription) if job_ids else subscription


@register
class WatchIgnoresUnknownIds(AgentCore):
    """Leaves unknown job ids out of a watch instead of failing the call with NOT_FOUND."""

    violates = ("AGT-EXT-7",)

    def watch_jobs(self, job_ids, caller):
        return super().watch_jobs([j for j in job_ids if self.job(j) is not None], caller)


@register
class ListsWatchWithoutServingIt(AgentCore):
    """Lists "watch" in GetCapabilities, but WatchJobs answers UNIMPLEMENTED."""

    violates = ("AGT-EXT-2",)

    def watch_jobs(self, job_ids, caller):
        raise not_offered("watch")


@register
class CancelKeepsTheSlot(AgentCore):
    """A cancelled RUN job ends DONE (cancelled) but keeps its slot: with every slot so lost, later jobs wait for ever."""

    violates = ("AGT-EXT-6",)

    def __init__(self, config, telemetry=None):
        super().__init__(config, telemetry)
        self._lost_slots = 0
        self._lost_lock = threading.Lock()

    def cancel_job(self, job_id):
        job = self.job(job_id)
        state = super().cancel_job(job_id)
        if job is not None and job.started is not None and getattr(job, "cancelled", None) is not None:
            with self._lost_lock:
                self._lost_slots += 1
        return state

    def free_slots(self):
        with self._lost_lock:
            return super().free_slots() - self._lost_slots


@register
class WatchBoundedOnlyInAll(AgentCore):
    """Bounds open watch streams in all but not per caller: one caller can hold every stream of the agent."""

    violates = ("AGT-EXT-9",)

    def watch_jobs(self, job_ids, caller):
        return super().watch_jobs(job_ids, f"{caller} stream {next(_STREAMS)}")  # every stream its own caller


_STREAMS = itertools.count(1)


class _Endless:
    """A subscription that never says it is finished (WatchNeverEnds)."""

    def __init__(self, subscription):
        self.subscription = subscription

    @property
    def finished(self) -> bool:
        return False

    async def next_async(self):
        return await self.subscription.next_async()

    def cancel(self) -> None:
        self.subscription.cancel()
