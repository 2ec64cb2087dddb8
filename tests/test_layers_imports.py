"""The package's import graph: no module of src/ncsn imports itself back through others (no
import circle, counting the imports inside functions too), and the core and the typed contract
stay below the layers that use them."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "ncsn"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The ncsn modules that ``path`` imports, anywhere in the file (``from package import
    submodule`` counts as that submodule, like ``import package.submodule``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in modules)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            submodules = {f"{node.module}.{a.name}" for a in node.names} & modules
            found.update(submodules)
            if node.module in modules and len(submodules) < len(node.names):
                found.add(node.module)  # names defined by the package's __init__
    found.discard(module_name(path))
    return found


def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: imports_of(path, set(files)) for name, path in files.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_planted_circle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_circle_in_the_package() -> None:
    assert find_cycle(graph()) is None


def test_layers_import_only_downwards() -> None:
    edges = graph()

    def reaches(module: str) -> set[str]:
        seen, todo = set(), [module]
        while todo:
            for nxt in edges.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    below_core = {"ncsn", "ncsn.core"}
    for name in edges:
        if name.startswith("ncsn.core"):
            assert all(m.startswith("ncsn.core") or m in below_core for m in reaches(name)), name
        if name.startswith("ncsn.spec"):
            assert all(m.startswith("ncsn.spec") or m == "ncsn.errors" for m in reaches(name)), \
                name


def test_the_typed_contract_and_config_do_not_load_torch() -> None:
    code = ("import sys, ncsn.spec.model, ncsn.spec.samplers, ncsn.config\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "False"
