"""The shape of the codebase: no import cycles, arrows between packages one way, nothing loaded by path."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("protos", "reference_agent", "fakes", "conformance", "simulator")

# Which package may import which (docs/ARCHITECTURE.md). protos imports none of the others;
# fakes.broken builds broken agents on the reference agent's domain, so only it may import it.
ALLOWED = {
    "protos": set(),
    "reference_agent": {"protos"},
    "fakes": {"protos"},
    "fakes.broken": {"protos", "fakes", "reference_agent"},
    "conformance": {"protos"},
    "simulator": {"protos"},
    "simulator.real": {"protos", "simulator"},
    # the command line is the composition root: it wires the model and the sim-to-real side
    "simulator.commands": {"protos", "simulator", "simulator.real"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}


def _in_type_checking(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


DYNAMIC = {"import_module", "resolve_name", "__import__"}  # importlib.import_module, pkgutil.resolve_name


def _aliases(tree: ast.AST, known: set[str]) -> dict[str, str]:
    """Local name -> the project module it is bound to by an import statement."""
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                names[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for a in node.names:
                full = f"{node.module}.{a.name}"
                names[a.asname or a.name] = full if full in known else node.module
    return names


def _literal_strings(tree: ast.AST) -> dict[str, list[str]]:
    """Module-level names bound to a dict, list or tuple literal of strings -> those strings."""
    out: dict[str, list[str]] = {}
    for node in getattr(tree, "body", []):
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            value = node.value
            items = value.values if isinstance(value, ast.Dict) else getattr(value, "elts", [])
            strings = [i.value for i in items if isinstance(i, ast.Constant) and isinstance(i.value, str)]
            for target in (node.targets if isinstance(node, ast.Assign) else [node.target]):
                if isinstance(target, ast.Name) and strings:
                    out[target.id] = strings
    return out


def dynamic_targets(call: ast.Call, name: str, known: set[str], aliases: dict[str, str],
                    literals: dict[str, list[str]]) -> list[str]:
    """What an import_module / resolve_name call imports, where its argument says: a literal, an
    f-string whose head is literal or a module's `__name__` (a prefix ending in "." reaches every
    module of that package: the package's modules are iterated), or a name of a literal table."""
    func = call.func
    called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    if called not in DYNAMIC or not call.args:
        return []
    arg = call.args[0]
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return [arg.value.split(":")[0]]
    if isinstance(arg, ast.Subscript) and isinstance(arg.value, ast.Name):
        return [v.split(":")[0] for v in literals.get(arg.value.id, [])]
    if not isinstance(arg, ast.JoinedStr):
        return []
    prefix = ""
    for part in arg.values:
        if isinstance(part, ast.Constant):
            prefix += str(part.value)
            continue
        expr = part.value
        if isinstance(expr, ast.Name) and expr.id == "__name__":
            prefix += name
        elif (isinstance(expr, ast.Attribute) and expr.attr == "__name__" and isinstance(expr.value, ast.Name)
              and expr.value.id in aliases):
            prefix += aliases[expr.value.id]
        else:
            break
    else:
        return [prefix.split(":")[0]]
    if prefix.endswith("."):  # pytest loads a package's conftest itself; no import_module does
        return [m for m in known if m.startswith(prefix) and "." not in m[len(prefix):]
                and not m.endswith(".conftest")]
    return []


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Project modules that `name` imports anywhere in its body (function-level imports too:
    an import moved into a function to dodge a cycle is still a cycle of design), also through
    importlib.import_module and pkgutil.resolve_name (see `dynamic_targets`)."""
    tree = ast.parse(path.read_text(), str(path))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    aliases, literals = _aliases(tree, known), _literal_strings(tree)
    found: set[str] = set()
    for node in ast.walk(tree):
        if _in_type_checking(node, parents):
            continue
        targets: list[str] = []
        if isinstance(node, ast.Call):
            targets = dynamic_targets(node, name, known, aliases, literals)
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    modules = project_modules()
    known = set(modules)
    return {name: imports_of(name, path, known) for name, path in modules.items()}


def owner(module: str) -> str:
    for key in sorted(ALLOWED, key=len, reverse=True):
        if module == key or module.startswith(key + "."):
            return key
    raise AssertionError(f"{module} belongs to no package of ALLOWED")


def test_no_import_cycles():
    g = graph()
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(g[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(g):
        if node not in state:
            visit(node)
    # a package's __init__ importing its own submodules is not a cycle of design
    real = [c for c in cycles if not any(c[i + 1].startswith(c[i] + ".") for i in range(len(c) - 1))]
    assert not real, "import cycles:\n" + "\n".join(" -> ".join(c) for c in real)


def test_arrows_between_packages_point_one_way():
    bad = []
    for module, targets in graph().items():
        mine = owner(module)
        for target in targets:
            theirs = owner(target)
            top = theirs.split(".")[0]
            if top == mine.split(".")[0] and not (theirs == "simulator.real" and mine != theirs):
                continue
            if theirs not in ALLOWED[mine] and top not in ALLOWED[mine]:
                bad.append(f"{module} imports {target}")
    assert not bad, "imports against docs/ARCHITECTURE.md:\n" + "\n".join(sorted(bad))


def test_dynamic_imports_are_followed(tmp_path):
    """A cycle through import_module is a cycle: a package whose modules import its loader, which
    loads them by an f-string over the package (as agent-sim's discover() did), is seen."""
    known = {"simulator.cli", "simulator.commands", "simulator.commands.run", "simulator.scenario"}
    loader = tmp_path / "cli.py"
    loader.write_text("import importlib\nimport pkgutil\nimport simulator.commands as pkg\n"
                      "TABLE = {'a': 'simulator.scenario'}\n"
                      "def discover():\n"
                      "    for info in pkgutil.iter_modules(pkg.__path__):\n"
                      "        importlib.import_module(f'{pkg.__name__}.{info.name}')\n"
                      "    importlib.import_module(TABLE['a'])\n"
                      "    pkgutil.resolve_name('simulator.scenario:Scenario')\n")
    assert imports_of("simulator.cli", loader, known) == {"simulator.commands", "simulator.commands.run",
                                                          "simulator.scenario"}
    g = {"simulator.cli": {"simulator.commands.run"}, "simulator.commands.run": {"simulator.cli"}}
    import sys
    module = sys.modules[__name__]
    real_graph = module.graph
    module.graph = lambda: g
    try:
        with pytest.raises(AssertionError, match="simulator.cli -> simulator.commands.run -> simulator.cli"):
            test_no_import_cycles()
    finally:
        module.graph = real_graph


def test_the_cycle_finder_finds_a_cycle(tmp_path, monkeypatch):
    """The checks above can fail: a planted cycle and a planted wrong arrow are reported."""
    g = {"protos.a": {"protos.b"}, "protos.b": {"protos.a"}}
    monkeypatch.setattr(__import__(__name__), "graph", lambda: g)
    with pytest.raises(AssertionError, match="protos.a -> protos.b -> protos.a"):
        test_no_import_cycles()
    monkeypatch.setattr(__import__(__name__), "graph", lambda: {"protos.a": {"simulator.engine"}})
    with pytest.raises(AssertionError, match="protos.a imports simulator.engine"):
        test_arrows_between_packages_point_one_way()


@pytest.mark.parametrize("needle", ["spec_from_file_location", "sys.path.insert", "sys.path.append",
                                    "SourceFileLoader", "runpy.run_path"])
def test_no_module_is_loaded_by_file_path(needle):
    """Product code imports modules by name; a bench script may put the checkout on sys.path,
    a package module never does."""
    hits = [f"{path.relative_to(ROOT)}" for path in project_modules().values() if needle in path.read_text()]
    assert not hits, f"{needle} in product code: {hits}"
