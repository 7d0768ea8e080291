"""Raw protobuf bytes: a hand encoder and a strict decoder, so the suite sees what is on the wire."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from protos import AgentService_pb2

SERVICE = AgentService_pb2.DESCRIPTOR.services_by_name["Agent"]
STAGE_METHOD = f"/{SERVICE.full_name}/{SERVICE.methods_by_name['StageInFiles'].name}"
RUN_METHOD = f"/{SERVICE.full_name}/{SERVICE.methods_by_name['RunJob'].name}"

VARINT, I64, LEN, SGROUP, EGROUP, I32 = 0, 1, 2, 3, 4, 5


class WireError(ValueError):
    """Bytes that are not a well-formed protobuf message."""


def varint(value: int) -> bytes:
    if value < 0:
        value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def tag(number: int, wire_type: int) -> bytes:
    return varint((number << 3) | wire_type)


def field_bytes(number: int, payload: bytes) -> bytes:
    """A length-delimited field (string or embedded message)."""
    return tag(number, LEN) + varint(len(payload)) + payload


def field_varint(number: int, value: int) -> bytes:
    return tag(number, VARINT) + varint(value)


def _id(uuid: str | None) -> bytes:
    """A FileId or JobId (both: uuid = 1); None leaves the required uuid out."""
    return b"" if uuid is None else field_bytes(1, uuid.encode("utf-8", "surrogatepass"))


def stage_request(job: str | None, files: Iterable[str | None] = (), *, job_present: bool = True) -> bytes:
    """StageInFilesRequest by hand: job = 1, files = 2 (None: a FileId/JobId without uuid)."""
    head = field_bytes(1, _id(job)) if job_present else b""
    return head + b"".join(field_bytes(2, _id(f)) for f in files)


def run_request(job: str | None, files: Iterable[str | None] = (), requirements: Sequence[str | None] = (),
                *, job_present: bool = True) -> bytes:
    """RunJobRequest by hand: job = 1, requirements = 2 (python_version = 1), files = 3."""
    parts = [field_bytes(1, _id(job))] if job_present else []
    parts += [field_bytes(2, b"" if req is None else field_bytes(1, req.encode("utf-8", "surrogatepass")))
              for req in requirements]
    parts += [field_bytes(3, _id(f)) for f in files]
    return b"".join(parts)


@dataclass(frozen=True)
class Field:
    number: int
    wire_type: int
    value: int | bytes


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result, shift = 0, 0
    while True:
        if pos >= len(data):
            raise WireError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise WireError("varint longer than 10 bytes")


def parse(data: bytes) -> list[Field]:
    """Split a message into its fields (no schema); raise WireError on malformed bytes."""
    fields, pos = [], 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise WireError("field number 0")
        if wire_type == VARINT:
            value, pos = _read_varint(data, pos)
        elif wire_type == LEN:
            size, pos = _read_varint(data, pos)
            if pos + size > len(data):
                raise WireError(f"field {number}: length {size} runs past the end")
            value, pos = data[pos:pos + size], pos + size
        elif wire_type == I64:
            value, pos = data[pos:pos + 8], pos + 8
        elif wire_type == I32:
            value, pos = data[pos:pos + 4], pos + 4
        else:
            raise WireError(f"field {number}: unsupported wire type {wire_type}")
        if pos > len(data):
            raise WireError(f"field {number}: truncated")
        fields.append(Field(number, wire_type, value))
    return fields


def decode_run_response(data: bytes) -> tuple[int | None, str]:
    """(code, problem): code is None and problem says why when `code = 1` is absent or bad."""
    try:
        fields = parse(data)
    except WireError as exc:
        return None, f"response bytes do not parse: {exc}"
    codes = [f for f in fields if f.number == 1]
    if not codes:
        return None, f"RunJobResponse.code (field 1) is missing; raw bytes {data!r}"
    last = codes[-1]
    if last.wire_type != VARINT:
        return None, f"RunJobResponse.code has wire type {last.wire_type}, not varint; raw bytes {data!r}"
    if last.value not in (0, 1, 2):
        return None, f"RunJobResponse.code is {last.value}, not 0 (WAIT), 1 (RUN) or 2 (DONE); raw {data!r}"
    return int(last.value), ""


def decode_stage_response(data: bytes) -> tuple[list[str] | None, str]:
    """(uuids, problem): every StagedFile (field 1) must carry file (1) with uuid (1)."""
    try:
        out = []
        for i, entry in enumerate(parse(data)):
            if entry.number != 1:
                continue
            if entry.wire_type != LEN:
                return None, f"success_files[{i}] has wire type {entry.wire_type}; raw {data!r}"
            files = [f for f in parse(entry.value) if f.number == 1 and f.wire_type == LEN]
            if not files:
                return None, f"success_files[{i}] has no `file` (StagedFile.file = 1); raw {data!r}"
            uuids = [f for f in parse(files[-1].value) if f.number == 1 and f.wire_type == LEN]
            if not uuids:
                return None, f"success_files[{i}].file has no `uuid` (FileId.uuid = 1); raw {data!r}"
            out.append(uuids[-1].value.decode("utf-8", "replace"))
        return out, ""
    except WireError as exc:
        return None, f"response bytes do not parse: {exc}"


# Bytes that no protobuf implementation parses as a message (checked by the suite's own tests).
UNPARSEABLE: dict[str, bytes] = {
    "truncated length-delimited field": b"\x0a\x10\x0a\x0eabc",
    "field number 0": b"\x00\x01",
    "wire type 7": b"\x0f\x01",
    "truncated varint": b"\x08\xff\xff",
    "end-group without start-group": b"\x0c",
}
