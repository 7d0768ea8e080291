"""The core's job: the journal's record (JobRow) plus what only the running agent holds."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from protos.states import DoneReason, JobState, JobStateMachine
from reference_agent.journal import JobRow


@dataclass
class Job:
    """A submitted job as the core holds it in memory; the journal holds the same facts."""

    job: str
    seq: int
    files: tuple[str, ...]
    requirements: tuple[str, ...]
    interpreter: str
    python_version: str
    machine: JobStateMachine
    workdir: Path
    stdout: Path
    stderr: Path
    status_file: Path
    submitted: float
    started: float | None = None
    ended: float | None = None
    pid: int | None = None
    exit_status: int | None = None
    kill_reason: str | None = None  # "timeout" or "stop" when the agent ends the process

    @property
    def state(self) -> JobState:
        return self.machine.state

    @classmethod
    def from_row(cls, row: JobRow) -> "Job":
        """The one mapping from the journal's record to the core's job (new and recovered)."""
        machine = JobStateMachine.restore(JobState(row.state), DoneReason(row.reason) if row.reason else None)
        base = Path(row.stdout).parent
        return cls(row.job, row.seq, row.files, row.requirements, row.interpreter, row.python_version,
                   machine, Path(row.workdir), Path(row.stdout), Path(row.stderr), base / "exit_status",
                   row.submitted, row.started, row.ended, row.pid, row.exit_status)
