"""Regenerate the committed protobuf and gRPC code in protos/ from the .proto files."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_FILES = (
    "Common.proto", "RunJob.proto", "StageInFile.proto", "AgentService.proto",  # v1 (frozen)
    "AgentExtensions.proto",  # the optional extension service (PROTOCOL-EXT)
)


def generate(out_dir: Path) -> None:
    """Compile the .proto files with `-I ROOT` so imports read `from protos import X_pb2`."""
    from grpc_tools import protoc  # imported here: grpcio-tools is a dev/test dependency

    out_dir.mkdir(parents=True, exist_ok=True)
    include = Path(protoc.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{ROOT}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *[f"protos/{name}" for name in PROTO_FILES],
    ]
    code = protoc.main(args)
    if code != 0:
        raise SystemExit(f"protoc failed with exit code {code}: {' '.join(args)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--out", type=Path, default=ROOT,
        help="folder that receives protos/*_pb2*.py(i) (default: the project root, in place)",
    )
    args = parser.parse_args(argv)
    generate(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
