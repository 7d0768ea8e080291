"""AGT-ERR-1..3: unparseable bytes, huge requests, path traversal and symlinks in the source."""
from __future__ import annotations

import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc

from conformance import wire
from conformance.env import OK
from conformance.violations import AgentUnavailable, covers, expect, violation
from protos.states import JobState

INVALID = grpc.StatusCode.INVALID_ARGUMENT
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED


@covers("AGT-ERR-1")
def test_unparseable_bytes_are_rejected(env):
    allowed = (INVALID, grpc.StatusCode.INTERNAL)
    for name, blob in wire.UNPARSEABLE.items():
        for method in (wire.STAGE_METHOD, wire.RUN_METHOD):
            env.expect_code("AGT-ERR-1", env.send(method, blob, f"{method} with raw bytes {blob!r} ({name})"),
                            allowed, "unparseable request bytes did not get INVALID_ARGUMENT or INTERNAL")
    # a valid request followed by garbage: nothing of it may take effect
    job = env.new_id()
    entry = env.script(job)
    env.stage("AGT-ERR-1", job, [entry], [entry])
    tail = wire.UNPARSEABLE["truncated length-delimited field"]
    reply = env.send(wire.RUN_METHOD, wire.run_request(job, [entry]) + tail, f"RunJob(job={job!r}, files=[{entry!r}]) + {tail!r}")
    env.expect_code("AGT-ERR-1", reply, allowed, "unparseable request bytes did not get INVALID_ARGUMENT or INTERNAL")
    env.assert_not_created("AGT-ERR-1", job, "an unparseable RunJob")
    other = env.new_id()
    reply = env.send(wire.STAGE_METHOD, wire.stage_request(other, [entry]) + tail, f"StageInFiles(job={other!r}) + {tail!r}")
    env.expect_code("AGT-ERR-1", reply, allowed, "unparseable request bytes did not get INVALID_ARGUMENT or INTERNAL")
    env.assert_not_staged("AGT-ERR-1", other, entry, "an unparseable StageInFiles")


def _alive(env, rid, after):
    try:
        env.stage_call(env.new_id(), [])
    except AgentUnavailable as exc:
        raise violation(rid, "the agent stopped answering after a malformed or large request",
                        f"after {after}: {exc}") from None


@covers("AGT-ERR-2")
def test_huge_and_hostile_requests_leave_agent_and_jobs_alone(env):
    witness = env.witness is not None
    bystander = env.job("AGT-ERR-2", gate=witness, sleep=0 if witness else 1.0)
    big = 6 * 1024 * 1024
    cases = [
        ("RunJob with a 6 MiB python_version", wire.RUN_METHOD,
         wire.run_request(env.new_id(), [env.new_id()], ["x" * big]), (INVALID, EXHAUSTED), "AGT-ERR-2"),
        ("StageInFiles with 2000 files absent from the source", wire.STAGE_METHOD,
         wire.stage_request(env.new_id(), [env.new_id() for _ in range(2_000)]), (OK, EXHAUSTED), "AGT-ERR-2"),
        ("6 MiB of unparseable bytes", wire.RUN_METHOD, b"\x0a\xff\xff\xff\x7f" + b"\xff" * big,
         (INVALID, grpc.StatusCode.INTERNAL, EXHAUSTED), "AGT-ERR-2"),
        ("RunJob naming the bystander with 20000 requirements", wire.RUN_METHOD,
         wire.run_request(bystander, [], ["3"] * 20_000), (grpc.StatusCode.ALREADY_EXISTS, EXHAUSTED), "AGT-RUN-8"),
    ]
    for name, method, payload, allowed, rid in cases:
        code, details, _ = env.target.call(method, payload)
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            _alive(env, "AGT-ERR-2", name)
        names = " or ".join(c.name for c in allowed)
        expect(rid, code in allowed, "a large or hostile request got an unexpected status",
               f"request: {name} ({len(payload)} bytes)\nreceived: {code.name} {details[:200]!r}\nexpected: {names} "
               f"(RESOURCE_EXHAUSTED when over the agent's size limit)")
        _alive(env, "AGT-ERR-2", name)
    with ThreadPoolExecutor(8) as pool:  # a burst of malformed calls at once
        list(pool.map(lambda i: env.target.call(wire.RUN_METHOD, wire.UNPARSEABLE["wire type 7"] * (i + 1)), range(64)))
    _alive(env, "AGT-ERR-2", "a burst of 64 concurrent unparseable requests")
    state = env.status("AGT-ERR-2", bystander)
    expect("AGT-ERR-2", state in (JobState.WAIT, JobState.RUN, JobState.DONE), "another job changed")
    if witness:
        env.witness.open_gate(bystander)
    env.finish(bystander)
    if witness:
        runs = env.runs(bystander)
        expect("AGT-ERR-2", len(runs) == 1 and runs[0].mark == "entry", "a request changed another job",
               f"job {bystander}: {len(runs)} executions")


