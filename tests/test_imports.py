"""The import graph of `ids/`, built with `ast` from every import statement (function-level ones included):
no cycles, and no library module imports a CLI module (subcommand wiring lives in ids/commands/ and
ids/cli.py; libraries never import from there)."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "ids"

#: Cycles allowed for now, each with the issue that removes it.
KNOWN_CYCLES: set[frozenset] = set()  # none: issue #17 ended the last one (config <-> output.elasticsearch)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def _runtime_nodes(tree: ast.AST):
    """Every node, function bodies and `if TYPE_CHECKING:` blocks included: a cycle that only a type checker
    follows is still a knot in the house."""
    yield from ast.walk(tree)


def import_graph() -> dict[str, set[str]]:
    """module -> the ids modules it imports (an import of a name from a package counts as an import of the
    submodule when one of that name exists, otherwise of the package)."""
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        is_pkg = path.name == "__init__.py"
        for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    src = ".".join(base + ([node.module] if node.module else []))
                else:
                    src = node.module or ""
                targets = [f"{src}.{a.name}" if f"{src}.{a.name}" in mods else src for a in node.names]
            for t in targets:
                while t and t not in mods:
                    t = t.rpartition(".")[0]
                if t and t != mod:
                    graph[mod].add(t)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def is_cli(mod: str) -> bool:
    return mod == "ids.cli" or mod.startswith("ids.commands") or mod.endswith(".cli")


def test_the_graph_sees_function_level_imports():
    g = import_graph()
    # ids.cli imports ids.commands.bench only inside main(): the graph must still have the edge
    assert "ids.commands.bench" in g["ids.cli"] and "ids.pipeline" in g["ids.commands.baseline"]
    assert "ids.units" in g["ids.events"]


def test_no_import_cycles():
    found = [c for c in cycles(import_graph()) if frozenset(c) not in KNOWN_CYCLES]
    assert found == [], "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_no_library_module_imports_a_cli_module():
    bad = sorted(f"{m} imports {t}" for m, ts in import_graph().items() if not is_cli(m)
                 for t in ts if is_cli(t))
    assert bad == []


def test_events_and_units_know_no_protocol():
    g = import_graph()
    for mod in ("ids.events", "ids.units"):
        assert not [t for t in g[mod] if t.startswith("ids.protocols")], mod
