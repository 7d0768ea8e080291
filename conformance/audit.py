"""Checks that hold wherever the suite looks, not in one test: every DONE against the job's end witness
(AGT-STATE-2), every RUN count against the slots (AGT-SCHED-1), every staged file's bytes against the
source's bytes at staging time (AGT-STAGE-3)."""
from __future__ import annotations

import hashlib
import time

from conformance.violations import Violation, checked
from protos.states import JobState


class Audit:
    """Fed by the Env at every put, staging answer and state answer; `settle()` runs after the test."""

    def __init__(self, env):
        self.env = env
        self.put_hashes: dict[str, list[str]] = {}          # file -> sha256 of every put, in order
        self.staged: dict[tuple[str, str], set[str]] = {}   # (job, file) -> bytes the job may see
        self.done_early: dict[str, bool] = {}               # job answered DONE before its end witness
        self._confirming = False

    # --- fed by the Env -----------------------------------------------------------------------------

    def on_put(self, file: str, data: bytes) -> None:
        self.put_hashes.setdefault(file.lower(), []).append(hashlib.sha256(data).hexdigest())

    def on_staged(self, job: str, files: list[str]) -> None:
        """The job's bytes are fixed now: the source's bytes at staging time (a cache by UUID may hand
        out bytes put under the same UUID before, by the contract's clarification, never later ones)."""
        for f in files:
            key = (job.lower(), f.lower())
            if key not in self.staged and f.lower() in self.put_hashes:
                self.staged[key] = set(self.put_hashes[f.lower()])

    def on_done(self, job: str) -> None:
        witness = self.env.witness
        if witness is None or job in self.done_early or witness.ended(job):
            return
        # DONE with no end witness: legal only if the process never runs to its end (killed,
        # interrupted, never started); settle() tells which
        self.done_early[job] = witness.started(job)

    def on_run(self, job: str) -> None:
        slots = self.env.target.slots
        if slots is None or self.env.witness is None or self._confirming:
            return
        running = [j for j, s in self.env.last.items() if s is JobState.RUN]
        if len(running) > slots:
            self.confirm_slots(running, slots)

    def confirm_slots(self, jobs: list[str], slots: int) -> None:
        """Two rounds of status queries: a job RUN in both was RUN (states are monotonic) from its first
        answer to its second, so every job RUN in both rounds was RUN at the moment between the rounds.
        The violation names AGT-SCHED-1 alone, whatever the test is checking (no `also` context)."""
        env, witness = self.env, self.env.witness
        self._confirming = True
        try:
            first = [j for j in jobs if env.status("AGT-SCHED-1", j) is JobState.RUN]
            both = [j for j in first if env.status("AGT-SCHED-1", j) is JobState.RUN]
        finally:
            self._confirming = False
        # only processes that really run count: a job answered RUN after its script ended is late DONE
        # (AGT-STATE-3), one answered RUN before its script started is AGT-STATE-2, neither is a slot
        both = [j for j in both if witness.started(j) and not witness.ended(j)]
        checked()
        if len(both) > slots:
            raise Violation(("AGT-SCHED-1",), "more jobs reported RUN at once than the agent has slots",
                            f"--slots {slots}: {len(both)} jobs answered RUN in two rounds of status queries, "
                            f"their scripts started and not ended\n"
                            + "\n".join(f"job {j}: {env.timeline(j)}" for j in both))

    # --- after the test -------------------------------------------------------------------------------

    def settle(self) -> None:
        witness = self.env.witness
        if witness is None:
            return
        self._check_done_answers(witness)
        self._check_staged_bytes(witness)

    def _check_done_answers(self, witness) -> None:
        env = self.env
        started = [j for j, s in self.done_early.items() if s]
        for job in started:
            if job in env.gated:
                witness.open_gate(job)
        # a started script that was alive at DONE ends on its own (sleep) or at its gate, now open
        limit = time.monotonic() + (env.timing(2.5) if started else 0)
        while True:
            for job, was_started in self.done_early.items():
                checked()
                if witness.ended(job):
                    raise Violation(("AGT-STATE-2",), "a job was reported DONE while its process was still running",
                                    f"job {job}: answered DONE before its script wrote its end witness; the "
                                    f"script ended afterwards\ntimeline: {env.timeline(job)}")
                if not was_started and witness.started(job):
                    raise Violation(("AGT-STATE-2",), "a job was reported DONE before its process started",
                                    f"job {job}: answered DONE before its script started; it started "
                                    f"afterwards\ntimeline: {env.timeline(job)}")
            if time.monotonic() >= limit:
                return
            time.sleep(env.timing.poll)

    def _check_staged_bytes(self, witness) -> None:
        for job in dict.fromkeys(self.env.jobs):
            # the first execution only: a second one (AGT-RUN-7's business) sees what the first wrote
            for run in sorted(witness.runs(job), key=lambda r: r.start)[:1]:
                for file, digest in sorted(run.hashes.items()):
                    allowed = self.staged.get((job, file))
                    if digest is None or allowed is None:
                        continue
                    checked()
                    if digest not in allowed:
                        raise Violation(("AGT-STAGE-3",), "a staged file's bytes differ from the source's bytes at "
                                        "staging time", f"job {job}, file {file}: sha256 {digest} in the job's "
                                        f"directory; at staging time the source held sha256 "
                                        f"{' or '.join(sorted(allowed))}")
