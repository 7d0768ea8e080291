"""The catalogue of broken agents: registry rules, the CLI, and a happy path through each agent."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import grpc
import pytest

import fakes.broken
from fakes.broken import CATALOGUE, describe, layer, register
from protos import Common_pb2, StageInFile_pb2
from protos.client import AgentClient
from protos.requirements import ALL_REQUIREMENTS, REQUIREMENTS, Level
from protos.states import JobState
from reference_agent.domain import AgentCore

ROOT = Path(__file__).resolve().parents[2]

# MUSTs that no agent can be seen to break from outside are none: every MUST has an agent.
NOT_VIOLABLE_FROM_OUTSIDE: set[str] = set()


def test_catalogue_is_big_named_and_declares_known_ids():
    assert len(CATALOGUE) >= 16
    for name, cls in CATALOGUE.items():
        assert cls.__name__ == name and getattr(fakes.broken, name) is cls
        assert cls.violates and all(rid in ALL_REQUIREMENTS for rid in cls.violates), name
        assert describe(cls) and layer(cls) in ("core", "servicer", "server")


def test_every_must_is_violated_by_some_agent():
    violated = {rid for cls in CATALOGUE.values() for rid in cls.violates}
    musts = {r.id for r in REQUIREMENTS.values() if r.level is Level.MUST}
    assert musts - violated == NOT_VIOLABLE_FROM_OUTSIDE


def test_each_agent_overrides_little():
    """Small subclasses: a defect is one to three methods of the reference agent (an __init__
    that sets a different configuration counts as one)."""
    for name, cls in CATALOGUE.items():
        own = [k for k, v in vars(cls).items() if callable(v) and (not k.startswith("__") or k == "__init__")]
        assert 1 <= len(own) <= 3, (name, own)


@pytest.mark.parametrize("make, error", [
    (lambda: type("NoIds", (AgentCore,), {"__doc__": "x"}), "violates"),
    (lambda: type("BadId", (AgentCore,), {"__doc__": "x", "violates": ("AGT-NOPE-1",)}), "unknown"),
    (lambda: type("NoDoc", (AgentCore,), {"violates": ("AGT-ID-1",)}), "docstring"),
    (lambda: type("NotAnAgent", (object,), {"__doc__": "x", "violates": ("AGT-ID-1",)}), "subclass"),
    (lambda: type("ExceedsSlots", (AgentCore,), {"__doc__": "x", "violates": ("AGT-ID-1",)}), "twice"),
])
def test_register_refuses_malformed_entries(make, error):
    before = dict(CATALOGUE)
    with pytest.raises((TypeError, ValueError), match=error):
        register(make())
    assert CATALOGUE == before


# --- the agent the happy path of test_fakes_broken_defects.py cannot reach ------------------------

def test_serves_under_package_happy_path_on_its_own_path(start_agent):
    agent = start_agent("ServesUnderPackage")
    stage = agent.channel.unary_unary("/agent.Agent/StageInFiles",
                                      request_serializer=StageInFile_pb2.StageInFilesRequest.SerializeToString,
                                      response_deserializer=StageInFile_pb2.StageInFilesResponse.FromString)
    f = agent.put(b"pass\n")
    reply = stage(StageInFile_pb2.StageInFilesRequest(job=Common_pb2.JobId(uuid=str(uuid.uuid4())),
                                                      files=[Common_pb2.FileId(uuid=f)]), timeout=10)
    assert [s.file.uuid for s in reply.success_files] == [f]


# --- the command line -------------------------------------------------------------------------

def cli(*args, timeout=30):
    return subprocess.run([sys.executable, "-m", "fakes.broken", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def test_cli_list_names_every_agent_with_its_ids():
    result = cli("--list")
    assert result.returncode == 0
    lines = result.stdout.strip().splitlines()
    assert len(lines) == len(CATALOGUE)
    for name, cls in CATALOGUE.items():
        line = next(line for line in lines if line.split()[0] == name)
        assert all(rid in line for rid in cls.violates) and describe(cls) in line


@pytest.mark.parametrize("args, message", [
    ((), "NAME"),
    (("NoSuchAgent", "--source", "."), "unknown broken agent 'NoSuchAgent'"),
    (("ExceedsSlots",), "--source DIR is required"),
    (("ExceedsSlots", "--source", "/no/such/dir"), "'/no/such/dir': no such directory"),
    (("ExceedsSlots", "--source", ".", "--listen", "localhost"), "HOST:PORT"),
    (("ExceedsSlots", "--source", ".", "--listen", "127.0.0.1:99999"), "99999"),
    (("ExceedsSlots", "--source", ".", "--slots", "0"), "'0' must be >= 1"),
    (("ExceedsSlots", "--source", ".", "--slots", "two"), "'two' is not an integer"),
])
def test_cli_usage_errors_name_the_bad_value_and_exit_2(args, message):
    result = cli(*args)
    assert result.returncode == 2 and message in result.stderr, result.stderr


def test_cli_help_teaches_with_examples():
    result = cli("--help")
    assert result.returncode == 0 and "examples:" in result.stdout and "--list" in result.stdout


def test_cli_serves_on_port_zero_and_prints_the_address_first(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "fakes.broken", "ListsDuplicatesTwice", "--listen",
                             "127.0.0.1:0", "--source", str(source), "--state-dir", str(tmp_path / "state"),
                             "--slots", "1", "--no-path-pythons"], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        first = proc.stdout.readline().strip()
        assert first.startswith("listening on 127.0.0.1:") and not first.endswith(":0"), first
        f = str(uuid.uuid4())
        (source / f).write_bytes(b"pass\n")
        with grpc.insecure_channel(first.split()[-1]) as channel:
            assert AgentClient(channel, timeout=10).stage_in(str(uuid.uuid4()), [f, f]) == [f, f]
    finally:
        proc.terminate()
        assert proc.wait(timeout=15) == 0
    assert os.path.isdir(tmp_path / "state")


def test_broken_agents_use_the_public_hooks_not_the_cores_lock_or_tables():
    """docs/AGENT.md "Extension hooks": a subclass reads the core's state through waiting_jobs(),
    unsubmitted_staging(), discard_job(), on_recovered(), never through its lock or tables."""
    import re
    from pathlib import Path

    import fakes.broken

    private = re.compile(r"\b(?:self|core)\._(?:lock|wake|jobs|queue|staged|busy|tables|scheduler|stagein)\b")
    for path in Path(fakes.broken.__file__).parent.glob("*.py"):
        hits = [f"{path.name}:{n}: {line.strip()}" for n, line in enumerate(path.read_text().splitlines(), 1)
                if private.search(line)]
        assert not hits, hits


def test_broken_agents_override_only_the_declared_hooks():
    """The extension surface is declared (reference_agent/hooks.py, docs/AGENT.md): a broken core
    overrides only AgentHooks' methods (and __init__), a broken server or servicer only public
    members (build_server, the RPCs); helpers of its own may be private."""
    from reference_agent.hooks import HOOKS
    from reference_agent.server import AgentServer
    from reference_agent.servicer import AgentServicer

    def public(cls):
        return {n for n in dir(cls) if not n.startswith("_")}

    allowed = {AgentCore: set(HOOKS), AgentServer: public(AgentServer), AgentServicer: public(AgentServicer)}
    bad = []
    for name, cls in CATALOGUE.items():
        base = next(b for b in allowed if issubclass(cls, b))
        for attr, value in vars(cls).items():
            if not callable(value) or attr == "__init__" or attr.startswith("__"):
                continue
            if hasattr(base, attr) and attr not in allowed[base]:
                bad.append(f"{name}.{attr}")
    assert not bad, f"broken agents override members outside the declared hooks: {bad}"


# --- the catalogue is declared once: by @register on each class -------------------------------------

def test_fakes_md_table_is_the_generated_one():
    """docs/FAKES.md's table is `python -m fakes.broken --markdown`, made from the declarations."""
    from fakes.broken import markdown_table

    text = (ROOT / "docs" / "FAKES.md").read_text(encoding="utf-8")
    assert markdown_table() in text, "regenerate docs/FAKES.md's table: python -m fakes.broken --markdown"
    result = cli("--markdown")
    assert result.returncode == 0 and result.stdout == markdown_table()


