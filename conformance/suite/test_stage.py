"""AGT-STAGE-1..5: what StageInFiles lists, idempotence, snapshot bytes, frozen inputs, cache."""
from __future__ import annotations

import hashlib
import os

import grpc

from conformance import jobs
from conformance.env import OK
from conformance.violations import covers, expect

PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION


@covers("AGT-STAGE-1")
def test_stage_lists_staged_files_once_in_request_order(env):
    a, b, c = env.put(b"a"), env.put(b"b"), env.put(b"c")
    missing = env.new_id()
    env.stage("AGT-STAGE-1", env.new_id(), [], [], "an empty files list did not give an empty success_files")
    env.stage("AGT-STAGE-1", env.new_id(), [c, a, b], [c, a, b],
              "success_files is not in the order of the request")
    env.stage("AGT-STAGE-1", env.new_id(), [a, missing, b, a, c, b], [a, b, c],
              "duplicates or a file absent from the source were not handled as required")
    env.stage("AGT-STAGE-1", env.new_id(), [missing], [], "a file absent from the source was listed as staged")


@covers("AGT-STAGE-1")
def test_staging_is_per_job(env):
    """A file staged for one job is not staged for another (RunJob of the other job refuses it)."""
    a = env.put(b"print('x')\n")
    env.stage("AGT-STAGE-1", env.new_id(), [a], [a])
    env.assert_not_staged("AGT-STAGE-1", env.new_id(), a, "staging a file for another job")


@covers("AGT-STAGE-2")
def test_stage_is_idempotent(env):
    job = env.new_id()
    a, b = env.put(b"a"), env.put(b"b")
    first = env.stage("AGT-STAGE-2", job, [a, b], [a, b])
    for files, want in (([a, b], first), ([b], [b]), ([a, b, a], [a, b]), ([a, b], first)):
        env.stage(("AGT-STAGE-2", "AGT-STAGE-1"), job, files, want, "a repeated StageInFiles returned another list")


@covers("AGT-STAGE-2", needs=("delete",))
def test_staged_file_stays_staged_when_source_loses_it(env):
    job = env.new_id()
    a, b = env.put(b"a"), env.put(b"b")
    env.stage("AGT-STAGE-2", job, [a, b], [a, b])
    env.target.source.delete(a)
    env.stage(("AGT-STAGE-2", "AGT-STAGE-1"), job, [a, b], [a, b],
              "a file once staged for a job was not listed again after it left the source")


def _blob(seed: str) -> bytes:
    """Binary content with every byte value, CR LF, NUL and a unique tail."""
    return bytes(range(256)) * 3 + b"\r\n\x00\r" + seed.encode() + hashlib.sha256(seed.encode()).digest()


# Sizes around the usual copy-buffer and chunk boundaries, and several MB (a defect that shows only with
# inputs larger than the suite's small ones, e.g. a copy cut at 1 MiB or at one read() call).
SIZES = (0, 1, 65_536, 65_537, 1_048_576 + 1, 5 * 1_048_576 + 3)
MANY = 2_500   # files in one StageInFiles (the request stays near 100 KB)


@covers("AGT-STAGE-3", needs=("witness",))
def test_job_sees_the_bytes_of_staging_time(env):
    job = env.new_id()
    entry_bytes = jobs.script(job, str(env.witness.dir), mark="entry")
    entry = env.put(entry_bytes)
    data_bytes = _blob(job)
    data = env.put(data_bytes)
    sized = {env.put(os.urandom(n)): n for n in SIZES}
    env.stage("AGT-STAGE-3", job, [entry, data, *sized], [entry, data, *sized])
    # the source changes after staging: other bytes under both UUIDs
    env.put(jobs.script(job, str(env.witness.dir), mark="changed"), entry)
    env.put(b"changed after staging", data)
    env.submit("AGT-STAGE-3", job, [entry, data])
    env.finish(job)
    run = env.wait_ran(job)[0]
    expect("AGT-STAGE-3", run.mark == "entry", "the job ran the entry script as changed after staging",
           f"job {job}: ran the script marked {run.mark!r}, expected the one staged ('entry')")
    missing = [f"{f} ({n} bytes)" for f, n in sized.items() if run.hashes.get(f) is None]
    expect("AGT-STAGE-3", not missing, "a staged file is missing from the job's directory",
           f"job {job}: no readable file {missing} in the job's directory; listing {run.listing}")
    # the bytes of every file, the big ones included, are compared by the audit after the test
    want = {entry: hashlib.sha256(entry_bytes).hexdigest(), data: hashlib.sha256(data_bytes).hexdigest()}
    got = {k: run.hashes.get(k) for k in want}
    expect("AGT-STAGE-3", got == want, "a staged file's bytes differ from the source's bytes at staging time",
           f"job {job}: sha256 in the job's directory {got}\nexpected (at staging time) {want}")


