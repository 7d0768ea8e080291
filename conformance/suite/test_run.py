"""AGT-RUN-1..6: submission, no files, unstaged files, python_version, AND of requirements, execution."""
from __future__ import annotations

import hashlib

import grpc
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from conformance import jobs
from conformance.env import OK
from conformance.violations import covers, expect
from protos.states import JobState

INVALID = grpc.StatusCode.INVALID_ARGUMENT
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION

# Malformed by the contract (packaging's SpecifierSet refuses them and none is a bare release).
MALFORMED_VERSIONS = ("3.11.x", ">=>3", "python3", "~=3", "\uff13.11", ">=3.10;<4", "../../bin/sh", "=3.11",
                      "latest", "*", ">=", "3..11", "\x00", "3.11.*")
# Well formed, satisfied by no interpreter that exists.
UNSATISFIABLE = ("==0.1", "<1", "99", "==1.0.*")
# Well formed and satisfied by any Python 3 (the suite's own jobs need one).
ANY_PYTHON3 = ("", "   ", "3", ">=3", ">=3.0", "<4", ">3,<4", "==3.*")


def _staged_job(env, rid, **kw):
    job = env.new_id()
    entry = env.script(job, **kw)
    env.stage(rid, job, [entry], [entry])
    return job, entry


@covers("AGT-RUN-1")
def test_first_runjob_submits_and_answers_state(env):
    job, entry = _staged_job(env, "AGT-RUN-1")
    reply = env.run_call(job, [entry])
    env.expect_code("AGT-RUN-1", reply, OK, "a valid first RunJob did not return OK")
    env.confirm_created(job)
    expect("AGT-RUN-1", reply.state in (JobState.WAIT, JobState.RUN, JobState.DONE), "no state answered")
    env.finish(job)


@covers("AGT-RUN-2")
def test_first_runjob_without_files_is_invalid_argument(env):
    env.expect_code("AGT-RUN-2", env.run_call(env.new_id()), INVALID,
                    "RunJob without files for a job never seen is not INVALID_ARGUMENT")
    job, entry = _staged_job(env, "AGT-RUN-2")
    env.expect_code("AGT-RUN-2", env.run_call(job, [], ["3"]), INVALID,
                    "a first RunJob with requirements but no files is not INVALID_ARGUMENT")
    env.assert_not_created("AGT-RUN-2", job, "a RunJob without files")
    env.submit("AGT-RUN-2", job, [entry])


@covers("AGT-RUN-3")
def test_unstaged_files_are_failed_precondition_naming_them(env):
    job, entry = _staged_job(env, "AGT-RUN-3")
    in_source = env.put(b"in the source, not staged for this job")
    other_job_file = env.put(b"staged for another job")
    env.stage("AGT-RUN-3", env.new_id(), [other_job_file], [other_job_file])
    reply = env.run_call(job, [entry, in_source.upper(), other_job_file])
    env.expect_code("AGT-RUN-3", reply, PRECONDITION, "RunJob with unstaged files is not FAILED_PRECONDITION")
    text = reply.details.lower()
    missing = [u for u in (in_source, other_job_file) if u not in text]
    expect("AGT-RUN-3", not missing, "the FAILED_PRECONDITION message does not name the unstaged UUIDs",
           f"{reply.describe()}\nexpected the message to name {missing}")
    env.assert_not_created("AGT-RUN-3", job, "a RunJob with unstaged files")
    env.stage("AGT-RUN-3", job, [in_source, other_job_file], [in_source, other_job_file])
    env.submit("AGT-RUN-3", job, [entry, in_source, other_job_file])
    absent = env.new_id()
    reply = env.run_call(env.new_id(), [absent])
    env.expect_code("AGT-RUN-3", reply, PRECONDITION, "RunJob naming a file never staged is not FAILED_PRECONDITION")
    expect("AGT-RUN-3", absent in reply.details.lower(), "the FAILED_PRECONDITION message does not name the unstaged UUIDs",
           f"{reply.describe()}\nexpected the message to name {absent}")
    env.finish(job)


