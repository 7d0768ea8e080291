from protos import Common_pb2 as _Common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ResponseCode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WAIT: _ClassVar[ResponseCode]
    RUN: _ClassVar[ResponseCode]
    DONE: _ClassVar[ResponseCode]
WAIT: ResponseCode
RUN: ResponseCode
DONE: ResponseCode

class JobRequirement(_message.Message):
    __slots__ = ("python_version",)
    PYTHON_VERSION_FIELD_NUMBER: _ClassVar[int]
    python_version: str
    def __init__(self, python_version: _Optional[str] = ...) -> None: ...

class RunJobRequest(_message.Message):
    __slots__ = ("job", "requirements", "files")
    JOB_FIELD_NUMBER: _ClassVar[int]
    REQUIREMENTS_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    job: _Common_pb2.JobId
    requirements: _containers.RepeatedCompositeFieldContainer[JobRequirement]
    files: _containers.RepeatedCompositeFieldContainer[_Common_pb2.FileId]
    def __init__(self, job: _Optional[_Union[_Common_pb2.JobId, _Mapping]] = ..., requirements: _Optional[_Iterable[_Union[JobRequirement, _Mapping]]] = ..., files: _Optional[_Iterable[_Union[_Common_pb2.FileId, _Mapping]]] = ...) -> None: ...

class RunJobResponse(_message.Message):
    __slots__ = ("code",)
    CODE_FIELD_NUMBER: _ClassVar[int]
    code: ResponseCode
    def __init__(self, code: _Optional[_Union[ResponseCode, str]] = ...) -> None: ...