@covers("AGT-STAGE-1", needs=("delete",))
def test_large_stage_request_lists_every_file(env):
    """Thousands of files in one call (staging that takes a while, journalled in chunks by some agents):
    every one is listed, in order, and a repeat lists them again."""
    files = [env.put(b"%d" % i) for i in range(MANY)]
    job = env.new_id()
    reply = env.stage_call(job, files)
    if reply.code is grpc.StatusCode.RESOURCE_EXHAUSTED:  # a limit of its own: allowed
        env.not_checked("AGT-STAGE-1", f"a StageInFiles of {MANY} files (the agent answered RESOURCE_EXHAUSTED)",
                        "an agent that takes such a request")
        return
    env.expect_code("AGT-STAGE-1", reply, OK, f"a StageInFiles of {MANY} files did not return OK")
    expect("AGT-STAGE-1", reply.staged == files, f"a StageInFiles of {MANY} files did not list every one of them",
           lambda: f"{reply.describe()}\nexpected: all {MANY} files, in request order; got {len(reply.staged)}")
    env.stage(("AGT-STAGE-1", "AGT-STAGE-2"), job, files, files, f"a repeated StageInFiles of {MANY} files "
              f"returned another list")


@covers("AGT-STAGE-3", needs=("witness",))
def test_a_job_writing_its_input_does_not_change_another_jobs_copy(env):
    """Job A appends to its staged input; job B, staged the same file afterwards, sees the source's bytes
    (an agent that shares one copy between jobs, or trusts a cache that a job wrote to, does not)."""
    shared = env.put(b"shared input " + env.new_id().encode())
    first, second = env.new_id(), env.new_id()
    entry = env.script(first, tamper=(shared,))
    env.stage("AGT-STAGE-3", first, [entry, shared], [entry, shared])
    env.submit("AGT-STAGE-3", first, [entry])
    env.finish(first)
    env.wait_ran(first)
    later = env.script(second)
    env.stage("AGT-STAGE-3", second, [later, shared], [later, shared])
    env.submit("AGT-STAGE-3", second, [later])
    env.finish(second)
    env.wait_ran(second)   # the audit compares its copy of `shared` with the source's bytes after the test


@covers("AGT-STAGE-4")
def test_stage_after_submit_is_failed_precondition(env):
    job = env.new_id()
    gated = env.witness is not None
    entry = env.script(job, gate=gated, sleep=0 if gated else 0.3)
    a, b = env.put(b"a"), env.put(b"b")
    env.stage("AGT-STAGE-4", job, [entry, a], [entry, a])
    env.submit("AGT-STAGE-4", job, [entry])
    for files, what in (([b], "a new file"), ([], "an empty list"), ([a], "an already staged file")):
        env.expect_code("AGT-STAGE-4", env.stage_call(job, files), PRECONDITION,
                        f"StageInFiles ({what}) for a submitted job is not FAILED_PRECONDITION")
    if gated:
        env.witness.open_gate(job)
    env.finish(job)
    env.expect_code("AGT-STAGE-4", env.stage_call(job, [b]), PRECONDITION,
                    "StageInFiles for a DONE job is not FAILED_PRECONDITION")
    if not gated:
        env.not_checked("AGT-STAGE-4", "that a refused StageInFiles left the job's directory as it was",
                        "--witness-dir")
    if gated:
        listing = env.witness.end_listing(job)
        expect("AGT-STAGE-4", b not in listing, "a refused StageInFiles still put its file into the job's directory",
               f"job {job}: directory at the end of the job {listing} contains {b}")
    # no state change: the job still answers as before
    env.expect_code("AGT-STAGE-4", env.run_call(job, [entry]), OK, "the job changed after a refused StageInFiles")


@covers("AGT-STAGE-5", needs=("delete",))
def test_content_is_cached_by_file_uuid(env):
    a = env.put(b"popular input")
    env.stage("AGT-STAGE-5", env.new_id(), [a], [a])
    env.target.source.delete(a)
    env.stage("AGT-STAGE-5", env.new_id(), [a], [a],
              "a file already on the agent was read from the source again (not cached by UUID)")