@covers("AGT-ERR-2", needs=("limit",))
def test_request_over_size_limit_is_resource_exhausted(env):
    limit = env.target.max_request_bytes
    payload = wire.run_request(env.new_id(), [env.new_id()], ["x" * (limit + 64 * 1024)])
    code, details, _ = env.target.call(wire.RUN_METHOD, payload)
    expect("AGT-ERR-2", code is EXHAUSTED, "a request over the agent's size limit is not RESOURCE_EXHAUSTED",
           f"request: RunJob with a python_version of {limit + 64 * 1024} characters ({len(payload)} bytes; "
           f"--max-request-bytes {limit})\n"
           f"received: {code.name} {details[:200]!r}\nexpected: RESOURCE_EXHAUSTED")
    _alive(env, "AGT-ERR-2", "a request over the size limit")


@covers("AGT-ERR-3")
def test_traversal_names_are_refused(env):
    entry = env.put(b"print('x')\n")
    for bad in ("../" + env.new_id(), "../../" + entry, "/tmp/" + env.new_id(), entry + "/..", "./" + entry[2:]):
        env.expect_code(("AGT-ERR-3", "AGT-ID-1"), env.stage_call(env.new_id(), [bad]), INVALID,
                        "a path-like file UUID was not refused")
        env.expect_code(("AGT-ERR-3", "AGT-ID-1"), env.stage_call(bad, [entry]), INVALID,
                        "a path-like job UUID was not refused")
    for text in ("../../../bin/sh", "/usr/bin/python3", "$(id)"):  # refused as malformed, never used as a path
        env.expect_code("AGT-RUN-4", env.run_call(env.new_id(), [entry], [text]), INVALID,
                        "a path-like python_version was not refused")


@covers("AGT-ERR-3", needs=("symlink",))
def test_symlink_in_source_is_not_followed(env):
    """A source entry that links outside the source must not be staged (its target is outside)."""
    with tempfile.TemporaryDirectory(prefix="conformance-outside-") as outside:
        secret = Path(outside) / "secret"
        secret.write_bytes(b"outside the source " + env.new_id().encode())
        link = env.new_id()
        env.target.source.symlink(link, secret)
        env.files.append(link)
        job, absent = env.new_id(), env.new_id()
        staged = env.stage("AGT-ERR-3", job, [link, absent])
        expect("AGT-STAGE-1", absent not in staged, "a file absent from the source was listed as staged",
               f"received: success_files {staged}; {absent} is not in the source")
        expect("AGT-ERR-3", link not in staged, "a symlink in the source pointing outside it was staged",
               f"source entry {link} -> {secret} (outside the source)\nreceived: success_files {staged}\n"
               f"expected: not listed (the agent must not read outside its own directories)")
        dir_link = env.new_id()
        os.symlink(outside, Path(str(env.target.source.dir)) / dir_link)
        env.files.append(dir_link)
        staged = env.stage("AGT-ERR-3", job, [dir_link])
        expect("AGT-ERR-3", dir_link not in staged, "a symlink to a folder outside the source was staged",
               f"source entry {dir_link} -> {outside}\nreceived: success_files {staged}")
