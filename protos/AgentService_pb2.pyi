from protos import RunJob_pb2 as _RunJob_pb2
from protos import StageInFile_pb2 as _StageInFile_pb2
from google.protobuf import descriptor as _descriptor
from typing import ClassVar as _ClassVar

DESCRIPTOR: _descriptor.FileDescriptor
