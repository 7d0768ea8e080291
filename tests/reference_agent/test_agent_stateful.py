"""A Hypothesis state machine drives the agent over loopback and checks every answer against a model."""
from __future__ import annotations

import shutil
import tempfile
import uuid
from pathlib import Path

import grpc
from hypothesis import settings, strategies as st
from hypothesis.stateful import (Bundle, RuleBasedStateMachine, consumes, initialize, invariant, precondition,
                                 rule)

from agent_helpers import code_of
from protos.client import AgentClient
from protos.validation import dedupe
from reference_agent.config import AgentConfig
from reference_agent.server import AgentServer
from reference_agent.telemetry import Telemetry

REQUIREMENTS = ["", "3", ">=3.9", "==2.7.*", "not a version"]


def spelled(value: str, upper: bool) -> str:
    return value.upper() if upper else value


class AgentModel(RuleBasedStateMachine):
    """Model: the source's files, the agent's cache, staged files per job, submissions.
    AGT-STAGE-1/2/4/5, AGT-RUN-2/3/4/7/8, AGT-ID-3 and AGT-STATE-1 are checked on every step."""

    files = Bundle("files")
    jobs = Bundle("jobs")

    @initialize()
    def start_agent(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="agent-model-"))
        (self.tmp / "source").mkdir()
        config = AgentConfig(listen="127.0.0.1:0", source=str(self.tmp / "source"), state_dir=str(self.tmp / "state"),
                             slots=2, discover_path=False, log_rpcs=False)
        self.server = AgentServer(config, telemetry=Telemetry(None))
        self.server.start()
        self.channel = grpc.insecure_channel(self.server.address)
        self.client = AgentClient(self.channel, timeout=20)
        self.in_source: set[str] = set()
        self.cached: set[str] = set()
        self.staged: dict[str, list[str]] = {}
        self.submitted: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
        self.last_state: dict[str, int] = {}

    def teardown(self):
        if hasattr(self, "server"):
            self.channel.close()
            self.server.stop(grace=0.1, stop_jobs=True)
            shutil.rmtree(self.tmp, ignore_errors=True)

    @rule(target=files)
    def put_file(self):
        f = str(uuid.uuid4())
        (self.tmp / "source" / f).write_text("pass\n")
        self.in_source.add(f)
        return f

    @rule(target=files)
    def absent_file(self):
        return str(uuid.uuid4())

    @rule(f=files)
    def remove_from_source(self, f):
        (self.tmp / "source" / f).unlink(missing_ok=True)
        self.in_source.discard(f)

    @rule(target=jobs)
    def new_job(self):
        return str(uuid.uuid4())

    @rule(target=jobs, reqs=st.lists(st.sampled_from(REQUIREMENTS[:3]), max_size=2), twice=st.booleans())
    def submit_valid_job(self, reqs, twice):
        """The happy path in one step, so that submitted jobs are common in every run."""
        job, f = str(uuid.uuid4()), self.put_file()
        self.stage(job, [f, f] if twice else [f], upper=False)
        self._run_and_check(job, [f, f] if twice else [f], reqs, upper=False)
        assert job in self.submitted
        return job

    @rule(job=jobs, chosen=st.lists(files, max_size=4), upper=st.booleans())
    def stage(self, job, chosen, upper):
        code = code_of(self.client.stage_in, spelled(job, upper), [spelled(f, upper) for f in chosen])
        if job in self.submitted:
            assert code == "FAILED_PRECONDITION"
            return
        already = self.staged.setdefault(job, [])
        expected = [f for f in dedupe(chosen) if f in already or f in self.in_source or f in self.cached]
        got = self.client.stage_in(job, chosen)  # the repeat: idempotent, same list
        assert code == "OK" and got == expected
        for f in expected:
            if f not in already:
                already.append(f)
            self.cached.add(f)

    @rule(job=jobs, chosen=st.lists(files, max_size=3), reqs=st.lists(st.sampled_from(REQUIREMENTS), max_size=2),
          upper=st.booleans())
    def run(self, job, chosen, reqs, upper):
        self._run_and_check(job, chosen, reqs, upper)

    @precondition(lambda self: getattr(self, "submitted", None))
    @rule(data=st.data(), upper=st.booleans())
    def repeat_submitted(self, data, upper):
        """Repeats of a submitted job with equal, empty or other lists (AGT-RUN-7/8)."""
        job = data.draw(st.sampled_from(sorted(self.submitted)))
        files, texts = self.submitted[job]
        chosen = data.draw(st.sampled_from([list(files), [], list(files) + list(files[:1]), list(files[1:])]))
        reqs = data.draw(st.sampled_from([list(texts), [], list(texts) + [""], ["3"]]))
        self._run_and_check(job, chosen, reqs, upper)

    def _run_and_check(self, job, chosen, reqs, upper):
        code = code_of(self.client.run, spelled(job, upper), [spelled(f, upper) for f in chosen], reqs)
        if "not a version" in reqs:
            expected = "INVALID_ARGUMENT"
        elif job in self.submitted:
            files, texts = self.submitted[job]
            mismatch = (chosen and tuple(chosen) != files) or (reqs and tuple(reqs) != texts)
            expected = "ALREADY_EXISTS" if mismatch else "OK"
        elif not chosen:
            expected = "INVALID_ARGUMENT"
        elif any(f not in self.staged.get(job, []) for f in chosen):
            expected = "FAILED_PRECONDITION"
        elif any(r == "==2.7.*" for r in reqs):
            expected = "FAILED_PRECONDITION"
        else:
            expected = "OK"
            self.submitted[job] = (tuple(chosen), tuple(reqs))
        assert code == expected, (code, expected, chosen, reqs)

    @rule(job=consumes(jobs))
    def poll(self, job):
        if job not in self.submitted:
            assert code_of(self.client.status, job) == "INVALID_ARGUMENT"
            return
        state = int(self.client.status(job))
        assert state >= self.last_state.get(job, 0)
        self.last_state[job] = state

    @invariant()
    def one_journal_row_per_submission(self):
        if hasattr(self, "server"):
            assert {r.job for r in self.server.core.journal.jobs()} == set(self.submitted)


TestAgentModel = AgentModel.TestCase
TestAgentModel.settings = settings(max_examples=15, stateful_step_count=30, deadline=None)
