"""The extension surface is a declared type (reference_agent/hooks.py), and docs/AGENT.md lists it."""
from __future__ import annotations

import inspect
import re
import sqlite3
from pathlib import Path

import pytest

from reference_agent import jobrecord
from reference_agent.domain import AgentCore
from reference_agent.hooks import HOOKS, SERVICES, AgentHooks, CoreServices
from reference_agent.job import Job
from reference_agent.journal import Journal

ROOT = Path(__file__).resolve().parents[2]
# Public members of AgentCore that are neither hooks nor services: the lifecycle, and what the
# server calls (status_if_free: polls answered on the event loop, reference agent only).
LIFECYCLE = {"start", "close", "serving", "status_if_free"}


def _doc_table(heading: str) -> list[str]:
    """The backquoted names in the first column of the docs/AGENT.md table whose header starts `| heading |`."""
    lines = (ROOT / "docs" / "AGENT.md").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {heading} |"))
    names = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        names.append(re.match(r"\| `(\w+)\(", line).group(1))
    return names


def test_agent_core_implements_every_hook_and_service_with_a_contract():
    assert issubclass(AgentCore, AgentHooks) and issubclass(AgentCore, CoreServices)
    for name in (*HOOKS, *SERVICES):
        declared = getattr(AgentHooks, name, None) or getattr(CoreServices, name)
        assert (declared.__doc__ or "").strip(), f"{name} has no contract"
        assert getattr(AgentCore, name) is not declared, f"AgentCore does not implement {name}"
        assert inspect.signature(getattr(AgentCore, name)).parameters.keys() == \
            inspect.signature(declared).parameters.keys(), name


def test_agent_core_has_no_public_member_outside_the_declared_surface():
    public = {n for n, v in vars(AgentCore).items() if callable(v) and not n.startswith("_")}
    assert public - set(HOOKS) - set(SERVICES) - LIFECYCLE == set()


def test_docs_tables_list_exactly_the_hooks_and_services_in_order():
    assert _doc_table("hook") == list(HOOKS)
    assert _doc_table("service") == list(SERVICES)


# --- one field list: row, schema, column lists and the Job's attributes ---------------------------

def test_schema_row_and_job_are_made_from_one_field_list(tmp_path):
    journal = Journal(tmp_path / "j.sqlite3")
    columns = [r[1] for r in journal._db.execute("PRAGMA table_info(jobs)")]
    journal.close()
    assert columns == [c.name for c in jobrecord.JOB_COLUMNS]
    assert [f for f in jobrecord.JobRow.__dataclass_fields__] == columns
    held = [c.name for c in jobrecord.JOB_COLUMNS if c.held is not None]
    assert [f for f in Job.__dataclass_fields__][:len(held)] == held
    assert set(jobrecord.INSERTED) == set(columns) - {"seq"}


def test_row_is_built_by_keyword_only():
    with pytest.raises(TypeError):
        jobrecord.JobRow(1, "x")  # noqa - positional arguments are refused


def test_a_journal_made_before_a_new_column_gets_it(tmp_path, monkeypatch):
    """Adding a column is one line in JOB_COLUMNS: an older journal gains it on open, its rows read back."""
    path = tmp_path / "j.sqlite3"
    old = Journal(path)
    old.insert_job(job="0" * 8 + "-0000-4000-8000-" + "0" * 12, files=["f"], requirements=[], interpreter="/py",
                   python_version="3", state=0, submitted=1.0, workdir="w", stdout="o", stderr="e")
    old.close()
    extra = jobrecord.Column("outcome", "TEXT", "str | None", default=None, update=True,
                             check=jobrecord._text, held=jobrecord._same)
    columns = jobrecord.JOB_COLUMNS + (extra,)
    monkeypatch.setattr(jobrecord, "JOB_COLUMNS", columns)
    monkeypatch.setattr(jobrecord, "COLUMNS_BY_NAME", {c.name: c for c in columns})
    import reference_agent.journal as journal_module
    monkeypatch.setattr(journal_module, "JOB_COLUMNS", columns)
    again = Journal(path)
    try:
        names = [r[1] for r in again._db.execute("PRAGMA table_info(jobs)")]
        assert names[-1] == "outcome"
        raw = again._db.execute("SELECT * FROM jobs").fetchone()
        assert dict(zip(names, raw))["outcome"] is None
    finally:
        again.close()
    assert sqlite3.connect(path).execute("SELECT outcome FROM jobs").fetchone() == (None,)
