"""protos.extras: a command without its extra says what to install; other import errors propagate."""
from __future__ import annotations

import pytest

from protos.extras import PROVIDED_BY, extra_hint


def _missing(name: str):
    raise ModuleNotFoundError(f"No module named {name!r}", name=name)


@pytest.mark.parametrize("module, command, extra, expected", [
    ("simpy", "agent-sim", "sim", "[sim]"),
    ("matplotlib.pyplot", "agent-sim", "sim", "[sim]"),
    ("dask", "agent-sim", "sim", "[dask]"),
    ("fsspec", "agent-sim", "sim", "[sim]"),                     # [sim] brings the agent's modules
    ("grpc_reflection", "agent-conformance", "conformance", "[conformance]"),
    ("grpc_health", "reference-agent", "agent", "[agent]"),
])
def test_a_module_of_an_extra_exits_2_with_the_pip_line(module, command, extra, expected, capsys):
    with pytest.raises(SystemExit) as exc:
        with extra_hint(command, extra):
            _missing(module)
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert err.startswith(f"{command}: the Python module {module.split('.')[0]!r} is not installed")
    assert f"pip install 'agent-protocol-toolkit{expected}'" in err


@pytest.mark.parametrize("module", ["reference_agent.nope", "yaml", ""])
def test_any_other_missing_module_is_a_bug_and_propagates(module):
    with pytest.raises(ModuleNotFoundError):
        with extra_hint("agent-sim", "sim"):
            _missing(module)


def test_every_module_named_belongs_to_an_extra_of_pyproject():
    import tomllib
    from pathlib import Path
    extras = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())[
        "project"]["optional-dependencies"]
    assert set(PROVIDED_BY.values()) <= set(extras)
