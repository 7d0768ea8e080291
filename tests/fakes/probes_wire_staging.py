"""The probes of the broken agents about identifiers, the wire and staging (registered in
broken_probe_kit.PROBES, run by tests/fakes/test_fakes_broken_defects.py)."""
from __future__ import annotations

import uuid

import grpc

from broken_probe_kit import W, appender, done, output_of, probe, raw_status, submit, wait_for  # noqa: F401
from fakes import broken
from fakes.agent import full_method_name
from protos import Common_pb2, RunJob_pb2, StageInFile_pb2  # noqa: F401
from shared_helpers import code_of
from shared_helpers import new_id as new


# --- identifiers and wire ----------------------------------------------------------------------

@probe(broken.AcceptsMalformedUuid)
def probe_malformed_uuid(agent, tmp):
    for bad in (uuid.uuid4().hex, "{" + new() + "}", "urn:uuid:" + new()):
        if code_of(agent.client.stage_in, bad, []) == "OK":
            return f"StageInFiles accepted job {bad!r}"


@probe(broken.AcceptsMissingJob)
def probe_missing_job(agent, tmp):
    for message in (StageInFile_pb2.StageInFilesRequest(), RunJob_pb2.RunJobRequest(job=Common_pb2.JobId())):
        method = "StageInFiles" if isinstance(message, StageInFile_pb2.StageInFilesRequest) else "RunJob"
        code = raw_status(agent, method, message.SerializePartialToString())
        if code is not grpc.StatusCode.INVALID_ARGUMENT:
            return f"{method} without job.uuid answered {code.name}"


@probe(broken.CaseSensitiveUuids)
def probe_case_sensitive(agent, tmp):
    job, f = new(), agent.put(b"pass\n")
    agent.client.stage_in(job.upper(), [f])
    code = code_of(agent.client.run, job, [f.upper()])
    if code != "OK":
        return f"RunJob with the other case answered {code}"


@probe(broken.EchoesUuidCase)
def probe_echoes_case(agent, tmp):
    f = agent.put(b"pass\n")
    listed = agent.client.stage_in(new(), [f.upper()])
    if listed != [f]:
        return f"success_files {listed} not in lower case"


@probe(broken.OkWithoutCode, slots=1)
def probe_ok_without_code(agent, tmp):
    submit(agent, appender(tmp / "blocker", sleep=30))           # holds the only slot
    job, f = new(), agent.put(b"pass\n")
    agent.client.stage_in(job, [f])
    run = RunJob_pb2.RunJobRequest(job=Common_pb2.JobId(uuid=job), files=[Common_pb2.FileId(uuid=f)])
    raw = agent.channel.unary_unary(full_method_name("RunJob"))(run.SerializeToString(), timeout=10)
    response = RunJob_pb2.RunJobResponse.FromString(raw)
    assert response.code == W                                    # what a Python client sees
    if not response.HasField("code"):
        return f"OK RunJob response without code: {raw!r}"


@probe(broken.ServesUnderPackage, no_happy_path='answers only under /agent.Agent/ (tested in test_fakes_broken_catalogue.py)')
def probe_under_package(agent, tmp):
    code = raw_status(agent, "StageInFiles", StageInFile_pb2.StageInFilesRequest(
        job=Common_pb2.JobId(uuid=new())).SerializeToString())
    if code is not grpc.StatusCode.OK:
        return f"/Agent/StageInFiles answered {code.name}"


@probe(broken.OkForUnparseableBytes)
def probe_ok_for_garbage(agent, tmp):
    for method in ("StageInFiles", "RunJob"):
        code = raw_status(agent, method, b"\xff\xff\xff")
        if code not in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.INTERNAL):
            return f"{method} answered {code.name} to bytes that do not parse"


@probe(broken.IgnoresSizeLimit)
def probe_size_limit(agent, tmp):                    # the agent is configured with the 4 MiB default
    big = StageInFile_pb2.StageInFilesRequest(job=Common_pb2.JobId(uuid="x" * (5 * 1024 * 1024)))
    code = raw_status(agent, "StageInFiles", big.SerializeToString())
    if code is not grpc.StatusCode.RESOURCE_EXHAUSTED:
        return f"a 5 MiB request answered {code.name}"


# --- staging ----------------------------------------------------------------------------------

@probe(broken.ListsUnstagedFiles)
def probe_lists_unstaged(agent, tmp):
    absent = new()
    listed = agent.client.stage_in(new(), [absent])
    if listed:
        return f"absent file listed: {listed}"


@probe(broken.ListsDuplicatesTwice)
def probe_lists_duplicates(agent, tmp):
    f = agent.put(b"pass\n")
    listed = agent.client.stage_in(new(), [f, f.upper(), f])
    if listed != [f]:
        return f"listed {listed}"


@probe(broken.ListsOnlyNewlyStaged)
def probe_lists_only_new(agent, tmp):
    job, f = new(), agent.put(b"pass\n")
    first, again = agent.client.stage_in(job, [f]), agent.client.stage_in(job, [f])
    if first != again:
        return f"first {first}, repeat {again}"


@probe(broken.LinksInsteadOfCopying)
def probe_links_source(agent, tmp):
    marker = tmp / "stage3"
    job, f = new(), agent.put(appender(marker, "staged"))
    agent.client.stage_in(job, [f])
    agent.put(appender(marker, "changed"), f)                     # the source changes afterwards
    agent.client.run(job, [f])
    marker_text = output_of(agent, job, marker)
    if marker_text != "staged":
        return f"job ran the source's later bytes: {marker_text!r}"


@probe(broken.StageChangesSubmittedJob)
def probe_stage_after_submit(agent, tmp):
    job, f, _ = submit(agent)
    code = code_of(agent.client.stage_in, job, [agent.put(b"late\n")])
    if code != "FAILED_PRECONDITION":
        return f"StageInFiles after submission answered {code}"


@probe(broken.AcceptsUnstagedRunJob)
def probe_unstaged_run(agent, tmp):
    job, f = new(), agent.put(b"pass\n")
    code = code_of(agent.client.run, job, [f])
    if code != "FAILED_PRECONDITION":
        return f"RunJob with an unstaged file answered {code}"


@probe(broken.FollowsSymlinksInSource)
def probe_follows_symlink(agent, tmp):
    secret = tmp / "outside-secret"
    secret.write_bytes(b"secret\n")
    f = new()
    (agent.source / f).symlink_to(secret)
    listed = agent.client.stage_in(new(), [f])
    if listed:
        return f"a symlink to {secret} was staged"


# --- RunJob -----------------------------------------------------------------------------------

@probe(broken.AcceptsRunWithoutFiles)
def probe_run_without_files(agent, tmp):
    job = new()
    agent.client.stage_in(job, [agent.put(b"pass\n")])
    code = code_of(agent.client.run, job, [])
    if code != "INVALID_ARGUMENT":
        return f"first RunJob without files answered {code}"
