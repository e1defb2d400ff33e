"""The shape of the package, checked from its source with ``ast``: imports run one way (down the layer table) with
no cycle, and no module reaches into another module's private names."""

from __future__ import annotations

import ast
import fnmatch
from collections.abc import Iterator
from pathlib import Path

import pytest

import llmcost

PACKAGE = Path(llmcost.__file__).parent

# Layers, bottom first: a module may import its own layer and those below, never above. First match wins.
LAYERS: list[tuple[str, int]] = [
    ("llmcost._state", 0),  # process state: imports nothing from llmcost
    # values
    ("llmcost._errors", 1),
    ("llmcost._money", 1),
    ("llmcost._time", 1),
    ("llmcost._periods", 1),
    ("llmcost._usage", 1),
    ("llmcost._price_table", 1),  # the pre-built price table: read by _usage (units) and _catalog (prices)
    ("llmcost._frozen_map", 1),
    ("llmcost._entry", 1),
    ("llmcost._summary", 1),
    # prices and usage
    ("llmcost._prices", 2),
    ("llmcost._model_price", 2),
    ("llmcost._catalog", 2),
    ("llmcost._corrections", 2),
    ("llmcost._tokens", 2),
    ("llmcost._extract", 2),
    ("llmcost._estimate", 2),
    ("llmcost._recent", 2),
    # the row format
    ("llmcost._rows", 3),
    ("llmcost._rows.*", 3),
    # stores
    ("llmcost.stores", 4),
    ("llmcost.stores.*", 4),
    # tracking
    ("llmcost._context", 5),
    ("llmcost._tracker", 5),
    ("llmcost._decorator", 5),
    ("llmcost._streams", 5),
    ("llmcost._background", 5),  # background Responses waiting to be recorded when retrieved
    ("llmcost._config", 5),
    ("llmcost._instrument", 5),
    ("llmcost._litellm", 5),
    # budgets
    ("llmcost._budget", 6),
    ("llmcost._budget_manager", 6),
    ("llmcost._manager", 6),
    ("llmcost.alerts", 6),
    ("llmcost.otel", 6),  # OpenTelemetry export: a subscriber of the tracker's events
    # analytics, reports, the demo, the command line
    ("llmcost.analytics", 7),
    ("llmcost.analytics.*", 7),
    ("llmcost._report", 8),
    ("llmcost._report.*", 8),
    ("llmcost._report_*", 8),
    ("llmcost._demo", 9),
    ("llmcost.server", 9),  # llmcost serve: only the command line imports it, and only when serving
    ("llmcost.server.*", 9),
    ("llmcost.cli", 10),
    ("llmcost.cli.*", 10),
    ("llmcost.__main__", 11),
    # the public faces
    ("llmcost", 11),
    ("llmcost.testing", 11),
]

# ``x._name`` where the attribute is not the module's own, allowed with a reason.
ALLOWED_PRIVATE_ATTRIBUTES: set[tuple[str, str]] = {
    # The OpenAI/Anthropic SDK stream's own iterator: replacing it is how a returned stream is tracked in place.
    ("llmcost._streams", "_iterator"),
}


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _imports(name: str) -> Iterator[tuple[str, str | None, int]]:
    """``(imported module, imported name or None, line)`` for every import of an llmcost module in ``name``,
    wherever it is (functions, ``TYPE_CHECKING`` blocks included)."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "llmcost" or alias.name.startswith("llmcost."):
                    yield alias.name, None, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if _is_package(name) else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target != "llmcost" and not target.startswith("llmcost."):
                continue
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                if submodule in MODULES:
                    yield submodule, None, node.lineno
                else:
                    yield target, alias.name, node.lineno


def _graph() -> dict[str, set[str]]:
    return {name: {target for target, _, _ in _imports(name) if target != name} for name in MODULES}


def _layer(name: str) -> int | None:
    for pattern, layer in LAYERS:
        if fnmatch.fnmatchcase(name, pattern):
            return layer
    return None


def test_every_module_has_a_layer():
    unplaced = sorted(name for name in MODULES if _layer(name) is None)
    assert not unplaced, (
        f"modules {unplaced} are not in the layer table of tests/test_architecture.py: "
        "place each in LAYERS (a pattern and a layer number) so its imports can be checked"
    )


def test_imports_run_down_the_layer_table():
    lines = []
    for name in MODULES:
        for target, _, line in _imports(name):
            low, high = _layer(target), _layer(name)
            if target in MODULES and low is not None and high is not None and low > high:
                lines.append(f"{name} (layer {high}) imports {target} (layer {low}) at line {line}")
    assert not lines, "imports that go up the layer table:\n" + "\n".join(lines)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
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


def test_no_import_cycle():
    cycles = _cycles(_graph())
    assert not cycles, f"import cycles among llmcost modules: {cycles}"


def _own_private_names(tree: ast.Module) -> set[str]:
    """Private names a module defines: its functions and classes, names it assigns, ``self._x``/``cls._x``
    attributes, ``__slots__`` and class-body fields. Reading these on any object is the module's own business."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for sub in ast.walk(target):
                    if isinstance(sub, ast.Name):
                        names.add(sub.id)
                    elif (
                        isinstance(sub, ast.Attribute)
                        and isinstance(sub.value, ast.Name)
                        and sub.value.id in ("self", "cls")
                    ):
                        names.add(sub.attr)
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__slots__" for t in node.targets
            ):
                names.update(
                    c.value for c in ast.walk(node.value) if isinstance(c, ast.Constant) and isinstance(c.value, str)
                )
    return {n for n in names if n.startswith("_")}


def _private_access(name: str) -> Iterator[tuple[str, int]]:
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    own = _own_private_names(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            attr = node.attr
            if not attr.startswith("_") or (attr.startswith("__") and attr.endswith("__")):
                continue
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                continue
            if attr in own or (name, attr) in ALLOWED_PRIVATE_ATTRIBUTES:
                continue
            yield ast.unparse(node), node.lineno
    for target, imported, line in _imports(name):
        if imported and imported.startswith("_") and not imported.startswith("__"):
            yield f"from {target} import {imported}", line


def test_no_module_reaches_into_another_modules_private_names():
    lines = []
    for name in MODULES:
        for what, line in _private_access(name):
            lines.append(f"{MODULES[name].relative_to(PACKAGE.parent)}:{line}: {what}")
    assert not lines, (
        "private names used outside the module that defines them; give the owner a named method or function "
        "(private module, public name) and call that:\n" + "\n".join(lines)
    )


@pytest.mark.parametrize("module", ["llmcost._state"])
def test_the_bottom_module_imports_nothing_from_llmcost(module):
    assert _graph()[module] == set()
