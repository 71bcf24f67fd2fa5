"""Imports inside each package go one way (wire reads and writes bytes, model holds rules and state, app wires
routes; in the core: service ← app, http_front ← simulator): read from the source with `ast`, lazy imports inside
functions included (they hide a circle, they do not remove it), `if TYPE_CHECKING:` blocks excluded (never run)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = sorted({p.parent.relative_to(ROOT).as_posix() for p in (ROOT / "simulators").rglob("*.py")}
                  | {"reference_lgc", "reference_lgc/services", "reference_lgc/documents", "scenarios", "proofs",
                     "proofs_video", "segur_bench", "network_proxy"})


def module_imports(package: str) -> dict[str, set[str]]:
    """Module -> the sibling modules it imports (same package)."""
    folder = ROOT / package
    modules = {p.stem: p for p in folder.glob("*.py")}
    dotted = package.replace("/", ".")
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        type_only = {id(sub) for node in ast.walk(tree)
                     if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                     for sub in ast.walk(node)}
        found: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in type_only:
                continue
            if isinstance(node, ast.ImportFrom):
                if node.level == 1:
                    found |= {node.module.split(".")[0]} if node.module else {a.name for a in node.names}
                elif node.level == 0 and node.module == dotted:
                    found |= {a.name for a in node.names}
                elif node.level == 0 and node.module and node.module.startswith(dotted + "."):
                    found.add(node.module[len(dotted) + 1:].split(".")[0])
            elif isinstance(node, ast.Import):
                found |= {a.name[len(dotted) + 1:].split(".")[0] for a in node.names
                          if a.name.startswith(dotted + ".")}
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
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
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_inside_a_package_go_one_way(package: str) -> None:
    assert circles(module_imports(package)) == []


def test_the_check_sees_a_circle_even_through_a_lazy_import() -> None:
    graph = {"model": {"wire"}, "wire": {"model"}, "app": {"model", "wire"}}
    assert circles(graph) == [["model", "wire"]]
    assert "service" in module_imports("simulators/core")["simulator"]
    assert "simulator" not in module_imports("simulators/core")["service"]
