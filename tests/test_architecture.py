"""The package keeps the layering of docs/architecture.md.

No import cycles, nothing imports the plugin, no module over 500 lines, each module imports
only its own layer or lower, the gateway side runs on the stdlib alone, the CLI's layers
import without pytest, and loading the plugin stays cheap.

``lint-imports`` (import-linter, configured in pyproject.toml) enforces the layers too; this
file reads the imports itself, so each rule is checked twice, by independent readers. Every
``import`` and ``from ... import`` statement counts: inside functions and under
``TYPE_CHECKING`` as well, since a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections import deque
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIR = ROOT / "pytest_runset"
ROOT_PACKAGE = "pytest_runset"
PLUGIN = "pytest_runset.plugin"
MAX_LINES = 500

# Bottom to top. A module may import its own group and any group of a lower level; groups that
# share a level are independent of each other. The package's own __init__ (``__version__``
# only) is below everything.
LEVELS: tuple[tuple[str, ...], ...] = (
    ("pytest_runset",),
    ("pytest_runset.gateway",),
    ("pytest_runset.model",),
    ("pytest_runset.resources", "pytest_runset.results"),
    ("pytest_runset.engine",),
    ("pytest_runset.session",),
    ("pytest_runset.xdist",),
    ("pytest_runset.plugin", "pytest_runset.cli", "pytest_runset.hookspecs"),
)
# The plugin registers the hook specifications (pytest_addhooks): the one import between faces.
ALLOWED_ACROSS = frozenset({("pytest_runset.plugin", "pytest_runset.hookspecs")})

# What a gateway must import without: it runs in an interpreter that may have none of them.
NOT_IN_A_GATEWAY = (
    "pytest",
    "_pytest",
    "pydantic",
    "pydantic_core",
    "execnet",
    "filelock",
    "pluggy",
    "playwright",
)
# What the CLI's layers must import without (model/txspec.py imports execnet only when it
# parses a gateway spec).
WITHOUT_PYTEST = {
    "pytest_runset.model": ("pytest", "_pytest", "execnet"),
    "pytest_runset.results": ("pytest", "_pytest", "execnet"),
}
# What loading the plugin into a session that collects no run-set must not cost.
NOT_LOADED_BY_THE_PLUGIN = ("pydantic", "execnet", "filelock", "playwright")


@dataclass
class ImportGraph:
    """Modules of one package (name -> file) and their imports of each other."""

    files: dict[str, Path]
    # importer -> imported -> the line numbers of the import statements
    edges: dict[str, dict[str, set[int]]] = field(default_factory=dict)

    def add(self, importer: str, imported: str, line: int) -> None:
        if importer != imported:
            self.edges.setdefault(importer, {}).setdefault(imported, set()).add(line)

    def where(self, importer: str, imported: str) -> str:
        lines = ", ".join(f"l.{line}" for line in sorted(self.edges[importer][imported]))
        return f"{importer} -> {imported} ({lines})"


def module_files(package_dir: Path) -> dict[str, Path]:
    """Every module of the package by dotted name; a package's ``__init__`` is the package."""
    found = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = path.relative_to(package_dir.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def known_prefix(files: Collection[str], name: str) -> str:
    """The module that importing ``name`` runs: the longest prefix of it that is a module."""
    parts = name.split(".")
    while len(parts) > 1 and ".".join(parts) not in files:
        parts.pop()
    return ".".join(parts)


def absolute_from(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The module a ``from ... import`` names, relative imports resolved."""
    if not node.level:
        return node.module or ""
    base = importer.split(".")
    if not is_package:
        base.pop()
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def read_imports(package_dir: Path) -> ImportGraph:
    """The imports between the package's modules, from every import statement of every file."""
    graph = ImportGraph(module_files(package_dir))
    root = package_dir.name

    def internal(name: str) -> bool:
        return name == root or name.startswith(root + ".")

    for importer, path in graph.files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if internal(alias.name):
                        graph.add(importer, known_prefix(graph.files, alias.name), node.lineno)
            elif isinstance(node, ast.ImportFrom):
                base = absolute_from(importer, path.name == "__init__.py", node)
                if not internal(base):
                    continue
                for alias in node.names:
                    submodule = f"{base}.{alias.name}"
                    target = submodule if submodule in graph.files else base
                    graph.add(importer, known_prefix(graph.files, target), node.lineno)
    return graph


def strongly_connected(edges: Mapping[str, Collection[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components (iterative); only those that hold a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cyclic: list[list[str]] = []

    def visit(node: str) -> Iterator[str]:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        return iter(sorted(edges.get(node, ())))

    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, visit(root))]
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    work.append((child, visit(child)))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        cyclic.append(sorted(component))
    return cyclic


def one_cycle(edges: Mapping[str, Collection[str]], component: Collection[str]) -> list[str]:
    """A shortest cycle through the first module of a strongly connected component."""
    start = min(component)
    previous: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for child in sorted(edges.get(node, ())):
            if child == start:
                path = [node]
                while path[-1] != start:
                    path.append(previous[path[-1]])
                return [*reversed(path), start]
            if child in component and child not in previous:
                previous[child] = node
                queue.append(child)
    raise AssertionError(f"no cycle through {start} in {sorted(component)}")


def describe_cycles(graph: ImportGraph) -> list[str]:
    found = []
    for component in strongly_connected(graph.edges):
        cycle = one_cycle(graph.edges, component)
        steps = [graph.where(a, b) for a, b in pairwise(cycle)]
        found.append(
            f"cycle among {len(component)} modules ({', '.join(component)}); one of them:\n    "
            + "\n    ".join(steps)
        )
    return found


def group_of(module: str) -> tuple[int, str] | None:
    """The level and group of a package module (its longest matching group)."""
    best: tuple[int, str] | None = None
    for level, groups in enumerate(LEVELS):
        for group in groups:
            # The package's __init__ is its own group; its other modules must be placed.
            inside = group != ROOT_PACKAGE and module.startswith(group + ".")
            if (module == group or inside) and (best is None or len(group) > len(best[1])):
                best = (level, group)
    return best


def run_python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# Imports every module of the packages named in argv[2:] (walked with pkgutil) with the
# top-level packages of argv[1] (comma-separated) made unimportable; exits 1 listing each
# module that failed, with the end of its traceback (which names the importing line).
IMPORT_BLOCKED = """
import importlib, importlib.abc, pkgutil, sys, traceback

blocked = frozenset(sys.argv[1].split(","))
early = sorted(blocked & {name.partition(".")[0] for name in sys.modules})
if early:
    sys.exit(f"imported before the check began (interpreter start-up): {early}")


class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in blocked:
            raise ImportError(f"import of {name} is not allowed here")
        return None


sys.meta_path.insert(0, Blocker())
failures = []


def failed(name):
    failures.append(f"{name}:\\n{traceback.format_exc(limit=-4)}")


names = []
for package in sys.argv[2:]:
    names.append(package)
    try:
        module = importlib.import_module(package)
    except Exception:
        failed(package)
        continue
    if hasattr(module, "__path__"):
        walked = pkgutil.walk_packages(module.__path__, package + ".", onerror=failed)
        names += [info.name for info in walked]
imported = []
for name in dict.fromkeys(names):
    try:
        importlib.import_module(name)
    except Exception:
        failed(name)
    else:
        imported.append(name)
print("imported:", " ".join(imported))
if failures:
    sys.exit("\\n".join(dict.fromkeys(failures)))
"""


def import_with_blocked(blocked: Collection[str], *modules: str) -> None:
    result = run_python(IMPORT_BLOCKED, ",".join(blocked), *modules)
    assert result.returncode == 0, (
        f"with {', '.join(blocked)} unimportable:\n{result.stderr}{result.stdout}"
    )
    assert "imported: " in result.stdout


def test_the_import_reader_sees_every_kind_of_import(tmp_path: Path) -> None:
    """The checks below see imports inside functions, under TYPE_CHECKING, relative ones, and
    submodules named by ``from package import name``; and the cycle finder finds a cycle."""
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    sources = {
        "__init__.py": "",
        "a.py": "def f():\n    from pkg.b import thing\n",
        "b.py": (
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .sub import c\n"
            "thing = 1\n"
        ),
        "sub/__init__.py": "from ..a import f\n",
        "sub/c.py": "import pkg.sub\nfrom pkg import a, b\nfrom . import missing\n",
    }
    for name, text in sources.items():
        (package / name).write_text(text, encoding="utf-8")

    graph = read_imports(package)

    assert {importer: sorted(imported) for importer, imported in graph.edges.items()} == {
        "pkg.a": ["pkg.b"],
        "pkg.b": ["pkg.sub.c"],
        "pkg.sub": ["pkg.a"],
        "pkg.sub.c": ["pkg.a", "pkg.b", "pkg.sub"],
    }
    assert strongly_connected(graph.edges) == [["pkg.a", "pkg.b", "pkg.sub", "pkg.sub.c"]]
    assert one_cycle(graph.edges, ["pkg.a", "pkg.b", "pkg.sub", "pkg.sub.c"]) == [
        "pkg.a",
        "pkg.b",
        "pkg.sub.c",
        "pkg.a",
    ]
    assert strongly_connected({"x": ["y"], "y": []}) == []


def test_the_package_has_no_import_cycles() -> None:
    graph = read_imports(PACKAGE_DIR)
    assert len(graph.files) > 50
    cycles = describe_cycles(graph)
    assert not cycles, "\n".join(cycles)


def test_no_module_imports_the_plugin() -> None:
    graph = read_imports(PACKAGE_DIR)
    assert PLUGIN in graph.files
    importers = [
        graph.where(importer, PLUGIN)
        for importer, imported in graph.edges.items()
        if PLUGIN in imported
    ]
    assert not importers, "the plugin is the top: nothing imports it\n" + "\n".join(importers)


def test_no_module_is_over_500_lines() -> None:
    lengths = {
        name: len(path.read_text(encoding="utf-8").splitlines())
        for name, path in module_files(PACKAGE_DIR).items()
    }
    too_long = [f"{name}: {count} lines" for name, count in lengths.items() if count > MAX_LINES]
    assert not too_long, "\n".join(too_long)


def test_modules_import_only_their_own_layer_or_lower() -> None:
    graph = read_imports(PACKAGE_DIR)
    unplaced = [name for name in graph.files if group_of(name) is None]
    assert not unplaced, f"modules in no layer (add them to LEVELS): {unplaced}"
    wrong = []
    for importer, imported_lines in sorted(graph.edges.items()):
        importer_level, importer_group = group_of(importer) or (-1, "")
        for imported in sorted(imported_lines):
            level, group = group_of(imported) or (-1, "")
            if group == importer_group or (importer_group, group) in ALLOWED_ACROSS:
                continue
            if level == importer_level:
                wrong.append(f"{graph.where(importer, imported)}: {group} is a sibling layer")
            elif level > importer_level:
                wrong.append(f"{graph.where(importer, imported)}: {group} is a higher layer")
    assert not wrong, "\n".join(wrong)


def test_gateway_modules_import_only_the_stdlib_at_module_level() -> None:
    """A gateway runs the worker in an interpreter that may have nothing but the stdlib
    (a remote one over ssh); Playwright is imported inside the browser runners' functions."""
    import_with_blocked(NOT_IN_A_GATEWAY, "pytest_runset.gateway", "pytest_runset.gateway.worker")


@pytest.mark.parametrize("package", sorted(WITHOUT_PYTEST))
def test_model_and_results_import_without_pytest(package: str) -> None:
    """The ``pytest-runset`` command (validate, list, show, merge) runs without pytest."""
    import_with_blocked(WITHOUT_PYTEST[package], package)


def test_importing_the_plugin_does_not_import_pydantic_execnet_filelock_or_playwright() -> None:
    """pytest loads the plugin into every session, most of which collect no run-set: what
    only a run-set needs is imported when one is collected."""
    code = (
        "import sys\n"
        "import pytest_runset.plugin\n"
        f"for name in {NOT_LOADED_BY_THE_PLUGIN!r}:\n"
        "    if name in sys.modules:\n"
        "        print(name)\n"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    loaded = result.stdout.split()
    assert not loaded, f"`import pytest_runset.plugin` imported {loaded}"
