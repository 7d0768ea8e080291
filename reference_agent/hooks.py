"""The reference agent's extension surface, declared: what a subclass of AgentCore may override
(AgentHooks) and what it may call (CoreServices).

Each hook decides one rule of the protocol; the core calls it through `self`, so a subclass that
overrides one hook changes that one behaviour, which is how the catalogue of broken agents
(fakes/broken) is built. Every other member of AgentCore is its own business and may change
without notice: `tests/fakes/test_fakes_broken_catalogue.py` keeps broken agents to these names,
and `tests/reference_agent/test_agent_hooks.py` keeps docs/AGENT.md's tables equal to them.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

from protos.states import JobState
from protos.validation import RunRequest, StageRequest

if TYPE_CHECKING:  # the types of arguments only
    from protos.extensions import Outcome
    from reference_agent.interpreters import Interpreter
    from reference_agent.job import Job
    from reference_agent.processes import Launch
    from reference_agent.watch import Subscription


class AgentHooks:
    """The decisions of the reference agent a subclass may override, one rule each.

    Unless a docstring says otherwise a hook runs on the thread serving the RPC, without the
    core's lock; "under the lock" means the caller holds it (do not block there)."""

    # --- requests -------------------------------------------------------------------------------
    def parse_stage_request(self, message) -> StageRequest:
        """StageInFiles message -> validated request (AGT-ID-1..3); ProtocolError when it is not one."""
        raise NotImplementedError

    def parse_run_request(self, message) -> RunRequest:
        """RunJob message -> validated request (AGT-ID-1..3, AGT-RUN-4); ProtocolError when it is not one."""
        raise NotImplementedError

    # --- staging ---------------------------------------------------------------------------------
    def stage_in(self, req: StageRequest) -> list[str]:
        """The whole StageInFiles: the files staged for the job, each once, in request order (AGT-STAGE-1/2)."""
        raise NotImplementedError

    def check_stage_allowed(self, job_id: str) -> None:
        """Raise ProtocolError when the job is already submitted (AGT-STAGE-4)."""
        raise NotImplementedError

    def unique_files(self, files) -> list[str]:
        """The requested files, duplicates listed once, first-appearance order (AGT-STAGE-1)."""
        raise NotImplementedError

    def stage_file(self, job_id: str, file: str) -> bool:
        """Place one file (from the cache, else the source) in the job's directory; True when placed.

        False when the source does not give it; StorageError when the agent's own disk fails."""
        raise NotImplementedError

    # --- submission --------------------------------------------------------------------------------
    def run_job(self, req: RunRequest) -> JobState:
        """The whole RunJob: submit a new job or answer a status query, one submission per id (AGT-RUN-9)."""
        raise NotImplementedError

    def status_query(self, job: Job, req: RunRequest) -> JobState:
        """A RunJob for a known job: check the repeat, answer its state (AGT-RUN-7), never run it again."""
        raise NotImplementedError

    def check_repeat(self, job: Job, req: RunRequest) -> None:
        """Raise ALREADY_EXISTS unless the repeat's lists are equal or empty (AGT-RUN-8)."""
        raise NotImplementedError

    def submit(self, req: RunRequest) -> JobState:
        """A first RunJob: the checks in docs/SPEC.md's order, then the job journalled WAIT, then queued."""
        raise NotImplementedError

    def check_has_files(self, req: RunRequest) -> None:
        """Raise INVALID_ARGUMENT for a RunJob without files (AGT-RUN-2)."""
        raise NotImplementedError

    def check_staged(self, job_id: str, files) -> None:
        """Raise FAILED_PRECONDITION naming a file not staged for the job (AGT-RUN-3)."""
        raise NotImplementedError

    def choose_interpreter(self, req: RunRequest) -> Interpreter:
        """The newest final interpreter satisfying every requirement (AGT-RUN-4/5), else FAILED_PRECONDITION."""
        raise NotImplementedError

    def report_state(self, job: Job) -> JobState:
        """The state the wire sees for a job (AGT-STATE-2)."""
        raise NotImplementedError

    # --- scheduling and processes ----------------------------------------------------------------
    def free_slots(self) -> int:
        """Under the lock: how many more jobs may hold a slot now (AGT-SCHED-1); <= 0: none starts."""
        raise NotImplementedError

    def next_job(self) -> Job | None:
        """Under the lock: the waiting job to start next (AGT-SCHED-3), or None."""
        raise NotImplementedError

    def launch(self, job: Job) -> Launch:
        """Create the job's process, paused until `.go()`, entry point files[0] (AGT-RUN-6); no bookkeeping."""
        raise NotImplementedError

    def start_job(self, job: Job) -> None:
        """On the scheduler's (or the submitting) thread, the job holding a slot: launch it, wait
        until its interpreter runs (paused), journal RUN with its pid, then let it go. A start the
        agent could not make (the launch refused, the launcher lost before its interpreter ran, RUN
        not journalled) puts it back at the head of the queue, WAIT; only the job's own defects
        (no entry file, an interpreter the shell cannot run) end it DONE (failed)."""
        raise NotImplementedError

    # --- extensions: outcome, cancel, watch (PROTOCOL-EXT; docs/AGENT.md "Extensions") -------------
    def capabilities(self) -> tuple[str, ...]:
        """The extensions GetCapabilities lists (AGT-EXT-2); methods of others answer UNIMPLEMENTED."""
        raise NotImplementedError

    def get_outcome(self, job_id: str) -> Outcome:
        """GetOutcome: the job's v1 state now and, once DONE, how it ended (AGT-EXT-3/4); NOT_FOUND when unknown."""
        raise NotImplementedError

    def cancel_job(self, job_id: str) -> JobState:
        """CancelJob: the state after the call, DONE or RUN while the kill is under way (AGT-EXT-5/6)."""
        raise NotImplementedError

    def record_cancel(self, job: Job, columns: dict) -> None:
        """Under the lock: make a cancel durable before it is answered (the journal row takes `columns`:
        `cancelled`, and for a WAIT job its DONE); StorageError when it cannot."""
        raise NotImplementedError

    def end_process_tree(self, job: Job) -> None:
        """Kill every process of a cancelled RUN job (its cgroup, else its session); its end follows."""
        raise NotImplementedError

    def watch_jobs(self, job_ids: list[str], caller: str) -> Subscription:
        """WatchJobs: a subscription whose first events are the jobs' current states (AGT-EXT-7);
        NOT_FOUND naming unknown ids; RESOURCE_EXHAUSTED past the caller's or the agent's bound."""
        raise NotImplementedError

    def publish_state(self, job: Job, state: JobState) -> None:
        """Under the lock, at each transition, once v1 reports `state`: tell the watch streams (AGT-EXT-8)."""
        raise NotImplementedError

    # --- restart -----------------------------------------------------------------------------------
    def on_recovered(self) -> None:
        """Called once by start() after recovery from the journal, before the scheduler runs."""
        raise NotImplementedError


