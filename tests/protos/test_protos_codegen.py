"""The committed generated code matches what scripts/gen_protos.py makes from the .proto files."""
from __future__ import annotations

import hashlib
import importlib.util
import re
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

from protos import AgentExtensions_pb2, AgentExtensions_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]
GENERATED = sorted(p.name for p in (ROOT / "protos").glob("*_pb2*.py*"))
CONTRACT_EXT = ROOT.parent / "shared" / "PROTOCOL-EXT.md"
# v1 is frozen (docs/SPEC.md): the extension adds a file and changes none of these bytes.
V1_SHA256 = {
    "Common.proto": "fd07bb808236cceb18f84e5ddcb2b3205a6d7a2fde05df479a143f4820ae61c5",
    "RunJob.proto": "10089f09b8857f075462137e0407ae31637d6c99c8ee56df51615dc7b0144adb",
    "StageInFile.proto": "77a1f81a780220c0076b68b09504a808f9784b225587431cc833f57f695d6b1e",
    "AgentService.proto": "eac2917c46ee0e470a6536b3a05ade045ed78fbdd2244cbce49a17d941363077",
}


def _load_generator():
    spec = importlib.util.spec_from_file_location("gen_protos", ROOT / "scripts" / "gen_protos.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_proto_has_generated_code():
    assert set(_load_generator().PROTO_FILES) == {p.name for p in (ROOT / "protos").glob("*.proto")}
    for proto in ("Common", "RunJob", "StageInFile", "AgentService", "AgentExtensions"):
        for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py"):
            assert f"{proto}{suffix}" in GENERATED, f"protos/{proto}{suffix} is missing: run make protos"


@pytest.mark.parametrize("name", GENERATED)
def test_generated_code_has_not_drifted(tmp_path, name):
    _load_generator().generate(tmp_path)
    fresh = (tmp_path / "protos" / name).read_bytes()
    committed = (ROOT / "protos" / name).read_bytes()
    assert fresh == committed, f"protos/{name} differs from the .proto files: run `make protos` and commit"


@pytest.mark.parametrize("name", sorted(V1_SHA256))
def test_v1_proto_files_are_unchanged(name):
    digest = hashlib.sha256((ROOT / "protos" / name).read_bytes()).hexdigest()
    assert digest == V1_SHA256[name], f"protos/{name} changed: v1 is frozen (AGT-WIRE-1, AGT-EXT-1)"


def _definitions(text: str) -> list[str]:
    """The proto's definitions, one token run per line, without comments, blank lines or imports
    (the import path is the build's choice: AGT-EXT-1)."""
    lines = []
    for line in text.splitlines():
        line = re.sub(r"//.*", "", line).strip()
        if line and not line.startswith("import "):
            lines.append(" ".join(line.split()))
    return lines


@pytest.mark.skipif(not CONTRACT_EXT.exists(), reason=f"contract not found at {CONTRACT_EXT}")
def test_extension_proto_is_the_contracts_definitions():
    block = re.search(r"```proto\n(.*?)```", CONTRACT_EXT.read_text(), re.S).group(1)
    ours = (ROOT / "protos" / "AgentExtensions.proto").read_text()
    assert _definitions(ours) == _definitions(block)
    imports = re.findall(r'^import "([^"]+)";', ours, re.M)
    assert imports == ["protos/Common.proto", "protos/RunJob.proto"]


def test_extension_service_method_names_on_the_wire():
    service = AgentExtensions_pb2.DESCRIPTOR.services_by_name["AgentExtensions"]
    assert AgentExtensions_pb2.DESCRIPTOR.package == ""
    proto = descriptor_pb2.FileDescriptorProto.FromString(AgentExtensions_pb2.DESCRIPTOR.serialized_pb)
    assert proto.syntax in ("", "proto2")
    names = {m.name: (m.client_streaming, m.server_streaming) for m in service.methods}
    assert names == {"GetCapabilities": (False, False), "GetOutcome": (False, False),
                     "CancelJob": (False, False), "WatchJobs": (False, True)}
    assert service.full_name == "AgentExtensions"
    assert hasattr(AgentExtensions_pb2_grpc, "AgentExtensionsStub")
