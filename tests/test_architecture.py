"""The code's shape (docs/architecture.md): no import cycle among the
project's modules, imports inside functions included; no module over about
400 lines; ``bot/`` imports nothing of ``chat_server``; no handler or service
takes the whole server or the bot untyped (``server: Any``, ``bot: Any``)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bot", "chat_server")
MAX_LINES = 420  # "about 400": a module that grows past this is split
# Generated or data-like files that are not code to live in.
SIZE_EXEMPT = {"chat_server/store/migrations"}


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT)
            parts = list(rel.with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> list[str]:
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
        prefix = ".".join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module or ""
    targets = [prefix]
    for alias in node.names:  # "from . import x" names submodules
        targets.append(f"{prefix}.{alias.name}")
    return targets


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        is_package = path.name == "__init__.py"
        edges: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = _resolve(module, is_package, node)
            else:
                continue
            for name in names:
                # the nearest project module the name refers to
                while name and name not in MODULES:
                    name = name.rpartition(".")[0]
                if name and name != module:
                    edges.add(name)
        graph[module] = edges
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _parent_package_edges(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    # Importing a submodule runs its package's __init__ first; a package that
    # imports its own submodules is not a cycle through them.
    return {module: {t for t in targets if not module.startswith(t + ".")}
            for module, targets in graph.items()}


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle() -> None:
    cycles = _cycles(_parent_package_edges(import_graph()))
    assert cycles == [], "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_bot_imports_nothing_of_the_chat_server() -> None:
    graph = import_graph()
    offending = {m: sorted(t for t in targets if t.startswith("chat_server"))
                 for m, targets in graph.items() if m.startswith("bot")}
    assert {m: t for m, t in offending.items() if t} == {}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_size(module: str) -> None:
    path = MODULES[module]
    rel = path.relative_to(ROOT).as_posix()
    if any(rel.startswith(prefix) for prefix in SIZE_EXEMPT):
        return
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{rel} has {lines} lines; split it by concern"


def test_no_untyped_server_or_bot_parameters() -> None:
    untyped = []
    for module, path in MODULES.items():
        if not module.startswith("chat_server"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for arg in node.args.args + node.args.kwonlyargs:
                    if arg.arg in ("server", "bot", "app_or_server") and isinstance(arg.annotation, ast.Name) \
                            and arg.annotation.id == "Any":
                        untyped.append(f"{module}.{node.name}({arg.arg})")
    assert untyped == []
