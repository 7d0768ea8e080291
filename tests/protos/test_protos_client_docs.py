"""Every python block of docs/CLIENT.md runs here, and its table of status codes matches the client."""
from __future__ import annotations

import re
from pathlib import Path

import grpc
import pytest
from shared_helpers import python_blocks

import protos.client as client_module
from protos import Common_pb2, RunJob_pb2, StageInFile_pb2
from protos.client_errors import classify

pytest_plugins = ["pytester"]

DOC = Path(__file__).resolve().parents[2] / "docs" / "CLIENT.md"


def blocks() -> list[tuple[int, str]]:
    return python_blocks(DOC)


def test_the_doc_has_a_block_for_each_recipe():
    text = DOC.read_text(encoding="utf-8")
    recipes = re.findall(r"^### (.+)$", text, re.M)
    assert recipes == ["Choosing job ids", "Retrying StageInFiles and the first RunJob",
                       "Resubmitting after an interrupted DONE", "A job the agent does not know"]
    for title in recipes:
        section = text.split(f"### {title}\n", 1)[1].split("\n#", 1)[0]
        assert "```python" in section, f"recipe {title!r} has no executed example"
    assert any("def test_" in code and "legal_agent" in code for _, code in blocks())


@pytest.mark.filterwarnings("ignore::fakes.habits.ClientHabitWarning")   # the errors example misuses on purpose
@pytest.mark.parametrize("line, code", [b for b in blocks() if "def test_" not in b[1]],
                         ids=lambda v: f"line{v}" if isinstance(v, int) else "")
def test_script_example_runs(line, code):
    exec(compile(code, f"{DOC}:{line}", "exec"), {"__name__": f"client_md_line{line}"})


@pytest.mark.parametrize("line, code", [b for b in blocks() if "def test_" in b[1]],
                         ids=lambda v: f"line{v}" if isinstance(v, int) else "")
def test_pytest_example_passes(pytester, line, code):
    pytester.makepyfile(**{f"test_client_md_line{line}": code})
    result = pytester.runpytest("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=code.count("\ndef test_") + code.startswith("def test_"))


def _rows():
    section = DOC.read_text(encoding="utf-8").split("## Errors", 1)[1].split("\n## ", 1)[0]
    return [[c.strip() for c in line.split("|")[1:-1]] for line in section.splitlines()
            if line.startswith("| ") and not line.startswith("| status") and "---" not in line]


JOB, FILE = "5b0d7c6e-9f4a-4e8e-8a55-3c1d2b7e9a03", "5b0d7c6e-9f4a-4e8e-8a55-3c1d2b7e9aff"
# one request per row of the table that makes the client classify the status as that row says
EXAMPLES = {
    "UnknownJob": ("RunJob", RunJob_pb2.RunJobRequest(job=Common_pb2.JobId(uuid=JOB)), ""),
    "InvalidRequest": ("RunJob", RunJob_pb2.RunJobRequest(job=Common_pb2.JobId(uuid="x")), ""),
    "Unstaged": ("RunJob", RunJob_pb2.RunJobRequest(job=Common_pb2.JobId(uuid=JOB),
                                                    files=[Common_pb2.FileId(uuid=FILE)]), f"not staged: {FILE}"),
    "NoInterpreter": ("RunJob", RunJob_pb2.RunJobRequest(job=Common_pb2.JobId(uuid=JOB),
                                                         files=[Common_pb2.FileId(uuid=FILE)]), "no interpreter"),
    "StageAfterSubmit": ("StageInFiles", StageInFile_pb2.StageInFilesRequest(job=Common_pb2.JobId(uuid=JOB)), ""),
}


def test_the_status_table_matches_the_client():
    rows = _rows()
    assert len(rows) == 10
    for codes, cls_cell, rid, *_ in rows:
        name = cls_cell.split("`")[1]
        cls = getattr(client_module, name)
        if codes == "anything else":
            assert cls is client_module.AgentCallError
            continue
        for code_name in codes.split(", "):
            method, request, details = EXAMPLES.get(name, ("RunJob", None, ""))
            made = classify(method, grpc.StatusCode[code_name], details, request)
            assert type(made) is cls, (code_name, name, type(made))
            assert (made.requirement or "") in rid, (name, made.requirement, rid)
