"""Broken agents that submit, report, schedule or remember jobs wrongly (AGT-RUN/STATE/SCHED/DUR)."""
from __future__ import annotations

import dataclasses
import threading
import time

from fakes.broken._registry import register, run_again
from protos import validation
from protos.errors import InvalidArgument
from protos.states import JobState
from reference_agent.domain import AgentCore


@register
class AcceptsRunWithoutFiles(AgentCore):
    """Accepts a first RunJob without files: the job is created, cannot start, and ends DONE (failed)."""

    violates = ("AGT-RUN-2",)

    def check_has_files(self, req):
        pass  # the reference's launch then raises JobCannotStart: DONE (failed)


@register
class AnswersWithoutSubmitting(AgentCore):
    """Checks a first RunJob and answers WAIT, but never creates the job (a later query finds nothing)."""

    violates = ("AGT-RUN-1",)

    def submit(self, req):
        self.check_has_files(req)
        self.check_staged(req.job, req.files)
        self.choose_interpreter(req)
        return JobState.WAIT


@register
class RunsLastFile(AgentCore):
    """Runs the last file that RunJob names as the entry point instead of the first."""

    violates = ("AGT-RUN-6",)

    def launch(self, job):
        return super().launch(dataclasses.replace(job, files=job.files[-1:] + job.files[:-1]))


@register
class IgnoresPythonVersion(AgentCore):
    """Runs every job with its newest interpreter, whatever python_version asks for (syntax is still checked)."""

    violates = ("AGT-RUN-4", "AGT-RUN-5")

    def choose_interpreter(self, req):
        return super().choose_interpreter(dataclasses.replace(req, requirements=(), requirement_texts=()))


@register
class UsesOnlyFirstRequirement(AgentCore):
    """Checks only the first JobRequirement and ignores the others (OR-ish instead of AND)."""

    violates = ("AGT-RUN-5",)

    def choose_interpreter(self, req):
        return super().choose_interpreter(dataclasses.replace(req, requirements=req.requirements[:1]))


@register
class AcceptsMalformedPythonVersion(AgentCore):
    """Reads a python_version it cannot parse as 'any Python 3' instead of answering INVALID_ARGUMENT."""

    violates = ("AGT-RUN-4",)

    def parse_run_request(self, message):
        clone = type(message)()
        clone.CopyFrom(message)
        for requirement in clone.requirements:
            try:
                validation.parse_python_version(requirement.python_version)
            except InvalidArgument:
                requirement.python_version = ""
        req = super().parse_run_request(clone)
        texts = tuple(r.python_version if r.HasField("python_version") else "" for r in message.requirements)
        return dataclasses.replace(req, requirement_texts=texts)


@register
class AcceptsMismatchedRepeat(AgentCore):
    """Answers a repeat RunJob with other files or requirements as a status query, not ALREADY_EXISTS."""

    violates = ("AGT-RUN-8",)

    def check_repeat(self, job, req):
        pass


@register
class RunsJobTwiceOnRepeat(AgentCore):
    """The first status query that finds a job DONE starts its entry point once more (reported state unchanged)."""

    violates = ("AGT-RUN-7",)

    def __init__(self, config, telemetry=None):
        super().__init__(config, telemetry)
        self._reran: set[str] = set()
        self._reran_lock = threading.Lock()  # its own: a subclass never takes the core's lock

    def status_query(self, job, req):
        state = super().status_query(job, req)
        with self._reran_lock:
            again = state is JobState.DONE and job.job not in self._reran
            if again:
                self._reran.add(job.job)
        if again:
            run_again(self, job)
        return state


@register
class TwoExecutionsForConcurrentFirstCalls(AgentCore):
    """Checks for an existing job without a lock: a caller that loses the race runs the job once more."""

    violates = ("AGT-RUN-9",)
    RACE_WINDOW = 0.5  # seconds between the check and the insert: what a slow journal gives

    def run_job(self, req):
        job = self.job(req.job)
        if job is not None:
            return self.status_query(job, req)
        time.sleep(self.RACE_WINDOW)
        with self.submission_lock(req.job):
            job = self.job(req.job)
            if job is None:
                return self.submit(req)
        run_again(self, job)  # the loser "submits" too: a second execution
        return self.status_query(job, req)


@register
class ReportsDoneBeforeRun(AgentCore):
    """Reports every job DONE from its submission on, while it waits and while it runs."""

    violates = ("AGT-STATE-2", "AGT-STATE-3")

    def report_state(self, job):
        return JobState.DONE


@register
class GoesBackFromDoneToRun(AgentCore):
    """Answers RUN to the query right after the first DONE answer of a job, then DONE again."""

    violates = ("AGT-STATE-1",)

    def __init__(self, config, telemetry=None):
        super().__init__(config, telemetry)
        self._done_answers: dict[str, int] = {}
        self._answers_lock = threading.Lock()

    def report_state(self, job):
        state = super().report_state(job)
        if state is not JobState.DONE:
            return state
        with self._answers_lock:
            n = self._done_answers[job.job] = self._done_answers.get(job.job, 0) + 1
        return JobState.RUN if n == 2 else state


@register
class ReportsDoneLate(AgentCore):
    """Keeps reporting RUN for DELAY seconds after the job's process has ended."""

    violates = ("AGT-STATE-3",)
    DELAY = 3.0

    def report_state(self, job):
        state = super().report_state(job)
        if state is JobState.DONE and job.ended is not None and time.time() - job.ended < self.DELAY:
            return JobState.RUN
        return state


@register
class NeverLeavesWait(AgentCore):
    """Accepts jobs but never starts one: every job stays WAIT."""

    violates = ("AGT-SCHED-2",)

    def free_slots(self):
        return 0


@register
class LeaksSlots(AgentCore):
    """Never gives a slot back: after `slots` jobs have run, every later job waits forever."""

    violates = ("AGT-SCHED-2",)

    def __init__(self, config, telemetry=None):
        super().__init__(config, telemetry)
        self._ever_started = 0
        self._count_lock = threading.Lock()

    def start_job(self, job):
        with self._count_lock:
            self._ever_started += 1
        super().start_job(job)

    def free_slots(self):
        return min(super().free_slots(), self.config.slots - self._ever_started)


@register
class ExceedsSlots(AgentCore):
    """Ignores its slot count: starts every waiting job at once."""

    violates = ("AGT-SCHED-1",)

    def free_slots(self):
        return 1


@register
class StartsNewestFirst(AgentCore):
    """Starts the most recently submitted waiting job first (LIFO instead of FIFO)."""

    violates = ("AGT-SCHED-3",)

    def next_job(self):
        waiting = self.waiting_jobs()
        return waiting[-1] if waiting else None


@register
class ForgetsDoneAfterRestart(AgentCore):
    """Keeps DONE jobs in memory only: after a restart they are unknown (staged files stay)."""

    violates = ("AGT-DUR-1",)

    def on_recovered(self):
        for row in self.journal.jobs():
            if JobState(row.state) is JobState.DONE:
                self.discard_job(row.job)

