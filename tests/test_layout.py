"""The package's import graph: no cycles, no import from a lower layer up, Ray / Optuna / DVC
only in integrations/ (and integrations/ only from launch). Read from the source with ast, every
import counted, the lazy ones inside functions too."""
from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "genflow"

# lowest first; a module may import from its own layer and the layers below it
LAYERS = [
    ("genflow.errors", "genflow.io"),
    ("genflow.data.specs", "genflow.models.specs", "genflow.models.plugins", "genflow.sweep.space",
     "genflow.sweep.dimension", "genflow.study.spec"),  # params schema (plugins: the installed families' specs)
    ("genflow.config",),
    ("genflow.data", "genflow.metrics"),
    ("genflow.models",),
    ("genflow.train",),
    ("genflow.featurenet",),
    ("genflow.evaluate",),
    ("genflow.sweep",),
    ("genflow.export",),
    ("genflow.report", "genflow.study"),  # the study report reads the report's statistics
    ("genflow.integrations",),
    ("genflow.launch",),
    ("genflow.study.stage",),  # a study's stages: the pipeline's own, run by genflow.launch
    ("genflow.cli",),
]
TOP_LEVEL = {"__init__", "cli", "errors", "io", "launch"}
THIRD_PARTY_RUNNERS = ("ray", "optuna", "dvc")


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(REPO).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(path: Path) -> list[str]:
    """Every module name an import statement in ``path`` names (with ``from x import y``: x.y)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    return names


def graph() -> dict[str, set[str]]:
    """Module -> the genflow modules it imports (a name resolved to the longest existing module)."""
    known, edges = modules(), defaultdict(set)
    for name, path in known.items():
        for target in imports(path):
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target not in (name, "genflow"):
                edges[name].add(target)
    return edges


def layer(module: str) -> int:
    """The layer of the longest prefix listed in LAYERS."""
    best = max(((len(prefix), index) for index, names in enumerate(LAYERS) for prefix in names
                if module == prefix or module.startswith(prefix + ".")), default=None)
    assert best is not None, f"{module}: not in LAYERS (tests/test_layout.py): place it in the layering"
    return best[1]


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, ()):
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

    for node in sorted(modules()):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles():
    assert cycles(graph()) == []


def test_no_import_from_a_lower_layer_up():
    upward = sorted(f"{a} -> {b}" for a, targets in graph().items() for b in targets if layer(b) > layer(a))
    assert upward == []


def test_only_integrations_import_ray_optuna_or_dvc():
    offenders = sorted(f"{name}: {target}" for name, path in modules().items()
                       if not name.startswith("genflow.integrations")
                       for target in imports(path) if target.split(".")[0] in THIRD_PARTY_RUNNERS)
    assert offenders == []


def test_only_launch_imports_integrations():
    importers = {a for a, targets in graph().items() for b in targets
                 if b.startswith("genflow.integrations") and not a.startswith("genflow.integrations")}
    assert importers == {"genflow.launch"}


def test_top_level_is_a_handful_of_modules_and_one_package_per_stage():
    top = {path.stem for path in PACKAGE.glob("*.py")}
    packages = {path.parent.name for path in PACKAGE.glob("*/__init__.py")}
    assert top == TOP_LEVEL
    # config: the params schema and its strict reading, which every stage shares
    assert packages == {"config", "data", "featurenet", "models", "train", "evaluate", "metrics", "sweep", "export",
                        "report", "integrations", "study"}
