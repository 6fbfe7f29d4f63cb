"""The layout keeps its promises: the core knows nothing of the command line, no module
imports another that imports it back, and no module grows past 400 lines."""

from __future__ import annotations

import ast
from pathlib import Path

from helpers import ROOT

PACKAGE = ROOT / "src" / "caitool"
CLI_LAYER = ("caitool.cli", "caitool.commands", "caitool.__main__")
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, top_level_only: bool) -> set[str]:
    """The modules ``path`` imports (all of them, or those run when it is imported)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    names: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def test_the_core_imports_nothing_from_the_cli():
    for name, path in MODULES.items():
        if name.startswith(CLI_LAYER):
            continue
        bad = {i for i in imports(path, top_level_only=False)
               if i.startswith(CLI_LAYER) or i.split(".")[0] in ("typer", "click")}
        assert not bad, f"{name} imports the CLI layer: {sorted(bad)}"


def test_no_import_cycles():
    graph = {name: {i for i in imports(path, top_level_only=True) if i in MODULES and i != name}
             for name, path in MODULES.items()}
    # A package's __init__ importing its own submodules is how packages export; not a cycle.
    for name, edges in graph.items():
        graph[name] = {e for e in edges if not (MODULES[name].name == "__init__.py"
                                                and e.startswith(name + "."))}
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join(trail[trail.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for name in graph:
        if name not in state:
            visit(name, [name])


def test_no_module_is_over_400_lines():
    long = {name: n for name, path in MODULES.items()
            if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"
