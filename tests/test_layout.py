"""The package layout follows the data flow: checked from the import graph, not by convention.

Every ``import`` in ``sociogeo/`` (module level and inside functions alike: a lazy import is still
a dependency) is read with ``ast``; relative imports are resolved to module names. Then:

- no module takes part in an import cycle;
- no subpackage imports a step that comes after it in the flow
  (geo -> osm -> imagery -> reasoner -> pipeline -> analysis; datasets and train beside it);
- the top-level helpers (errors, options, defaults, ...) import no subpackage.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "sociogeo"

# subpackage -> the subpackages it may import (the top-level helper modules are always allowed)
ALLOWED = {
    "geo": set(),
    "osm": {"geo"},
    "imagery": {"geo", "osm"},
    "reasoner": {"geo", "imagery"},
    "pipeline": {"geo", "osm", "imagery", "reasoner"},
    "analysis": {"geo", "osm", "imagery", "reasoner", "pipeline"},
    "datasets": {"geo", "osm", "imagery"},
    "train": {"geo", "osm", "imagery", "reasoner", "pipeline", "datasets"},
    "testing": {"geo", "osm", "imagery", "reasoner"},
    "cli": {"geo", "osm", "imagery", "reasoner", "pipeline", "analysis", "datasets", "train", "testing"},
}
HELPERS = {"errors", "options", "defaults", "_optional", "_runtime", "_progress", "_version", "_text", "_http"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """The sociogeo modules ``path`` imports (as specific as the import statement allows)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "sociogeo")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "sociogeo":
                continue
            # "from . import protocol" imports a module; "from .x import name" imports module x
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                found.add(candidate if _exists(candidate) else target)
    return {m for m in found if m != name}


def _exists(module: str) -> bool:
    path = PACKAGE.parent.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {m for m in _imports(path) if m in modules} for name, path in modules.items()}


def _step(module: str) -> str | None:
    parts = module.split(".")
    if len(parts) < 2:
        return None
    return "cli" if parts[1] == "__main__" else parts[1]  # `python -m sociogeo` is the command line


def test_no_module_is_part_of_an_import_cycle(graph):
    # Tarjan's strongly connected components; any component of two or more modules is a cycle
    index, low, on_stack, stack, cycles = {}, {}, set(), [], []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert cycles == []


def test_no_step_imports_a_later_step(graph):
    upward = []
    for module, targets in graph.items():
        step = _step(module)
        for target in targets:
            other = _step(target)
            if other is None or other == step or other in HELPERS:
                continue
            if step in HELPERS or step is None:
                if module != "sociogeo":  # the lazy top level names modules as strings only
                    upward.append((module, target))
            elif other not in ALLOWED[step]:
                upward.append((module, target))
    assert upward == []


def test_every_subpackage_is_placed_in_the_flow():
    subpackages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert subpackages == set(ALLOWED)


def test_the_graph_sees_lazy_and_relative_imports(graph):
    # function-level imports count: the pipeline loads the reasoner only when it has to
    assert "sociogeo.reasoner.model" in graph["sociogeo.pipeline.run"]
    assert "sociogeo.reasoner.protocol" in graph["sociogeo.reasoner.model"]