class CoreServices:
    """What a subclass may read and change of the core's state: snapshots and one change, each
    taken under the core's lock, so that a subclass never touches that lock or the core's tables
    (a subclass keeping state of its own guards it with a lock of its own)."""

    def job(self, job_id: str) -> Job | None:
        """The job with this id (any case), or None."""
        raise NotImplementedError

    def staged_files(self, job_id: str) -> list[str]:
        """The files staged for a job, in staging order."""
        raise NotImplementedError

    def counts(self) -> dict[str, int]:
        """Jobs per state name, plus `queue` (waiting) and `busy` (holding a slot)."""
        raise NotImplementedError

    def waiting_jobs(self) -> list[Job]:
        """The jobs in WAIT, oldest submission first (safe inside next_job/free_slots)."""
        raise NotImplementedError

    def unsubmitted_staging(self) -> dict[str, list[str]]:
        """Job id -> the files staged for it, for every job not submitted yet."""
        raise NotImplementedError

    def discard_job(self, job_id: str) -> None:
        """Drop a DONE job from memory (not from the journal); ValueError for WAIT or RUN."""
        raise NotImplementedError

    def submission_lock(self, job_id: str) -> threading.Lock:
        """The lock serialising staging and first submission of one job id (AGT-STAGE-4, AGT-RUN-9)."""
        raise NotImplementedError

    def workdir(self, job_id: str) -> Path:
        """The job's work directory (where its files are staged and its process runs)."""
        raise NotImplementedError


def names(cls: type) -> list[str]:
    """The public methods a declaration class declares, in declaration order."""
    return [name for name, value in vars(cls).items() if callable(value) and not name.startswith("_")]


HOOKS = tuple(names(AgentHooks))
SERVICES = tuple(names(CoreServices))
