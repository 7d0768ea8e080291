"""AGT-ID-1..3: canonical UUIDs only, required fields checked by the agent, case-insensitive UUIDs."""
from __future__ import annotations

import uuid

import grpc
from hypothesis import HealthCheck, given, settings, strategies as st

from conformance.env import OK
from conformance.violations import covers, expect, violation
from protos.validation import is_uuid

INVALID = grpc.StatusCode.INVALID_ARGUMENT
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION


def malformed_uuids(valid: str) -> dict[str, str]:
    """Named malformed forms of `valid` (a fresh lower-case UUID)."""
    return {
        "empty": "",
        "parent path": "../x",
        "absolute path": "/etc/passwd",
        "traversal + uuid": "../" + valid,
        "37 characters": valid + "0",
        "35 characters": valid[:-1],
        "non-hex digit": "g" + valid[1:],
        "trailing newline": valid + "\n",
        "leading space": " " + valid,
        "braces": "{" + valid + "}",
        "no dashes": valid.replace("-", ""),
        "urn form": "urn:uuid:" + valid,
        "dashes moved": valid.replace("-", "")[:8] + "-" + valid.replace("-", "")[8:12] + "-"
                        + valid.replace("-", "")[12:16] + "-" + valid.replace("-", "")[16:28] + "-"
                        + valid.replace("-", "")[28:],
        "arabic-indic digit": "\u0663" + valid[1:],
        "NUL character": valid[:10] + "\x00" + valid[11:],
        "dot-dot": "..",
    }


@covers("AGT-ID-1")
def test_malformed_uuids_are_invalid_argument(env):
    good = env.put(b"print('never run')\n")
    for name, bad in malformed_uuids(env.new_id()).items():
        summary = f"malformed UUID ({name}) not rejected with INVALID_ARGUMENT"
        job = env.new_id()
        env.expect_code("AGT-ID-1", env.stage_call(bad, [good]), INVALID, summary + " (StageInFiles job)")
        env.expect_code("AGT-ID-1", env.run_call(bad, [good]), INVALID, summary + " (RunJob job)")
        env.expect_code("AGT-ID-1", env.stage_call(job, [good, bad]), INVALID, summary + " (StageInFiles file)")
        env.assert_not_staged("AGT-ID-1", job, good, f"a StageInFiles with a malformed file UUID ({name})")
        job = env.new_id()
        env.stage("AGT-ID-1", job, [good], [good])
        env.expect_code("AGT-ID-1", env.run_call(job, [good, bad]), INVALID, summary + " (RunJob file)")
        env.assert_not_created("AGT-ID-1", job, f"a RunJob with a malformed file UUID ({name})")


