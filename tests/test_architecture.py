"""The package's shape: no import cycles, and dependencies that point one way.

The layers, lowest first: ``core`` (errors, weeks, schema, params, language) →
``data`` → ``analysis`` → ``report`` → ``meeting`` → ``runner`` → ``lab`` → ``cli`` → the package's
``__init__``. A module may import from its own layer and the layers below, never above.
Imports inside functions are allowed only for optional heavy dependencies, so the graph
read here (every import, nested ones included) is the whole truth.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "meetinglib"
LAYERS = ["core", "data", "analysis", "report", "meeting", "runner", "lab", "cli", "__init__"]
# Optional heavy dependencies, and the notebook machinery that only the commands
# executing notebooks need (importing nbformat alone takes about a second).
LAZY_ALLOWED = {"ipywidgets", "aiosmtpd", "pm4py", "pyspark", "playwright", "psycopg", "openpyxl"}
LAZY_ALLOWED |= {"papermill", "nbformat", "nbconvert", "nbclient", "jupyter_client", "jupyter_core"}
LAZY_ALLOWED |= {"ipykernel"}
# Ibis's PySpark backend imports pyspark when it is imported.
LAZY_ALLOWED |= {"ibis.backends.pyspark"}
# pyspark's bridge to the JVM, installed with it (its errors: a Spark that does not start).
LAZY_ALLOWED |= {"py4j"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = importer.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph() -> tuple[dict[str, set[str]], list[tuple[str, int, str]]]:
    """Module -> the package modules it imports; and the imports placed inside functions."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    nested: list[tuple[str, int, str]] = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        functions = [
            n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
        ]
        inner = {id(c) for f in functions for c in ast.walk(f)}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                target = _resolve(name, path.name == "__init__.py", node)
                candidates = [f"{target}.{a.name}" for a in node.names] + [target]
            elif isinstance(node, ast.Import):
                candidates = [a.name for a in node.names]
            else:
                continue
            if id(node) in inner:
                what = candidates[-1]
                if not any(what == a or what.startswith(f"{a}.") for a in LAZY_ALLOWED):
                    nested.append((name, node.lineno, candidates[-1]))
            for c in candidates:
                if c in modules and c != name:
                    graph[name].add(c)
                    break
    return graph, nested


def _layer(module: str) -> int:
    parts = module.split(".")
    key = "__init__" if len(parts) == 1 else parts[1]
    return LAYERS.index("core" if key == "_version" else key)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
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
                found.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_every_module_belongs_to_a_layer():
    graph, _ = import_graph()
    for module in graph:
        assert _layer(module) >= 0, module


def test_no_import_cycle():
    graph, _ = import_graph()
    assert _cycles(graph) == []


def test_dependencies_point_down_the_layers():
    graph, _ = import_graph()
    upward = [
        f"{m} imports {d}" for m, deps in graph.items() for d in deps if _layer(d) > _layer(m)
    ]
    assert upward == []


def test_imports_inside_functions_only_for_optional_heavy_dependencies():
    _, nested = import_graph()
    assert [f"{m}:{line} imports {what}" for m, line, what in nested] == []


def test_the_cycle_check_can_fail():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c"]]


@pytest.mark.parametrize("layer", ["core", "data", "analysis", "report", "meeting"])
def test_each_subpackage_imports_on_its_own(layer):
    """A subpackage imported first, alone, in a fresh interpreter: no hidden cycle at run time."""
    import subprocess
    import sys

    done = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import importlib, pkgutil, meetinglib.{layer} as p\n"
            "for m in pkgutil.iter_modules(p.__path__):\n"
            "    importlib.import_module(f'{p.__name__}.{m.name}')",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
