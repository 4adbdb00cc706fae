"""The layering, read from the source (every import, lazy ones included): the composition root
(``gatewatch``) imports the components, nothing imports it back, and the top-level packages form no cycle."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("gatewatch", "gateway", "consumers", "schemas", "mock_upstream", "dashboards")
# who may import whom (beyond itself); schemas is the shared bottom (the metric catalogue there is what the
# Grafana builder renders), the mock upstream stands alone
ALLOWED = {
    "gatewatch": {"gateway", "consumers", "schemas", "mock_upstream"},
    "gateway": {"schemas"},
    "consumers": {"schemas"},
    "schemas": set(),
    "mock_upstream": set(),
    "dashboards": {"schemas"},
}


def _imports(path: Path, module: str) -> Iterator[tuple[int, str]]:
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                yield node.lineno, ".".join([*base, *([node.module] if node.module else [])])
            elif node.module:
                yield node.lineno, node.module


def _graph() -> dict[str, dict[str, list[str]]]:
    """package -> imported package -> where (path:line)."""
    graph: dict[str, dict[str, list[str]]] = {p: {} for p in PACKAGES}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT)
            module = ".".join(rel.with_suffix("").parts)
            for line, target in _imports(path, module):
                top = target.split(".")[0]
                if top in PACKAGES and top != package:
                    graph[package].setdefault(top, []).append(f"{rel}:{line} ({target})")
    return graph


def test_nothing_imports_the_composition_root() -> None:
    graph = _graph()
    offenders = [where for package, targets in graph.items() if package != "gatewatch"
                 for where in targets.get("gatewatch", [])]
    assert not offenders, offenders


def test_packages_import_only_downwards() -> None:
    graph = _graph()
    wrong = {f"{package} -> {target}": where[:3] for package, targets in graph.items()
             for target, where in targets.items() if target not in ALLOWED[package]}
    assert not wrong, wrong


def test_no_cycles_among_packages() -> None:
    graph = {package: set(targets) for package, targets in _graph().items()}
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            raise AssertionError("import cycle: " + " -> ".join([*path[path.index(node):], node]))
        if node in done:
            return
        for target in graph[node]:
            visit(target, [*path, node])
        done.add(node)

    for package in PACKAGES:
        visit(package, [])
