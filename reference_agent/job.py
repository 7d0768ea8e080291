"""The core's job: the journal's record (JobRow) plus what only the running agent holds."""
from __future__ import annotations

from dataclasses import dataclass, make_dataclass
from pathlib import Path

from protos.states import DoneReason, JobState, JobStateMachine
from reference_agent.jobrecord import HELD, JobRow, dataclass_fields


@dataclass(kw_only=True)
class Job(make_dataclass("JobColumns", dataclass_fields(HELD), kw_only=True)):
    """A submitted job as the core holds it in memory; the journal holds the same facts.

    Its journalled attributes are the columns of `reference_agent.jobrecord.JOB_COLUMNS` with a
    `held` conversion (job, seq, files, requirements, interpreter, python_version, pid,
    exit_status, submitted, started, ended; workdir, stdout, stderr as Paths); `state` and its
    DONE reason are held by `machine`, the one state machine of protos.states."""

    machine: JobStateMachine
    status_file: Path
    kill_reason: str | None = None  # "timeout" or "stop" when the agent ends the process

    @property
    def state(self) -> JobState:
        return self.machine.state

    @classmethod
    def from_row(cls, row: JobRow) -> "Job":
        """The one mapping from the journal's record to the core's job (new and recovered)."""
        machine = JobStateMachine.restore(JobState(row.state), DoneReason(row.reason) if row.reason else None)
        return cls(machine=machine, status_file=Path(row.stdout).parent / "exit_status",
                   **{c.name: c.held(getattr(row, c.name)) for c in HELD})

    def hold(self, columns: dict) -> None:
        """After the journal wrote these columns: the attributes this job holds take their values."""
        for column in HELD:
            if column.name in columns:
                setattr(self, column.name, column.held(columns[column.name]))