@covers("AGT-RUN-4")
def test_malformed_python_version_is_invalid_argument(env):
    job, entry = _staged_job(env, "AGT-RUN-4")
    for text in MALFORMED_VERSIONS:
        env.expect_code("AGT-RUN-4", env.run_call(job, [entry], [text]), INVALID,
                        "a malformed python_version is not INVALID_ARGUMENT")
        env.expect_code("AGT-RUN-4", env.run_call(job, [entry], ["3", text]), INVALID,
                        "a malformed python_version after a valid one is not INVALID_ARGUMENT")
    # checks on the request come before checks on state: malformed and unstaged -> INVALID_ARGUMENT
    env.expect_code("AGT-RUN-4", env.run_call(job, [entry, env.new_id()], ["3.11.x"]), INVALID,
                    "malformed python_version with unstaged files is not INVALID_ARGUMENT (request checks first)")
    env.assert_not_created("AGT-RUN-4", job, "a RunJob with a malformed python_version")
    env.submit("AGT-RUN-4", job, [entry])
    env.expect_code("AGT-RUN-4", env.run_call(job, [entry], [">=>3"]), INVALID,
                    "a repeat RunJob with a malformed python_version is not INVALID_ARGUMENT")
    env.finish(job)


@covers("AGT-RUN-4")
def test_unsatisfiable_python_version_is_failed_precondition(env):
    job, entry = _staged_job(env, "AGT-RUN-4")
    for text in UNSATISFIABLE:
        env.expect_code("AGT-RUN-4", env.run_call(job, [entry], [text]), PRECONDITION,
                        "a well-formed python_version that no interpreter satisfies is not FAILED_PRECONDITION",
                        f"python_version {text!r} is well formed; no interpreter of that version exists")
    env.assert_not_created("AGT-RUN-4", job, "a RunJob with unsatisfiable requirements")


@covers("AGT-RUN-4")
def test_valid_python_versions_are_accepted(env):
    """Blank, absent, bare releases and specifier sets that any Python 3 satisfies, and --python-version."""
    cases = [[t] for t in ANY_PYTHON3] + [[None], [None, ""], [env.target.python_version]]
    submitted = []
    for reqs in cases:
        job, entry = _staged_job(env, "AGT-RUN-4")
        reply = env.run_call(job, [entry], reqs)
        env.expect_code("AGT-RUN-4", reply, OK, "a well-formed, satisfiable python_version was refused",
                        "every requirement here is satisfied by any Python 3 interpreter (or by --python-version)")
        env.confirm_created(job)
        submitted.append((job, reqs))
    if env.witness is None:
        env.not_checked("AGT-RUN-4", "that the interpreter chosen satisfies python_version", "--witness-dir")
    for job, reqs in submitted:
        env.finish(job)
        if env.witness is not None:
            _check_version(env, "AGT-RUN-4", job, reqs)


def _matches(version: str, reqs) -> bool:
    v = Version(version)
    for text in reqs:
        text = (text or "").strip()
        if not text:
            ok = v.major == 3
        elif all(part.isdigit() for part in text.split(".")):
            ok = v.release[:len(text.split("."))] == tuple(int(p) for p in text.split("."))
        else:
            ok = SpecifierSet(text).contains(v, prereleases=False)
        if not ok:
            return False
    return not v.is_prerelease


def _check_version(env, rid, job, reqs) -> str:
    version = env.wait_ran(job)[0].version
    expect(("AGT-RUN-5",) if rid == "AGT-RUN-5" else (rid, "AGT-RUN-5"), _matches(version, reqs),
           "the interpreter chosen does not satisfy every requirement",
           f"job {job}: requirements {reqs}, ran under Python {version}")
    return version


@covers("AGT-RUN-5")
def test_requirements_hold_together(env):
    """[satisfiable, unsatisfiable] must be refused: an AND, never an OR."""
    job, entry = _staged_job(env, "AGT-RUN-5")
    for reqs in ([">=3", "<1"], ["3", "==0.1"], ["", "<1"], ["<1", ">=3"]):
        env.expect_code("AGT-RUN-5", env.run_call(job, [entry], reqs), PRECONDITION,
                        "requirements that hold only one at a time were accepted (AND expected)",
                        "each list holds one requirement that no interpreter satisfies")
    env.assert_not_created("AGT-RUN-5", job, "a RunJob with jointly unsatisfiable requirements")


