"""AGT-WIRE-1/2: the seed's service, messages and field numbers, checked on hand-encoded bytes."""
from __future__ import annotations

import grpc

from conformance.env import OK
from conformance.violations import covers, expect, violation
from protos import AgentService_pb2, Common_pb2, RunJob_pb2, StageInFile_pb2

SEED_FILES = (Common_pb2, RunJob_pb2, StageInFile_pb2, AgentService_pb2)


@covers("AGT-WIRE-1")
def test_seed_field_numbers_are_understood(env):
    """Every request of the suite is hand-encoded with the seed's numbers; here each field counts."""
    job = env.new_id()
    entry = env.script(job)
    reply = env.stage_call(job, [entry])
    expect("AGT-WIRE-1", reply.ok and reply.staged == [entry],
           "StageInFilesRequest job = 1, files = 2 (FileId.uuid = 1) not understood",
           lambda: f"{reply.describe()}\nexpected: OK with success_files [{entry!r}] "
                   f"(StageInFilesResponse.success_files = 1, StagedFile.file = 1)")
    # requirements = 2 holding python_version = 1: a malformed or an unsatisfiable one must be seen
    # (an agent that reads the field refuses at least one of them)
    answers = []
    for text in (">=>3", "==0.1"):
        probe = env.new_id()
        probe_entry = env.script(probe)
        env.stage("AGT-WIRE-1", probe, [probe_entry], [probe_entry])
        answers.append(env.run_call(probe, [probe_entry], [text]))
        if answers[-1].ok:
            env.jobs.append(probe)
    expect("AGT-WIRE-1", not all(a.ok for a in answers),
           "RunJobRequest requirements = 2 (JobRequirement.python_version = 1) not understood",
           lambda: "\n".join(a.describe() for a in answers) + "\nexpected: INVALID_ARGUMENT for the malformed "
                   "python_version, FAILED_PRECONDITION for the unsatisfiable one")
    # files = 3: the job is submitted only if field 3 is read as the file list
    reply = env.run_call(job, [entry], [""])
    env.expect_code("AGT-WIRE-1", reply, OK, "RunJobRequest job = 1, files = 3 not understood")
    env.confirm_created(job)


def _reflected_files(channel, timeout: float):
    """FileDescriptorProtos that the agent's server reflection returns for `Agent`, or None."""
    from google.protobuf import descriptor_pb2
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    files, wanted, seen = {}, [("symbol", "Agent")], set()
    while wanted:
        kind, name = wanted.pop()
        if (kind, name) in seen:
            continue
        seen.add((kind, name))
        req = reflection_pb2.ServerReflectionRequest(
            **({"file_containing_symbol": name} if kind == "symbol" else {"file_by_filename": name}))
        try:
            answers = list(stub.ServerReflectionInfo(iter([req]), timeout=timeout))
        except grpc.RpcError as exc:
            if exc.code() in (grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.NOT_FOUND):
                return None
            raise
        for answer in answers:
            if answer.HasField("error_response"):
                if kind == "symbol":
                    return {}
                continue
            for raw in answer.file_descriptor_response.file_descriptor_proto:
                fd = descriptor_pb2.FileDescriptorProto.FromString(raw)
                files[fd.name] = fd
                wanted.extend(("file", dep) for dep in fd.dependency)
    return files


def _shape(files) -> dict:
    """Names -> structure, independent of file names and import paths."""
    shape = {}
    for fd in files:
        pkg = fd.package
        for m in fd.message_type:
            shape[f"message {pkg + '.' if pkg else ''}{m.name}"] = sorted(
                (f.name, f.number, f.label, f.type, f.type_name.lstrip(".")) for f in m.field)
        for e in fd.enum_type:
            shape[f"enum {pkg + '.' if pkg else ''}{e.name}"] = sorted((v.name, v.number) for v in e.value)
        for s in fd.service:
            shape[f"service {pkg + '.' if pkg else ''}{s.name}"] = sorted(
                (m.name, m.input_type.lstrip("."), m.output_type.lstrip("."), m.client_streaming,
                 m.server_streaming) for m in s.method)
        shape[f"syntax of {fd.name}"] = fd.syntax or "proto2"
    return shape


@covers("AGT-WIRE-1")
def test_reflection_matches_seed_when_offered(env):
    """If the agent offers server reflection, its descriptors must be the seed's (names, numbers,
    labels, types, proto2, no package). Without reflection the behavioural checks above stand alone."""
    import pytest
    from google.protobuf import descriptor_pb2

    files = _reflected_files(env.target.channel(), env.timing.call)
    if files is None:
        pytest.skip("not applicable: the agent offers no server reflection (the behavioural AGT-WIRE-1 checks still run)")
    expect("AGT-WIRE-1", files, "server reflection does not know the symbol `Agent` (a proto package?)")
    ours = []
    for module in SEED_FILES:
        fd = descriptor_pb2.FileDescriptorProto()
        module.DESCRIPTOR.CopyToProto(fd)
        ours.append(fd)
    want, got = _shape(ours), _shape(files.values())
    syntaxes = {k: v for k, v in got.items() if k.startswith("syntax of ")}
    relevant = {k: v for k, v in got.items() if not k.startswith("syntax of ")}
    for key, value in want.items():
        if key.startswith("syntax of "):
            continue
        if key not in relevant:
            raise violation("AGT-WIRE-1", "reflected descriptors lack a seed definition",
                            f"missing {key}; reflected: {sorted(relevant)}")
        if relevant[key] != value:
            raise violation("AGT-WIRE-1", "a reflected definition differs from the seed",
                            f"{key}\nreflected: {relevant[key]}\nseed:      {value}")
    bad = {k: v for k, v in syntaxes.items() if v != "proto2"}
    expect("AGT-WIRE-1", not bad, "reflected files are not proto2", lambda: f"{bad}")


@covers("AGT-WIRE-2")
def test_ok_answers_carry_required_fields(env):
    """Raw bytes of OK answers in every state the suite can provoke (WAIT needs --slots and a witness)."""
    job = env.new_id()
    entry = env.script(job, sleep=0.2)
    data = env.put(b"data")
    env.stage("AGT-WIRE-2", job, [entry, data, entry])   # each StagedFile is checked on its bytes
    env.submit("AGT-WIRE-2", job, [entry])
    env.finish(job)
    env.status("AGT-WIRE-2", job)
    t = env.target
    if t.witness is None or t.slots is None:
        env.not_checked("AGT-WIRE-2", "the bytes of a WAIT answer (a job kept waiting behind busy slots)",
                        "--witness-dir and --slots")
        return
    gated = [env.job("AGT-WIRE-2", gate=True) for _ in range(t.slots)]
    for g in gated:
        env.wait_started("AGT-SCHED-2", g)
    waiting = env.job("AGT-WIRE-2")  # all slots busy: answered WAIT, whose code 0 must be on the wire
    env.status("AGT-WIRE-2", waiting)
    for g in gated:
        env.witness.open_gate(g)
    env.finish(waiting)
