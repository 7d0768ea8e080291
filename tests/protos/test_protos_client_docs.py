"""Every python block of docs/CLIENT.md runs here, and its table of status codes matches the client."""
from __future__ import annotations

import inspect
import os
import re
from pathlib import Path

import grpc
import pytest
from shared_helpers import markdown_example_tests, python_blocks

import protos.client as client_module
from protos import AgentExtensions_pb2, Common_pb2, RunJob_pb2, StageInFile_pb2
from protos.client_errors import classify

pytest_plugins = ["pytester"]

DOC = Path(__file__).resolve().parents[2] / "docs" / "CLIENT.md"


def blocks() -> list[tuple[int, str]]:
    return python_blocks(DOC)


def test_the_doc_has_a_block_for_each_recipe():
    text = DOC.read_text(encoding="utf-8")
    recipes = re.findall(r"^### (.+)$", text, re.M)
    assert recipes == ["Polling: backoff, retries and the overall deadline", "Choosing job ids",
                       "Retrying StageInFiles and the first RunJob",
                       "Resubmitting after an interrupted DONE", "A job the agent does not know"]
    for title in recipes:
        section = text.split(f"### {title}\n", 1)[1].split("\n#", 1)[0]
        assert "```python" in section, f"recipe {title!r} has no executed example"
    assert any("def test_" in code and "legal_agent" in code for _, code in blocks())


test_script_example_runs, test_pytest_example_passes = markdown_example_tests(DOC, "client_md")
# the errors example misuses the client on purpose
test_script_example_runs = pytest.mark.filterwarnings("ignore::fakes.habits.ClientHabitWarning")(
    test_script_example_runs)


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
    "NotOffered": ("GetOutcome", Common_pb2.JobId(uuid=JOB), "Method not found!"),
}
# rows whose status another method gives (NOT_FOUND is the extension's answer for an unknown job)
EXT_ROWS = {("NOT_FOUND", "UnknownJob"): ("WatchJobs", AgentExtensions_pb2.WatchRequest(jobs=[Common_pb2.JobId(uuid=JOB)]), "")}


def test_the_status_table_matches_the_client():
    rows = _rows()
    assert len(rows) == 12
    for codes, cls_cell, rid, *_ in rows:
        name = cls_cell.split("`")[1]
        cls = getattr(client_module, name)
        if codes == "anything else":
            assert cls is client_module.AgentCallError
            continue
        for code_name in codes.split(" (")[0].split(", "):
            method, request, details = EXT_ROWS.get((code_name, name)) or EXAMPLES.get(name, ("RunJob", None, ""))
            made = classify(method, grpc.StatusCode[code_name], details, request)
            assert type(made) is cls, (code_name, name, type(made))
            assert (made.requirement or "") in rid, (name, made.requirement, rid)


# --- signatures: generated from the code, keyword-only options (issue 22.8) ----------------------------

# What the call puts in the request (job, files, python_version) may be positional; every other
# parameter with a default (deadlines, intervals, timeouts, switches) is keyword-only.
POSITIONAL_OPTIONAL = {("run", "files"), ("run", "python_version"), ("submit", "python_version"),
                       ("run_and_wait", "python_version")}


def _public_api():
    yield "AgentClient", client_module.AgentClient.__init__
    yield "AgentClient.connect", client_module.AgentClient.connect
    for name, fn in vars(client_module.AgentClient).items():
        if not name.startswith("_") and inspect.isfunction(fn):
            yield f"client.{name}", fn
    yield "secure_channel", client_module.secure_channel


def _render(name: str, fn) -> str:
    sig = inspect.signature(fn)
    parts, starred = [], False
    for p in sig.parameters.values():
        if p.name in ("self", "cls"):
            continue
        if p.kind is p.VAR_KEYWORD:
            parts.append(f"**{p.name}")
            continue
        if p.kind is p.KEYWORD_ONLY and not starred:
            parts.append("*")
            starred = True
        text = p.name + (f": {p.annotation}" if p.annotation is not p.empty else "")
        parts.append(text + (f" = {_default(p.default)}" if p.default is not p.empty else ""))
    ret = sig.return_annotation
    back = "" if ret is sig.empty or ret in ("None", None) else f" -> {str(ret).strip(chr(39))}"
    return f"{name}({', '.join(parts)}){back}"


def _default(value) -> str:
    if callable(value):   # time.monotonic, time.sleep
        return f"{value.__module__}.{value.__name__}"
    return repr(value)


def signatures_block() -> str:
    return "```text\n" + "\n".join(_render(n, fn) for n, fn in _public_api()) + "\n```"


def test_optional_parameters_are_keyword_only():
    for name, fn in _public_api():
        for p in inspect.signature(fn).parameters.values():
            if p.default is not p.empty and p.kind is p.POSITIONAL_OR_KEYWORD:
                assert (name.split(".")[-1], p.name) in POSITIONAL_OPTIONAL, f"{name}: {p.name} may be given by position"


def test_the_documented_signatures_are_the_codes():
    text = DOC.read_text(encoding="utf-8")
    begin, end = "<!-- signatures:begin -->\n", "<!-- signatures:end -->"
    head, rest = text.split(begin, 1)
    current, tail = rest.split(end, 1)
    fresh = signatures_block() + "\n"
    if os.environ.get("UPDATE_CLIENT_DOCS") and current != fresh:
        DOC.write_text(head + begin + fresh + end + tail, encoding="utf-8")
        current = fresh
    assert current == fresh, f"docs/CLIENT.md's signatures differ from the code; run with UPDATE_CLIENT_DOCS=1:\n{fresh}"
