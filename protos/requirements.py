"""The requirement IDs of PROTOCOL-V1 and of its extension PROTOCOL-EXT: level, one-line text, profile."""
from __future__ import annotations

import enum
from dataclasses import dataclass


class Level(str, enum.Enum):
    MUST = "MUST"
    SHOULD = "SHOULD"
    MAY = "MAY"


@dataclass(frozen=True)
class Requirement:
    id: str
    level: Level
    text: str
    profile: str = "v1"


@dataclass(frozen=True)
class Profile:
    """A set of requirements judged together: `v1` (every agent) or `ext` (the optional
    AgentExtensions service, judged only where the agent offers it). `suite` names the
    conformance package that checks it; tests/protos/test_protos_spec.py holds every ID of a
    profile whose suite package exists to a test there."""

    name: str
    contract: str
    suite: str
    optional: bool


_TABLE = [
    ("AGT-WIRE-1", "MUST", "proto2, no package; service Agent with unary StageInFiles and RunJob; "
     "messages, fields, labels, types and numbers exactly as the seed"),
    ("AGT-WIRE-2", "MUST", "every OK response carries its required fields: RunJobResponse.code set "
     "to 0, 1 or 2; every StagedFile carries file.uuid"),
    ("AGT-ID-1", "MUST", "JobId.uuid and FileId.uuid are canonical 36-character UUIDs; anything else "
     "gets INVALID_ARGUMENT and no state change"),
    ("AGT-ID-2", "MUST", "a request missing a required field gets INVALID_ARGUMENT and no state change"),
    ("AGT-ID-3", "MUST", "UUIDs compare case-insensitively; the agent's outputs use lower case"),
    ("AGT-STAGE-1", "MUST", "StageInFiles returns OK listing every staged requested file once, in "
     "order of first appearance; unstageable files are left out"),
    ("AGT-STAGE-2", "MUST", "StageInFiles is idempotent: a repeat stages nothing twice and returns "
     "the same list"),
    ("AGT-STAGE-3", "MUST", "a staged file's bytes are the source's bytes at staging time, even if "
     "the source changes later"),
    ("AGT-STAGE-4", "MUST", "StageInFiles for a submitted job gets FAILED_PRECONDITION and no state change"),
    ("AGT-STAGE-5", "SHOULD", "content is cached by file UUID: staging a file already on the agent "
     "does not read the source again"),
    ("AGT-RUN-1", "MUST", "the first valid RunJob submits the job and answers its state: WAIT, RUN or DONE"),
    ("AGT-RUN-2", "MUST", "a first RunJob with no files gets INVALID_ARGUMENT and no state change"),
    ("AGT-RUN-3", "MUST", "RunJob with files not staged for the job gets FAILED_PRECONDITION naming "
     "them, and no job is created"),
    ("AGT-RUN-4", "MUST", "python_version is a PEP 440 specifier set or a bare release prefix; "
     "malformed gets INVALID_ARGUMENT, unsatisfiable gets FAILED_PRECONDITION, no job created"),
    ("AGT-RUN-5", "MUST", "all requirements hold together for the interpreter chosen; the choice is "
     "deterministic"),
    ("AGT-RUN-6", "MUST", "the job runs the first file as a Python script, no arguments, in the job's "
     "directory where every file lies under its lower-case UUID"),
    ("AGT-RUN-7", "MUST", "a RunJob for a submitted job is a status query; each job id runs at most once"),
    ("AGT-RUN-8", "MUST", "a status query's files and requirements are empty or equal to the "
     "submission's; any other repeat gets ALREADY_EXISTS"),
    ("AGT-RUN-9", "MUST", "concurrent first RunJob calls for one job id create one job and one execution"),
    ("AGT-STATE-1", "MUST", "reported states are monotonic: WAIT, then RUN, then DONE, never backwards"),
    ("AGT-STATE-2", "MUST", "WAIT = accepted, not started; RUN = process started, not seen to end; "
     "DONE = ended, whatever the exit status"),
    ("AGT-STATE-3", "MUST", "a job whose process ended is reported DONE within a bounded delay; a job "
     "running for seconds is reported RUN"),
    ("AGT-SCHED-1", "MUST", "an agent with N slots has at most N jobs in RUN"),
    ("AGT-SCHED-2", "MUST", "a job in WAIT starts when a slot is free: no starvation"),
    ("AGT-SCHED-3", "SHOULD", "jobs start in submission order"),
    ("AGT-DUR-1", "MUST", "after a restart, DONE stays DONE, RUN is RUN while tracked else DONE and "
     "never started again, WAIT stays WAIT and runs later, staged files stay staged"),
    ("AGT-ERR-1", "MUST", "bytes that do not parse as the request get INVALID_ARGUMENT or INTERNAL "
     "and no state change"),
    ("AGT-ERR-2", "MUST", "no request stops the agent or changes another job; a request over the "
     "size limit gets RESOURCE_EXHAUSTED"),
    ("AGT-ERR-3", "MUST", "no UUID, file content or requirement makes the agent read or write outside "
     "its own directories"),
]

