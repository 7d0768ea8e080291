"""The committed generated code matches what scripts/gen_protos.py makes from the .proto files."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GENERATED = sorted(p.name for p in (ROOT / "protos").glob("*_pb2*.py*"))


def _load_generator():
    spec = importlib.util.spec_from_file_location("gen_protos", ROOT / "scripts" / "gen_protos.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_proto_has_generated_code():
    for proto in ("Common", "RunJob", "StageInFile", "AgentService"):
        for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py"):
            assert f"{proto}{suffix}" in GENERATED, f"protos/{proto}{suffix} is missing: run make protos"


@pytest.mark.parametrize("name", GENERATED)
def test_generated_code_has_not_drifted(tmp_path, name):
    _load_generator().generate(tmp_path)
    fresh = (tmp_path / "protos" / name).read_bytes()
    committed = (ROOT / "protos" / name).read_bytes()
    assert fresh == committed, f"protos/{name} differs from the .proto files: run `make protos` and commit"
