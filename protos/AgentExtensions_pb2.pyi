from protos import Common_pb2 as _Common_pb2
from protos import RunJob_pb2 as _RunJob_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EndKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXITED: _ClassVar[EndKind]
    SIGNALLED: _ClassVar[EndKind]
    INTERRUPTED: _ClassVar[EndKind]
    CANCELLED: _ClassVar[EndKind]
EXITED: EndKind
SIGNALLED: EndKind
INTERRUPTED: EndKind
CANCELLED: EndKind

class CapabilitiesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Capabilities(_message.Message):
    __slots__ = ("extensions",)
    EXTENSIONS_FIELD_NUMBER: _ClassVar[int]
    extensions: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, extensions: _Optional[_Iterable[str]] = ...) -> None: ...

class JobOutcome(_message.Message):
    __slots__ = ("job", "code", "end", "exit_status", "signal", "interpreter_version", "submitted_ms", "started_ms", "ended_ms", "stdout_tail", "stderr_tail", "stdout_truncated", "stderr_truncated")
    JOB_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    EXIT_STATUS_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    INTERPRETER_VERSION_FIELD_NUMBER: _ClassVar[int]
    SUBMITTED_MS_FIELD_NUMBER: _ClassVar[int]
    STARTED_MS_FIELD_NUMBER: _ClassVar[int]
    ENDED_MS_FIELD_NUMBER: _ClassVar[int]
    STDOUT_TAIL_FIELD_NUMBER: _ClassVar[int]
    STDERR_TAIL_FIELD_NUMBER: _ClassVar[int]
    STDOUT_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    STDERR_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    job: _Common_pb2.JobId
    code: _RunJob_pb2.ResponseCode
    end: EndKind
    exit_status: int
    signal: int
    interpreter_version: str
    submitted_ms: int
    started_ms: int
    ended_ms: int
    stdout_tail: bytes
    stderr_tail: bytes
    stdout_truncated: bool
    stderr_truncated: bool
    def __init__(self, job: _Optional[_Union[_Common_pb2.JobId, _Mapping]] = ..., code: _Optional[_Union[_RunJob_pb2.ResponseCode, str]] = ..., end: _Optional[_Union[EndKind, str]] = ..., exit_status: _Optional[int] = ..., signal: _Optional[int] = ..., interpreter_version: _Optional[str] = ..., submitted_ms: _Optional[int] = ..., started_ms: _Optional[int] = ..., ended_ms: _Optional[int] = ..., stdout_tail: _Optional[bytes] = ..., stderr_tail: _Optional[bytes] = ..., stdout_truncated: _Optional[bool] = ..., stderr_truncated: _Optional[bool] = ...) -> None: ...

class CancelResponse(_message.Message):
    __slots__ = ("code",)
    CODE_FIELD_NUMBER: _ClassVar[int]
    code: _RunJob_pb2.ResponseCode
    def __init__(self, code: _Optional[_Union[_RunJob_pb2.ResponseCode, str]] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("jobs",)
    JOBS_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[_Common_pb2.JobId]
    def __init__(self, jobs: _Optional[_Iterable[_Union[_Common_pb2.JobId, _Mapping]]] = ...) -> None: ...

class JobEvent(_message.Message):
    __slots__ = ("job", "code", "outcome")
    JOB_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    job: _Common_pb2.JobId
    code: _RunJob_pb2.ResponseCode
    outcome: JobOutcome
    def __init__(self, job: _Optional[_Union[_Common_pb2.JobId, _Mapping]] = ..., code: _Optional[_Union[_RunJob_pb2.ResponseCode, str]] = ..., outcome: _Optional[_Union[JobOutcome, _Mapping]] = ...) -> None: ...
