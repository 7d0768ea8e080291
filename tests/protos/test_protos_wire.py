"""AGT-WIRE-1: the compiled descriptors match the seed exactly (names, numbers, labels, types)."""
from __future__ import annotations

from google.protobuf.descriptor import FieldDescriptor as F

from protos import AgentService_pb2, Common_pb2, RunJob_pb2, StageInFile_pb2

REQ, OPT, REP = "required", "optional", "repeated"

# (file, message) -> [(field name, number, label, type, message/enum type name or None)]
EXPECTED = {
    (Common_pb2, "FileId"): [("uuid", 1, REQ, F.TYPE_STRING, None)],
    (Common_pb2, "JobId"): [("uuid", 1, REQ, F.TYPE_STRING, None)],
    (RunJob_pb2, "JobRequirement"): [("python_version", 1, OPT, F.TYPE_STRING, None)],
    (RunJob_pb2, "RunJobRequest"): [
        ("job", 1, REQ, F.TYPE_MESSAGE, "JobId"),
        ("requirements", 2, REP, F.TYPE_MESSAGE, "JobRequirement"),
        ("files", 3, REP, F.TYPE_MESSAGE, "FileId"),
    ],
    (RunJob_pb2, "RunJobResponse"): [("code", 1, REQ, F.TYPE_ENUM, "ResponseCode")],
    (StageInFile_pb2, "StageInFilesRequest"): [
        ("job", 1, REQ, F.TYPE_MESSAGE, "JobId"),
        ("files", 2, REP, F.TYPE_MESSAGE, "FileId"),
    ],
    (StageInFile_pb2, "StageInFilesResponse"): [
        ("success_files", 1, REP, F.TYPE_MESSAGE, "StagedFile"),
    ],
    (StageInFile_pb2, "StagedFile"): [("file", 1, REQ, F.TYPE_MESSAGE, "FileId")],
}
LABELS = {F.LABEL_REQUIRED: REQ, F.LABEL_OPTIONAL: OPT, F.LABEL_REPEATED: REP}


def _label(field) -> str:
    # protobuf 5+ exposes is_required/is_repeated; `label` is deprecated but still present.
    if getattr(field, "is_required", None) is not None and not callable(field.is_required):
        if field.is_required:
            return REQ
        return REP if field.is_repeated else OPT
    return LABELS[field.label]


def test_files_are_proto2_without_package():
    for module in (Common_pb2, RunJob_pb2, StageInFile_pb2, AgentService_pb2):
        assert module.DESCRIPTOR.package == "", f"{module.DESCRIPTOR.name} must have no package"
        assert module.DESCRIPTOR.syntax == "proto2" if hasattr(module.DESCRIPTOR, "syntax") else True
        assert module.DESCRIPTOR.name.split("/")[-1] in {
            "Common.proto", "RunJob.proto", "StageInFile.proto", "AgentService.proto"}


def test_messages_match_the_seed_exactly():
    for (module, name), fields in EXPECTED.items():
        desc = module.DESCRIPTOR.message_types_by_name[name]
        assert desc.full_name == name
        got = []
        for f in desc.fields:
            sub = f.message_type or f.enum_type
            got.append((f.name, f.number, _label(f), f.type, sub.full_name if sub else None))
        assert got == fields, f"{name}: {got} != {fields}"
    all_messages = {n for m in (Common_pb2, RunJob_pb2, StageInFile_pb2)
                    for n in m.DESCRIPTOR.message_types_by_name}
    assert all_messages == {name for (_, name) in EXPECTED}


def test_response_code_enum():
    enum = RunJob_pb2.DESCRIPTOR.enum_types_by_name["ResponseCode"]
    assert enum.full_name == "ResponseCode"
    assert [(v.name, v.number) for v in enum.values] == [("WAIT", 0), ("RUN", 1), ("DONE", 2)]


def test_service_method_full_names():
    service = AgentService_pb2.DESCRIPTOR.services_by_name["Agent"]
    assert service.full_name == "Agent"
    methods = [(m.name, m.input_type.full_name, m.output_type.full_name,
                m.client_streaming if hasattr(m, "client_streaming") else False,
                m.server_streaming if hasattr(m, "server_streaming") else False)
               for m in service.methods]
    assert methods == [
        ("StageInFiles", "StageInFilesRequest", "StageInFilesResponse", False, False),
        ("RunJob", "RunJobRequest", "RunJobResponse", False, False),
    ]
    assert [f"/{service.full_name}/{m.name}" for m in service.methods] == [
        "/Agent/StageInFiles", "/Agent/RunJob"]


def test_known_bytes_on_the_wire():
    """Byte-level check, independent of descriptors: field numbers as wire tags."""
    req = RunJob_pb2.RunJobRequest(
        job=Common_pb2.JobId(uuid="a"), requirements=[RunJob_pb2.JobRequirement(python_version="3")],
        files=[Common_pb2.FileId(uuid="b")])
    assert req.SerializeToString() == b"\x0a\x03\x0a\x01a" + b"\x12\x03\x0a\x013" + b"\x1a\x03\x0a\x01b"
    assert RunJob_pb2.RunJobResponse(code=RunJob_pb2.DONE).SerializeToString() == b"\x08\x02"
    stage = StageInFile_pb2.StageInFilesRequest(job=Common_pb2.JobId(uuid="j"), files=[Common_pb2.FileId(uuid="f")])
    assert stage.SerializeToString() == b"\x0a\x03\x0a\x01j\x12\x03\x0a\x01f"
    resp = StageInFile_pb2.StageInFilesResponse(
        success_files=[StageInFile_pb2.StagedFile(file=Common_pb2.FileId(uuid="f"))])
    assert resp.SerializeToString() == b"\x0a\x05\x0a\x03\x0a\x01f"
