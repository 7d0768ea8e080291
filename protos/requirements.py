"""The requirement IDs of PROTOCOL-V1 with their level and one-line text (the suite's registry)."""
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

REQUIREMENTS: dict[str, Requirement] = {
    rid: Requirement(rid, Level(level), text) for rid, level, text in _TABLE
}


def get(rid: str) -> Requirement:
    try:
        return REQUIREMENTS[rid]
    except KeyError:
        raise KeyError(f"unknown requirement ID {rid!r}; known: {', '.join(REQUIREMENTS)}") from None


def by_level(level: Level | str) -> list[Requirement]:
    return [r for r in REQUIREMENTS.values() if r.level == Level(level)]
