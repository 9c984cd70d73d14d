"""The package's import graph: no cycles, imports only point down the layers, no hidden function-local imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "i2sb"
LAYERS = [  # bottom to top; a module may import its own package or the packages of lower layers
    {"utils"},
    {"core", "nets", "degrade", "data", "evaluation"},
    {"baselines"},
    {"config"},
    {"methods"},
    {"restoration"},
    {"training"},
    {"distill"},  # bridge distillation (IBMD): its math, and i2sb-distill's loop on training's building blocks
    {"cli"},  # the command-line entry points
    {"app"},  # i2sb-app: the browser page over the library (and cli's key=value parsing)
    {"bridge", "unet", "train", "__init__"},  # the public aliases (i2sb.bridge, ..., python -m i2sb.train)
]
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def top(name: str) -> str:
    """The layer unit of a module: its first package below ``i2sb`` (``__init__`` for ``i2sb`` itself)."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def layer(name: str) -> int:
    unit = top(name)
    for index, units in enumerate(LAYERS):
        if unit in units:
            return index
    raise AssertionError(f"{name}: {unit} is in no layer of tests/test_layers.py")


def resolve(module: str, path: Path, node: ast.ImportFrom) -> list[str]:
    """The i2sb modules an ``ImportFrom`` loads (a name that is a submodule counts as that module)."""
    if node.level:
        package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
    else:
        base = node.module or ""
    if not base.startswith("i2sb"):
        return []
    found = [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in MODULES]
    return found or [base]


def imports(module: str, path: Path) -> tuple[set[str], list[tuple[int, str, bool]]]:
    """``(modules imported at module level, [(line, imported, inside a function)] of every import)``.

    Imports under ``if TYPE_CHECKING:`` count as module-level ones: an annotation that needs a module above or
    beside this one is a dependency all the same (a reader follows it), so it must point down the layers too."""
    tree = ast.parse(path.read_text())
    top_level: set[str] = set()
    every: list[tuple[int, str, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in child.names] if isinstance(child, ast.Import) else \
                    resolve(module, path, child) or [child.module or ""]
                for name in names:
                    every.append((child.lineno, name, in_function))
                    if not in_function and name.startswith("i2sb"):
                        top_level.add(name)
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(tree, False)
    return top_level, every


GRAPH = {m: imports(m, p) for m, p in MODULES.items()}


def owner(name: str) -> str:
    """The module of ``name`` (an imported package or module; a package resolves to its ``__init__``)."""
    while name not in MODULES and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def test_type_checking_imports_count(tmp_path):
    source = tmp_path / "annotated.py"
    source.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from i2sb.training.trainer import Trainer\n")
    top_level, _ = imports("i2sb.core.annotated", source)
    assert "i2sb.training.trainer" in top_level


def test_every_module_is_in_a_layer():
    for module in MODULES:
        layer(module)


def test_imports_point_down_the_layers():
    upward = []
    for module, (targets, _) in GRAPH.items():
        for target in map(owner, targets):
            same_unit = top(target) == top(module)
            if not same_unit and layer(target) >= layer(module):
                upward.append(f"{module} -> {target}")
    assert not upward, "imports that do not point down the layers:\n" + "\n".join(upward)


def test_no_import_cycles():
    edges = {m: {owner(t) for t in targets if owner(t) != m} for m, (targets, _) in GRAPH.items()}
    state: dict[str, int] = {}
    cycles: list[str] = []

    def walk(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                walk(nxt, stack + [nxt])
        state[node] = 2

    for module in sorted(edges):
        if module not in state:
            walk(module, [module])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def lazy(line: str) -> bool:
    """An import marked ``# lazy: why`` (or ``# lazy: as above``): deferred so that what is imported first stays
    light (``--help`` and Hydra's composition import no torch)."""
    return "# lazy:" in line


def test_function_local_imports_are_for_optional_or_slow_dependencies():
    """Inside functions: a comment saying why; an i2sb module only where marked ``# lazy:`` (the package's
    ``i2sb.load`` aside), and like any import it points down the layers."""
    bad = []
    for module, path in MODULES.items():
        lines = path.read_text().splitlines()
        for lineno, name, in_function in GRAPH[module][1]:
            if not in_function:
                continue
            if name.startswith("i2sb") and module != "i2sb" and not lazy(lines[lineno - 1]):
                bad.append(f"{path.name}:{lineno} imports {name} inside a function (mark it # lazy: why)")
            elif name.startswith("i2sb") and top(owner(name)) != top(module) and layer(owner(name)) >= layer(module):
                bad.append(f"{path.name}:{lineno} imports {name}, not below {module}")
            elif "#" not in lines[lineno - 1] and "#" not in lines[lineno - 2]:
                bad.append(f"{path.name}:{lineno} imports {name} inside a function without a comment saying why")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_files_stay_small(module):
    count = len(MODULES[module].read_text().splitlines())
    assert count <= MAX_LINES, f"{MODULES[module]} has {count} lines (at most {MAX_LINES})"
