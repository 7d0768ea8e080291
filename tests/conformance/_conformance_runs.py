"""Helpers of the suite's own tests: run agent-conformance as a subprocess and read its JSON report."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BROKEN_CMD = (f"{sys.executable} -m fakes.broken {{name}} --listen {{{{listen}}}} --source {{{{source}}}} "
              f"--state-dir {{{{state_dir}}}} --slots {{{{slots}}}} --no-path-pythons")
REFERENCE_LIMIT = 4 * 1024 * 1024


@dataclass
class Run:
    code: int
    report: dict | None
    stdout: str
    stderr: str

    def outcomes(self) -> dict[str, str]:
        return {rid: v["outcome"] for rid, v in (self.report or {}).get("requirements", {}).items()}

    def failed(self) -> set[str]:
        return {rid for rid, o in self.outcomes().items() if o in ("FAIL", "ERROR")}


def run_cli(args: list[str], tmp: Path, timeout: float = 240) -> Run:
    report = tmp / "report.json"
    cmd = [sys.executable, "-m", "conformance.cli", "--report-json", str(report), "-q", *args]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=tmp, env=env)
    data = json.loads(report.read_text()) if report.exists() else None
    return Run(done.returncode, data, done.stdout, done.stderr)


# Agents whose defect shows only with more than the default command: a second interpreter (the virtual
# environment's base Python, another path of the same version) to choose from at random.
AGENT_ARGS = {"PicksInterpreterAtRandom": f" --python {getattr(sys, '_base_executable', sys.executable)}"}


def broken_args(name: str) -> list[str]:
    return ["--agent-cmd", BROKEN_CMD.format(name=name) + AGENT_ARGS.get(name, ""), "--max-request-bytes",
            str(REFERENCE_LIMIT), "--level", "should"]


def keyword_for(ids) -> str:
    """A -k expression selecting the suite tests that check any of `ids`."""
    from conformance.session import registry

    names = sorted({key.split("::")[1] for key, cov in registry().items() if set(cov.ids) & set(ids)})
    return " or ".join(names)


def run_inprocess(args: list[str], tmp: Path) -> Run:
    """The CLI's main() in this process (saves an interpreter start per run); same report."""
    from conformance import cli

    report = tmp / "report.json"
    code = cli.main(["--report-json", str(report), "-q", *args])
    data = json.loads(report.read_text()) if report.exists() else None
    return Run(code, data, "", "")


# The one or two quickest suite tests that catch a defect against each requirement (default runs
# against a broken agent: the tests of the IDs it declares, unless the class names its `shows_in`).
PRIMARY = {
    "AGT-WIRE-1": ["test_seed_field_numbers_are_understood"],
    "AGT-WIRE-2": ["test_ok_answers_carry_required_fields"],
    "AGT-ID-1": ["test_malformed_uuids_are_invalid_argument"],
    "AGT-ID-2": ["test_missing_required_fields_are_invalid_argument"],
    "AGT-ID-3": ["test_uuids_are_case_insensitive"],
    "AGT-STAGE-1": ["test_stage_lists_staged_files_once_in_request_order"],
    "AGT-STAGE-2": ["test_stage_is_idempotent"],
    "AGT-STAGE-3": ["test_job_sees_the_bytes_of_staging_time"],
    "AGT-STAGE-4": ["test_stage_after_submit_is_failed_precondition"],
    "AGT-STAGE-5": ["test_content_is_cached_by_file_uuid"],
    "AGT-RUN-1": ["test_first_runjob_submits_and_answers_state"],
    "AGT-RUN-2": ["test_first_runjob_without_files_is_invalid_argument"],
    "AGT-RUN-3": ["test_unstaged_files_are_failed_precondition_naming_them"],
    "AGT-RUN-4": ["test_malformed_python_version_is_invalid_argument",
                  "test_unsatisfiable_python_version_is_failed_precondition"],
    "AGT-RUN-5": ["test_requirements_hold_together"],
    "AGT-RUN-6": ["test_job_runs_first_file_in_its_directory"],
    "AGT-RUN-7": ["test_repeat_never_runs_again"],
    "AGT-RUN-8": ["test_repeat_with_other_lists_is_already_exists"],
    "AGT-RUN-9": ["test_concurrent_first_runjobs_create_one_job"],
    "AGT-STATE-1": ["test_states_are_monotonic_under_tight_polling"],
    "AGT-STATE-2": ["test_states_mean_what_the_process_does"],
    "AGT-STATE-3": ["test_ended_job_is_done_within_bounded_delay", "test_long_job_is_reported_run_and_done_promptly"],
    "AGT-SCHED-1": ["test_at_most_n_jobs_run"],
    "AGT-SCHED-2": ["test_every_job_runs_eventually"],
    "AGT-SCHED-3": ["test_jobs_start_in_submission_order"],
    "AGT-DUR-1": ["test_restart_after_sigkill"],
    "AGT-ERR-1": ["test_unparseable_bytes_are_rejected"],
    "AGT-ERR-2": ["test_request_over_size_limit_is_resource_exhausted"],
    "AGT-ERR-3": ["test_symlink_in_source_is_not_followed"],
}
# A defect that shows only in a longer scenario (a restart, a large request) names it on its class:
# `shows_in = ("test_restart_clean",)` (fakes/broken), not in a list here.


class FakeSource:
    """Puts the suite's inputs into a FakeAgent's in-memory source: a plugin object that
    implements the suite's source hook (pytest_agent_conformance_source)."""

    can_delete, can_symlink = True, False

    def __init__(self, fake):
        self.fake = fake

    def put(self, uuid, data):
        self.fake.source.put(uuid, data)

    def delete(self, uuid):
        self.fake.source.delete(uuid)

    def pytest_agent_conformance_source(self, config):
        return self
