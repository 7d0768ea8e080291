"""Every change of a job's state: journalled first, then made visible (AGT-STATE-1, AGT-DUR-1)."""
from __future__ import annotations

from typing import Callable

from protos.states import Event, JobState, next_state
from reference_agent.job import Job
from reference_agent.journal import Journal, StorageError
from reference_agent.pending import PendingEnds
from reference_agent.telemetry import Telemetry


class Transitions:
    """Moves jobs through the one state machine of protos.states, the journal first."""

    def __init__(self, journal: Journal, pending_ends: PendingEnds, telemetry: Telemetry,
                 on_change: Callable[[Job, JobState], None] | None = None):
        self.journal, self.pending_ends, self.telemetry = journal, pending_ends, telemetry
        self.on_change = on_change  # told every new state once visible (watch streams, AGT-EXT-7/8)

    def apply(self, job: Job, event: Event, *, journalled: bool = False, **columns) -> None:
        """Journal the new state and `columns`, then make them visible: the job's state machine
        advances and the columns it holds take their values. StorageError: nothing changed,
        except for RUN -> DONE (the process has ended), whose record is retried later.
        `journalled`: the caller has already written exactly this change (one write, see cancel.py)."""
        old = job.state
        new, reason = next_state(old, event)
        values = dict(state=int(new), reason=reason.value if reason else None, **columns)
        try:
            if not journalled:
                self.journal.update_job(job.job, **values)
        except StorageError:
            if not (old is JobState.RUN and new is JobState.DONE):
                raise  # nothing changed: the caller answers or retries
            # The process has ended: a fact that a restart would also find (RUN in the journal,
            # process gone -> DONE). Report it and free the slot now; write the record later.
            self.pending_ends.add(job.job, values)
        job.machine.advance(event)
        job.hold(columns)
        extra = {k: v for k, v in columns.items() if k in ("pid", "exit_status", "note") and v is not None}
        self.telemetry.job_transition(job.job, old, new, event.value,
                                      reason=reason.value if reason else None, **extra)
        if self.on_change is not None:
            self.on_change(job, new)