# "Deterministically", checked statistically. An agent that picks uniformly at random among m >= 2
# interpreters satisfying a requirement list gives k jobs with that list one interpreter only with
# probability m * (1/m)**k = m**(1 - k) <= 2**(1 - k). Caught with probability >= 99.9 % needs
# 2**(1 - k) <= 0.001, so k >= 1 + log2(1000) = 10.97: k = 11 (miss probability 2**-10 = 0.098 %).
# A random choice that favours one interpreter with probability p is missed with p**k + (1 - p)**k,
# which stays <= 0.1 % for p <= 0.53 only: the guarantee is for a uniform choice. An agent with one
# satisfying interpreter has nothing to choose from, and passes.
DETERMINISM_SAMPLES = 11


def _determinism_samples(miss: float = 0.001) -> int:
    """The k above: the fewest jobs for which 2**(1 - k) <= miss."""
    import math

    return 1 + math.ceil(math.log2(1 / miss))


@covers("AGT-RUN-5", needs=("witness",))
def test_interpreter_choice_satisfies_and_is_deterministic(env):
    job, entry = _staged_job(env, "AGT-RUN-5")
    env.submit("AGT-RUN-5", job, [entry])
    env.finish(job)
    version = _check_version(env, "AGT-RUN-5", job, [""])
    major, minor, micro = Version(version).release[:3]
    lists = [[f"{major}.{minor}"], [f"{major}.{minor}.{micro}"], [f"=={major}.{minor}.*", ">=3"],
             [f">={version}", f"<={version}"]] + [[">=3"]] * DETERMINISM_SAMPLES
    submitted = []
    for reqs in lists:   # all submitted first, then waited for: the samples run side by side in the slots
        j, e = _staged_job(env, "AGT-RUN-5")
        env.submit("AGT-RUN-5", j, [e], reqs)
        submitted.append((j, reqs))
    seen = {}
    for j, reqs in submitted:
        env.finish(j)
        seen[j] = (reqs, _check_version(env, "AGT-RUN-5", j, reqs), env.runs(j)[0].executable)
    same = {(v, exe) for reqs, v, exe in seen.values() if reqs == [">=3"]}
    expect("AGT-RUN-5", len(same) == 1, "the same requirements chose different interpreters (not deterministic)",
           f"{DETERMINISM_SAMPLES} jobs with requirements ['>=3'] ran under {len(same)} interpreters: "
           f"{sorted(same)}")


@covers("AGT-RUN-6", needs=("witness",))
def test_job_runs_first_file_in_its_directory(env):
    job = env.new_id()
    entry = env.script(job)
    decoy = env.put(jobs.script(job, str(env.witness.dir), mark="decoy"))
    data_bytes = b"data \x00\xff\r\n" + job.encode()
    data = env.put(data_bytes)
    env.stage("AGT-RUN-6", job, [decoy, entry, data], [decoy, entry, data])
    other = env.new_id()
    other_entry = env.script(other)
    env.stage("AGT-RUN-6", other, [other_entry], [other_entry])
    env.submit("AGT-RUN-6", job, [entry, entry, decoy])        # duplicates allowed; data staged, not named
    env.submit("AGT-RUN-6", other, [other_entry])
    for j in (job, other):
        env.finish(j)
        env.wait_ran(j)
    run = env.runs(job)[0]
    detail = f"job {job}: witness {run}"
    expect("AGT-RUN-6", run.mark == "entry", "the job did not run the first file of `files`",
           f"{detail}\nexpected the script {entry} (first of files), not {decoy}")
    expect("AGT-RUN-6", len(run.argv) == 1, "the job's script got arguments", f"{detail}\nexpected no arguments")
    expect("AGT-RUN-6", run.name == "__main__", "the first file did not run as a script (__name__)", detail)
    expect("AGT-RUN-6", {entry, decoy, data} <= set(run.listing),
           "the job's directory does not hold every staged file under its lower-case UUID",
           f"{detail}\nexpected {sorted({entry, decoy, data})} in the working directory")
    expect("AGT-RUN-6", run.hashes.get(data) == hashlib.sha256(data_bytes).hexdigest(),
           "a file in the job's directory does not hold its staged bytes", detail)
    expect("AGT-RUN-6", other_entry not in run.listing and entry not in env.runs(other)[0].listing,
           "jobs share a working directory (another job's file is in it)",
           f"{detail}\nother job {other}: {env.runs(other)[0].listing}")