_EXT_TABLE = [
    ("AGT-EXT-1", "MUST", "AgentExtensions.proto exactly as the contract (proto2, no package, importing "
     "Common.proto and RunJob.proto); /AgentExtensions/GetCapabilities, GetOutcome, CancelJob unary, "
     "WatchJobs server streaming; v1 unchanged; same port, TLS and token"),
    ("AGT-EXT-2", "MUST", "GetCapabilities lists the offered extensions (outcome, cancel, watch); a method "
     "of an extension not listed answers UNIMPLEMENTED; no service at all is v1, not offered"),
    ("AGT-EXT-3", "MUST", "GetOutcome answers the v1 state and, once DONE, how the job ended (EXITED with "
     "exit_status 0-255, SIGNALLED with signal, INTERRUPTED, CANCELLED), interpreter version, times, "
     "bounded flagged output tails; unknown or malformed ids as in v1"),
    ("AGT-EXT-4", "MUST", "an outcome reported with DONE never changes, across restarts; it agrees with v1"),
    ("AGT-EXT-5", "MUST", "CancelJob makes a WAIT job DONE (cancelled, never started, also after a "
     "restart), ends a RUN job's whole process tree within a bounded delay, changes nothing on DONE; "
     "answers the state after the call; durable before answered"),
    ("AGT-EXT-6", "MUST", "a cancelled job is ended for v1: DONE in every status query, slot freed, never "
     "run again; a cancel racing the natural end yields exactly one outcome"),
    ("AGT-EXT-7", "MUST", "WatchJobs sends each job's current state, then every later change in order, "
     "each state once; DONE carries the outcome when offered; ends after the last DONE; unknown ids "
     "NOT_FOUND before any event"),
    ("AGT-EXT-8", "MUST", "a watch never reports a state earlier than v1 reported, nor DONE before v1 "
     "would; a restart ends open streams with UNAVAILABLE"),
    ("AGT-EXT-9", "SHOULD", "open watch streams are bounded per caller and in all (RESOURCE_EXHAUSTED "
     "beyond); a stream with no watched job left ends"),
]

PROFILES: dict[str, Profile] = {
    "v1": Profile("v1", "PROTOCOL-V1.md", "conformance.suite", optional=False),
    "ext": Profile("ext", "PROTOCOL-EXT.md", "conformance.suite_ext", optional=True),
}

# The v1 requirements: every agent is judged on these, and v1 counts and verdicts are theirs alone.
REQUIREMENTS: dict[str, Requirement] = {
    rid: Requirement(rid, Level(level), text) for rid, level, text in _TABLE
}
# The extension's requirements (profile "ext"), judged only where the agent offers the extension.
EXT_REQUIREMENTS: dict[str, Requirement] = {
    rid: Requirement(rid, Level(level), text, "ext") for rid, level, text in _EXT_TABLE
}
ALL_REQUIREMENTS: dict[str, Requirement] = {**REQUIREMENTS, **EXT_REQUIREMENTS}


def get(rid: str) -> Requirement:
    """Any requirement of any profile, by ID."""
    try:
        return ALL_REQUIREMENTS[rid]
    except KeyError:
        raise KeyError(f"unknown requirement ID {rid!r}; known: {', '.join(ALL_REQUIREMENTS)}") from None


def of_profile(name: str) -> dict[str, Requirement]:
    """The requirements of one profile ("v1" or "ext"), in contract order."""
    if name not in PROFILES:
        raise KeyError(f"unknown requirement profile {name!r}; known: {', '.join(PROFILES)}")
    return {rid: r for rid, r in ALL_REQUIREMENTS.items() if r.profile == name}


def by_level(level: Level | str, profile: str = "v1") -> list[Requirement]:
    return [r for r in of_profile(profile).values() if r.level == Level(level)]