@covers("AGT-ID-1")
def test_generated_non_uuids_are_invalid_argument(env):
    """Hypothesis: one-character edits of a UUID and arbitrary text, every one rejected."""
    good = env.put(b"print('never run')\n")
    base = str(uuid.UUID(int=0x0123456789ABCDEF0123456789ABCDEF))
    edits = st.tuples(st.integers(0, 36), st.sampled_from(["insert", "delete", "replace"]),
                      st.characters(codec="utf-8", exclude_characters="\x00")).map(
        lambda t: (base[:t[0]] + t[2] + base[t[0]:]) if t[1] == "insert" else
        (base[:t[0]] + base[t[0] + 1:]) if t[1] == "delete" else (base[:t[0]] + t[2] + base[t[0] + 1:]))
    texts = st.one_of(edits, st.text(max_size=40)).filter(lambda s: not is_uuid(s))

    @settings(max_examples=40, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(bad=texts)
    def check(bad):
        env.expect_code("AGT-ID-1", env.stage_call(env.new_id(), [good, bad]), INVALID,
                        "malformed file UUID not rejected with INVALID_ARGUMENT (StageInFiles)")
        env.expect_code("AGT-ID-1", env.run_call(bad, [good]), INVALID,
                        "malformed job UUID not rejected with INVALID_ARGUMENT (RunJob)")

    check()


@covers("AGT-ID-1")
def test_any_hex_uuid_is_valid(env):
    """Version and variant bits are not checked: any 8-4-4-4-12 hex string is a valid UUID."""
    for version, variant in (("0", "0"), ("f", "f"), ("7", "c")):
        fresh = env.new_id()
        text = fresh[:14] + version + fresh[15:19] + variant + fresh[20:]
        file = env.put(b"x", text)
        reply = env.stage_call(env.new_id(), [file])
        expect("AGT-ID-1", reply.ok and reply.staged == [file], "a valid hex UUID is refused",
               lambda: f"{reply.describe()}\nexpected: OK, success_files [{file!r}]")


@covers("AGT-ID-2")
def test_missing_required_fields_are_invalid_argument(env):
    good = env.put(b"print('never run')\n")
    job = env.new_id()
    cases = [
        ("StageInFiles without job", lambda: env.stage_call(None, [good], job_present=False)),
        ("StageInFiles with JobId without uuid", lambda: env.stage_call(None, [good])),
        ("RunJob without job", lambda: env.run_call(None, [good], job_present=False)),
        ("RunJob with JobId without uuid", lambda: env.run_call(None, [good])),
    ]
    for name, call in cases:
        env.expect_code("AGT-ID-2", call(), INVALID, f"{name}: not INVALID_ARGUMENT")
    env.expect_code("AGT-ID-2", env.stage_call(job, [good, None]), INVALID,
                    "StageInFiles with a FileId without uuid: not INVALID_ARGUMENT")
    env.assert_not_staged("AGT-ID-2", job, good, "a StageInFiles with a FileId without uuid")
    job = env.new_id()
    env.stage("AGT-ID-2", job, [good], [good])
    env.expect_code("AGT-ID-2", env.run_call(job, [good, None]), INVALID,
                    "RunJob with a FileId without uuid: not INVALID_ARGUMENT")
    env.assert_not_created("AGT-ID-2", job, "a RunJob with a FileId without uuid")


@covers("AGT-ID-3")
def test_uuids_are_case_insensitive(env):
    job = env.new_id()
    entry = env.script(job, sleep=0.05)
    data = env.put(b"case")
    staged = env.stage("AGT-ID-3", job.upper(), [entry.upper(), data, data.upper()])
    if staged != [entry, data]:
        detail = (f"request: StageInFiles(job={job.upper()!r}, files=[{entry.upper()!r}, {data!r}, {data.upper()!r}])"
                  f"\nreceived: success_files {staged}\nexpected: [{entry!r}, {data!r}]")
        lowered = [s.lower() for s in staged]
        if len(set(lowered)) < len(lowered):  # listed twice: a case problem, or no de-duplication at all?
            probe = env.put(b"probe")
            twice = env.stage("AGT-STAGE-1", env.new_id(), [probe, probe])
            expect("AGT-STAGE-1", twice == [probe], "a file named twice in one request was listed twice",
                   f"request: StageInFiles(files=[{probe!r}, {probe!r}])\nreceived: success_files {twice}")
        expect("AGT-ID-3", lowered == [entry, data], "case variants of one UUID were not treated as the same file",
               detail)
        raise violation("AGT-ID-3", "StageInFiles output is not in lower case", detail)
    # staged under upper case, run under lower case: the same job and the same files
    reply = env.run_call(job, [entry, data.upper()])
    env.expect_code("AGT-ID-3", reply, OK, "files staged under upper-case UUIDs are not found by a lower-case RunJob")
    env.confirm_created(job)
    env.expect_code("AGT-ID-3", env.run_call(job.upper()), OK,
                    "a status query with the upper-case job id does not find the job")
    env.expect_code(("AGT-ID-3", "AGT-RUN-8"), env.run_call(job.upper(), [entry.upper(), data]), OK,
                    "a repeat whose files differ only in case is not a status query")
    reply = env.stage_call(job.upper(), [data])
    if reply.code is not PRECONDITION:
        env.expect_code("AGT-STAGE-4", env.stage_call(job, [data]), PRECONDITION,
                        "StageInFiles for a submitted job is not FAILED_PRECONDITION")
        env.expect_code("AGT-ID-3", reply, PRECONDITION,
                        "StageInFiles with the upper-case id of a submitted job is not FAILED_PRECONDITION")
    env.finish(job)
    if env.witness is None:
        env.not_checked("AGT-ID-3", "that the job's files lie under their lower-case UUIDs", "--witness-dir")
    else:
        runs = env.wait_ran(job)
        expect("AGT-ID-3", runs and {entry, data} <= set(runs[0].listing),
               "the job's files do not lie under their lower-case UUIDs",
               lambda: f"job {job}: listing {runs[0].listing if runs else None}, expected {entry}, {data}")