def _name_tables(tree, names: set[str]):
    """Dict and set literals keyed by two or more broken agents' names, and any literal naming a
    quarter of the catalogue: hand-kept parallel lists of the catalogue."""
    import ast

    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            items = node.keys
        elif isinstance(node, (ast.Set, ast.List, ast.Tuple)):
            items = node.elts
        else:
            continue
        named = [i.value for i in items if isinstance(i, ast.Constant) and i.value in names]
        if (len(named) >= 2 and isinstance(node, (ast.Dict, ast.Set))) or len(named) >= max(4, len(names) // 4):
            yield node.lineno, named


def test_no_hand_kept_parallel_list_of_the_catalogue():
    """A new broken agent is one decorated class: no module of the toolkit or its tests keeps a table
    keyed by broken agents' names (per-agent facts live on the class or on its @probe)."""
    import ast

    names = set(CATALOGUE)
    found = []
    for top in ("fakes", "conformance", "reference_agent", "tests", "bench"):
        for path in sorted((ROOT / top).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            found += [f"{path.relative_to(ROOT)}:{line}: {named}" for line, named in _name_tables(tree, names)]
    assert not found, "hand-kept lists of broken agents (declare the fact on the class or its @probe):\n" + \
        "\n".join(found)
    init = (ROOT / "fakes" / "broken" / "__init__.py").read_text()
    assert not [name for name in names if name in init], "fakes/broken/__init__.py names agents"


def test_the_scan_sees_a_hand_kept_table():
    import ast

    names = set(CATALOGUE)
    tree = ast.parse('SLOW = {"ExceedsSlots": 1, "LeaksSlots": 2}\nok = ["ExceedsSlots"]\n')
    assert [line for line, _ in _name_tables(tree, names)] == [1]


def test_cli_without_the_agent_extra_names_it():
    """Without the [agent] extra (its modules made unimportable here) the command says what to install."""
    code = ("import runpy, sys\n"
            "from protos.extras import PROVIDED_BY\n"
            "for name, extra in PROVIDED_BY.items():\n"
            "    if extra == 'agent':\n"
            "        sys.modules[name] = None\n"
            "sys.argv = ['fakes.broken', '--list']\n"
            "runpy.run_module('fakes.broken', run_name='__main__', alter_sys=True)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 2, result.stderr
    assert "pip install 'agent-protocol-toolkit[agent]'" in result.stderr and "Traceback" not in result.stderr
