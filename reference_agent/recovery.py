"""Recovery at start (AGT-DUR-1): the core's tables rebuilt from the journal, running jobs adopted."""
from __future__ import annotations

import time
from typing import Callable

from protos.states import Event, JobState
from reference_agent.job import Job
from reference_agent.journal import JobRow, Journal
from reference_agent.processes import read_status
from reference_agent.supervision import JobSupervisor
from reference_agent.tables import JobTables
from reference_agent.telemetry import Telemetry
from reference_agent.transitions import Transitions


class Recovery:
    """DONE stays DONE; WAIT waits in its old order; staged files stay staged; a RUN job is adopted
    when its process is alive, else recorded DONE from the exit status it left (or interrupted)."""

    def __init__(self, tables: JobTables, journal: Journal, supervisor: JobSupervisor,
                 transitions: Transitions, telemetry: Telemetry, reclaim: Callable[[Job], None]):
        self.tables, self.journal, self.supervisor = tables, journal, supervisor
        self.transitions, self.telemetry, self.reclaim = transitions, telemetry, reclaim

    def recover(self) -> None:
        tables = self.tables
        with tables.wake:
            for file_job, file in self.journal.staged():
                tables.staged.setdefault(file_job, {})[file] = None
            for row in self.journal.jobs():
                job = Job.from_row(row)
                tables.jobs[job.job] = job
                if job.state is JobState.WAIT:
                    tables.queue.append(job.job)
                elif job.state is JobState.RUN:
                    self.resume_running(job, row)

    def resume_running(self, job: Job, row: JobRow) -> None:
        """Adopt a RUN job whose process is alive; otherwise it ended while we were away (and
        what it left in its cgroup is killed; by pid only an adopted leader is trusted)."""
        if self.supervisor.adopt(job, row.pid, row.proc_start):
            self.tables.busy.add(job.job)
            self.telemetry.log("job", job=job.job, old="RUN", new="RUN", event="adopt", pid=row.pid)
            return
        self.supervisor.clean_up(job.job, None)
        self.reclaim(job)
        status = read_status(job.status_file)
        event = Event.INTERRUPT if status is None else (Event.SUCCEED if status == 0 else Event.FAIL)
        self.transitions.apply(job, event, exit_status=status, ended=time.time(),
                               note="ended while the agent was down")
