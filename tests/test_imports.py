"""Dependencies point one way: no import cycle among the project's modules, counting imports inside functions
(a lazy import that closes a circle is still a circle) and those only for type checking; and no package imports
one from a layer above it (``LAYERS``, bottom first)."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("rag_service", "bench")

# Bottom first. A module may import its own layer and those below; packages sharing a layer are siblings that do
# not import each other (storage and the models do not know each other, nor do ingestion and retrieval).
LAYERS: tuple[tuple[str, ...], ...] = (
    ("rag_service", "rag_service.errors", "rag_service.records", "rag_service.threads", "rag_service.settings"),
    ("rag_service.text",),
    ("rag_service.storage", "rag_service.models", "rag_service.prompts"),
    ("rag_service.index", "rag_service.workspace"),
    ("rag_service.ingestion", "rag_service.retrieval"),
    ("rag_service.answering",),
    ("rag_service.admin",),
    ("rag_service.console",),
    ("rag_service.server",),
    ("rag_service.eval",),
    ("rag_service.cli",),
)
SIBLINGS_APART = (("rag_service.storage", "rag_service.models"), ("rag_service.ingestion", "rag_service.retrieval"))


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            out[name.removesuffix(".__init__")] = path
    return out


def _imports(modules: dict[str, Path]) -> dict[str, set[str]]:
    def resolve(name: str) -> str:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name

    edges: dict[str, set[str]] = defaultdict(set)
    for module, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            for target in filter(None, map(resolve, names)):
                if target != module and not module.startswith(target + "."):  # a package's own __init__
                    edges[module].add(target)
    return edges


def _cycles(edges: dict[str, set[str]], nodes: list[str]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in nodes:
        if v not in index:
            visit(v)
    return found


def test_the_checker_sees_a_lazy_import_that_closes_a_circle() -> None:
    edges: dict[str, set[str]] = defaultdict(set, {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}})
    assert _cycles(edges, ["a", "b", "c", "d"]) == [["a", "b", "c"]]


def test_no_import_cycles() -> None:
    modules = _modules()
    assert "rag_service.workspace" in modules and "rag_service.ingestion.pipeline" in modules
    assert _cycles(_imports(modules), sorted(modules)) == []


def _package(module: str) -> tuple[int, str] | None:
    """(layer, the longest layer entry holding ``module``); None outside rag_service."""
    best: tuple[int, str] | None = None
    for level, entries in enumerate(LAYERS):
        for entry in entries:
            if (module == entry or module.startswith(entry + ".")) and (best is None or len(entry) > len(best[1])):
                best = (level, entry)
    return best


def _layer_violations(edges: dict[str, set[str]]) -> list[str]:
    apart = {frozenset(pair) for pair in SIBLINGS_APART}
    found = []
    for module, targets in sorted(edges.items()):
        here = _package(module)
        for target in sorted(targets):
            there = _package(target)
            if here is None or there is None:
                continue
            if there[0] > here[0] or frozenset((here[1], there[1])) in apart:
                found.append(f"{module} -> {target}")
    return found


def test_the_checker_sees_an_import_from_a_layer_above() -> None:
    edges: dict[str, set[str]] = defaultdict(set, {
        "rag_service.storage.catalog": {"rag_service.retrieval.search"},  # down to up: wrong
        "rag_service.retrieval.search": {"rag_service.storage.catalog"},  # up to down: right
        "rag_service.ingestion.pipeline": {"rag_service.retrieval.fusion"},  # siblings kept apart
    })
    assert _layer_violations(edges) == ["rag_service.ingestion.pipeline -> rag_service.retrieval.fusion",
                                        "rag_service.storage.catalog -> rag_service.retrieval.search"]


def test_every_product_module_has_a_layer() -> None:
    assert [m for m in _modules() if m.startswith("rag_service") and _package(m) is None] == []


def test_dependencies_point_down_the_layers() -> None:
    assert _layer_violations(_imports(_modules())) == []
