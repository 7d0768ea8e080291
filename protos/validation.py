"""Validation of identifiers (AGT-ID-1..3), python_version (AGT-RUN-4/5) and whole requests."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Sequence

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from protos import errors

# ASCII only: `\d` would accept Arabic-Indic and other Unicode digits.
_UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}", re.ASCII)
_BARE_RELEASE_RE = re.compile(r"[0-9]+(?:\.[0-9]+){0,2}", re.ASCII)


def is_uuid(value: object) -> bool:
    """True for a canonical 36-character UUID in any case (fullmatch: no trailing newline)."""
    return isinstance(value, str) and _UUID_RE.fullmatch(value) is not None


def parse_uuid(value: object, field: str = "uuid") -> str:
    """Return the UUID in lower case (AGT-ID-3) or raise InvalidArgument naming it (AGT-ID-1)."""
    if not is_uuid(value):
        raise errors.bad_uuid(field, value)
    return value.lower()  # type: ignore[union-attr]


@dataclass(frozen=True)
class PythonRequirement:
    """One parsed python_version. `text` is what the client sent; `spec` is None for any Python 3."""

    text: str
    spec: SpecifierSet | None

    def matches(self, version: str | Version) -> bool:
        try:
            v = version if isinstance(version, Version) else Version(str(version))
        except InvalidVersion:
            return False
        if v.is_prerelease or v.is_devrelease:
            return False  # pre-releases never match (AGT-RUN-4)
        if self.spec is None:
            return v.major == 3
        return self.spec.contains(v, prereleases=False)


def parse_python_version(value: str | None) -> PythonRequirement:
    """Parse one python_version: blank/absent = any Python 3, a bare release = that prefix,
    otherwise a PEP 440 specifier set exactly as `packaging` accepts it."""
    text = "" if value is None else value
    if not isinstance(text, str):
        raise errors.bad_python_version(repr(text), "not a string")
    stripped = text.strip()
    if stripped == "":
        return PythonRequirement(text, None)
    if _BARE_RELEASE_RE.fullmatch(stripped):
        return PythonRequirement(text, SpecifierSet(f"=={stripped}.*"))
    try:
        spec = SpecifierSet(stripped)
    except InvalidSpecifier:
        # packaging's own message repeats the whole value: a 4 MB value would make a 4 MB status
        # message, over a default client's metadata limit. The value is named once, cut short.
        raise errors.bad_python_version(
            text, "neither a PEP 440 specifier set (like '>=3.10,<3.13') nor a bare release (like '3.11')"
        ) from None
    if len(spec) == 0:
        return PythonRequirement(text, None)  # a set with no clauses: any Python 3
    return PythonRequirement(text, spec)


def parse_requirements(values: Iterable[str | None]) -> list[PythonRequirement]:
    """Each value parsed once however often it repeats: time linear in the distinct values."""
    parsed: dict[str | None, PythonRequirement] = {}
    return [parsed[v] if v in parsed else parsed.setdefault(v, parse_python_version(v)) for v in values]


def satisfies(version: str | Version, requirements: Sequence[PythonRequirement]) -> bool:
    """All requirements hold together (AGT-RUN-5); an empty list means any Python 3."""
    if not requirements:
        return PythonRequirement("", None).matches(version)
    return all(r.matches(version) for r in requirements)


def choose_interpreter(requirements: Sequence[PythonRequirement], versions: Iterable[str]) -> str | None:
    """The newest version satisfying every requirement, or None. Deterministic (AGT-RUN-5)."""
    best: tuple[Version, str] | None = None
    requirements = list({r.text: r for r in requirements}.values())  # each distinct one checked once
    for text in versions:
        try:
            v = Version(text)
        except InvalidVersion:
            continue
        if satisfies(v, requirements) and (best is None or (v, text) > best):
            best = (v, text)
    return None if best is None else best[1]


# --- whole requests ----------------------------------------------------------------------

@dataclass(frozen=True)
class StageRequest:
    job: str
    files: tuple[str, ...]  # lower case, in request order, duplicates kept


@dataclass(frozen=True)
class RunRequest:
    job: str
    files: tuple[str, ...]          # lower case, in request order, duplicates kept (AGT-RUN-8)
    requirement_texts: tuple[str, ...]  # as sent, an unset python_version counting as ""
    requirements: tuple[PythonRequirement, ...]


def _job_uuid(request) -> str:
    if not request.HasField("job"):
        raise errors.missing_field("job")
    if not request.job.HasField("uuid"):
        raise errors.missing_field("job.uuid")
    return parse_uuid(request.job.uuid, "job.uuid")


def _file_uuids(files) -> tuple[str, ...]:
    out = []
    for i, f in enumerate(files):
        if not f.HasField("uuid"):
            raise errors.missing_field(f"files[{i}].uuid")
        out.append(parse_uuid(f.uuid, f"files[{i}].uuid"))
    return tuple(out)


def validate_stage_request(request) -> StageRequest:
    """Check a StageInFilesRequest on its own; raise InvalidArgument naming the bad field."""
    job = _job_uuid(request)
    return StageRequest(job, _file_uuids(request.files))


def validate_run_request(request) -> RunRequest:
    """Check a RunJobRequest on its own (UUIDs, required fields, python_version syntax)."""
    job = _job_uuid(request)
    files = _file_uuids(request.files)
    texts = tuple(r.python_version for r in request.requirements)  # unset reads "" (AGT-RUN-8)
    return RunRequest(job, files, texts, tuple(parse_requirements(texts)))


def dedupe(items: Iterable[str]) -> list[str]:
    """Items once each, in order of first appearance (AGT-STAGE-1)."""
    seen: set[str] = set()
    out = []
    for item in items:
        if item not in seen:
            seen.add(item)
            out.append(item)
    return out
