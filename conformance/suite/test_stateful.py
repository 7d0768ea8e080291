"""A Hypothesis state machine: random interleavings of StageInFiles, RunJob and polls against a model."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import grpc
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule, run_state_machine_as_test

from conformance.env import OK
from conformance.violations import Violation, covers, violation

INVALID = grpc.StatusCode.INVALID_ARGUMENT
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
EXISTS = grpc.StatusCode.ALREADY_EXISTS
MALFORMED = ">=>3"
UNSATISFIABLE = "<1"
REQ_CHOICES = ["", "3", ">=3", UNSATISFIABLE, MALFORMED, None]
JOBS = 3


@dataclass
class JobModel:
    """What the protocol says about one job so far."""

    id: str
    entry: str
    staged: list = field(default_factory=list)
    submitted: tuple | None = None  # (files, requirement texts)


def _case(value: str, upper: bool) -> str:
    return value.upper() if upper else value


class ProtocolMachine(RuleBasedStateMachine):
    """Drives one agent through random calls; every answer is compared with the model, and every
    state passes through the Env's monotonic check. At the end of each run every submitted job
    must reach DONE and (with a witness) have run exactly once when its entry script came first."""

    def __init__(self, env):
        super().__init__()
        self.env = env
        self.data = [env.put(b"data %d " % i + env.new_id().encode()) for i in range(2)]
        self.missing = env.new_id()
        self.jobs = []
        for _ in range(JOBS):
            job = env.new_id()
            self.jobs.append(JobModel(job, env.script(job)))
        self.in_source = set(self.data) | {j.entry for j in self.jobs}
        self.failure: Violation | None = None   # the first violation; teardown then checks nothing

    def _guard(self, step, *args):
        try:
            step(*args)
        except Violation as exc:
            self.failure = exc
            raise

    def universe(self, job: JobModel) -> list[str]:
        return [job.entry, *self.data, self.missing]

    def _pick(self, job: JobModel, picks: list[int]) -> list[str]:
        pool = self.universe(job)
        return [pool[i % len(pool)] for i in picks]

    def _check(self, rids, reply, allowed, summary, model):
        if reply.code not in allowed:
            names = " or ".join(c.name for c in allowed)
            raise violation(rids, summary, f"{reply.describe()}\nexpected: {names}\nmodel: {model}")

    @rule(j=st.integers(0, JOBS - 1), picks=st.lists(st.integers(0, 5), max_size=4))
    def stage(self, j, picks):
        self._guard(self._stage, j, picks)

    def _stage(self, j, picks):
        job = self.jobs[j]
        files = self._pick(job, picks)
        reply = self.env.stage_call(job.id, files)
        if job.submitted is not None:
            self._check(("AGT-STAGE-4",), reply, (PRECONDITION,),
                        "StageInFiles for a submitted job is not FAILED_PRECONDITION", job)
            return
        want = list(dict.fromkeys(f for f in files if f in self.in_source or f in job.staged))
        self._check(("AGT-STAGE-1",), reply, (OK,), "StageInFiles did not return OK", job)
        if reply.staged != want:
            # a repeat that loses a file staged before also breaks AGT-STAGE-2 (it stays staged)
            lost = [f for f in want if f in job.staged and f not in reply.staged]
            ids = ("AGT-STAGE-1", "AGT-STAGE-2") if lost else ("AGT-STAGE-1",)
            raise violation(ids, "StageInFiles did not list the staged files as expected",
                            f"{reply.describe()}\nexpected: success_files {want}\nmodel: {job}")
        job.staged += [f for f in want if f not in job.staged]

    @rule(j=st.integers(0, JOBS - 1), extra=st.lists(st.integers(0, 5), max_size=2),
          reqs=st.lists(st.sampled_from(REQ_CHOICES), max_size=2))
    def submit(self, j, extra, reqs):
        """A RunJob whose first file is the job's own entry script."""
        job = self.jobs[j]
        self._run(job, [job.entry, *self._pick(job, extra)], reqs, False)

    @rule(j=st.integers(0, JOBS - 1), picks=st.lists(st.integers(0, 5), max_size=3),
          reqs=st.lists(st.sampled_from(REQ_CHOICES), max_size=2))
    def run_any(self, j, picks, reqs):
        """A RunJob with any files (often a repeat of a submitted job, or an invalid first one)."""
        job = self.jobs[j]
        self._run(job, self._pick(job, picks), reqs, False)

    @precondition(lambda self: any(j.submitted for j in self.jobs))
    @rule(j=st.integers(0, JOBS - 1), upper=st.booleans())
    def repeat_submission(self, j, upper):
        job = self.jobs[j]
        if job.submitted is not None:
            files, texts = job.submitted
            self._run(job, list(files), list(texts), upper)

    @rule(j=st.integers(0, JOBS - 1), upper=st.booleans())
    def poll(self, j, upper):
        self._run(self.jobs[j], [], [], upper)

    def _run(self, job: JobModel, files, reqs, upper):
        """Send RunJob and compare with the model. Upper case is used only for status queries and
        repeats (no state change when right); when such a call is wrong, the same call in lower
        case tells a case defect (AGT-ID-3) from the requirement the model names."""
        try:
            self._guard(self._run_once, job, files, reqs, upper)
        except Violation as exc:
            if not upper:
                raise
            try:
                self._run_once(job, files, reqs, False)
            except Violation:
                raise exc from None
            self.failure = violation("AGT-ID-3", "case", "")
            raise violation("AGT-ID-3", "a status query or repeat in upper case is answered differently "
                            "from the same call in lower case", str(exc)) from None

    def _run_once(self, job: JobModel, files, reqs, upper):
        texts = tuple("" if r is None else r for r in reqs)
        reply = self.env.run_call(_case(job.id, upper), [_case(f, upper) for f in files], reqs)
        case = ()
        if MALFORMED in texts:
            self._check(("AGT-RUN-4", *case), reply, (INVALID,), "a malformed python_version is not INVALID_ARGUMENT", job)
            return
        if job.submitted is None:
            if not files:
                # with unsatisfiable requirements too, the contract does not order the two checks
                allowed = (INVALID, PRECONDITION) if UNSATISFIABLE in texts else (INVALID,)
                self._check(("AGT-RUN-2", *case), reply, allowed, "a first RunJob without files is not INVALID_ARGUMENT", job)
                return
            unstaged, unsat = any(f not in job.staged for f in files), UNSATISFIABLE in texts
            if unstaged or unsat:
                ids = ("AGT-RUN-3",) * unstaged + ("AGT-RUN-4",) * unsat
                self._check((*ids, *case), reply, (PRECONDITION,),
                            "a first RunJob with unstaged files or unsatisfiable requirements is not "
                            "FAILED_PRECONDITION", job)
                return
            self._check(("AGT-RUN-1", *case), reply, (OK,), "a valid first RunJob did not return OK", job)
            job.submitted = (tuple(files), texts)
            self.env.confirm_created(job.id)
            return
        sub_files, sub_texts = job.submitted
        files_ok = not files or tuple(files) == sub_files
        reqs_ok = not reqs or texts == sub_texts
        if files_ok and reqs_ok:
            self._check(("AGT-RUN-7", "AGT-RUN-8", *case), reply, (OK,),
                        "a repeat equal to the submission is not a status query", job)
            return
        # a mismatched repeat is ALREADY_EXISTS; with unstaged files or unsatisfiable requirements in
        # it, the contract leaves the order of the two state checks open
        unclear = any(f not in job.staged for f in files) or UNSATISFIABLE in texts
        self._check(("AGT-RUN-8", *case), reply, (EXISTS, PRECONDITION) if unclear else (EXISTS,),
                    "a repeat with other files or requirements is not ALREADY_EXISTS", job)

    def teardown(self):
        env = self.env
        if self.failure is not None:
            return
        for job in self.jobs:
            if job.submitted is not None:
                env.finish(job.id)
        if env.witness is None:
            env.not_checked("AGT-RUN-7", "that no job of the random interleavings ran twice", "--witness-dir")
            return
        time.sleep(env.timing(0.2))
        for job in self.jobs:
            runs = env.runs(job.id)
            entry_first = job.submitted is not None and job.submitted[0][0] == job.entry
            if entry_first and not runs:
                env.wait_ran(job.id)
            if len(runs) > 1:
                raise violation("AGT-RUN-7", "a job id ran more than once",
                                f"job {job.id}: {len(runs)} executions of its entry script; model {job}\n"
                                f"timeline: {env.timeline(job.id)}")


@covers("AGT-STAGE-1", "AGT-STAGE-2", "AGT-STAGE-4", "AGT-RUN-1", "AGT-RUN-2", "AGT-RUN-3", "AGT-RUN-7",
        "AGT-RUN-8", "AGT-STATE-1", "AGT-ID-3")
def test_random_interleavings_match_the_model(env, hypothesis_settings):
    run_state_machine_as_test(lambda: ProtocolMachine(env), settings=hypothesis_settings)
