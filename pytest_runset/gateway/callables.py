"""Callable flows at load time: ``module:function`` references and their parameters.

The function's parameters are checked without importing the module (importing user code in
the controller could have side effects, or pull in Playwright): the module's source is found
on the run-set's directory and ``sys.path`` and its ``def`` is read with :mod:`ast`. When the
function is not a plain top-level ``def`` (assigned, imported, a compiled module), the check
happens when the flow runs instead.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
from dataclasses import dataclass
from pathlib import Path

# Names a callable may ask for; values are injected by name.
PARAMS: tuple[str, ...] = (
    "page",
    "context",
    "browser",
    "flow",
    "persona",
    "base_url",
    "flow_dir",
    "port",
    "ports",
    "env",
)
# Asking for any of these makes the flow a browser flow.
BROWSER_PARAMS = frozenset({"page", "context", "browser"})
_REFERENCE = re.compile(
    r"^([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*):([A-Za-z_][A-Za-z0-9_]*)$"
)


class CallableError(ValueError):
    """A callable reference that cannot work; one line."""


@dataclass(frozen=True)
class CallableInfo:
    module: str
    function: str
    # Injected parameter names, or None when they can only be checked at run time.
    params: tuple[str, ...] | None
    source: str | None = None


def split_reference(reference: str) -> tuple[str, str]:
    match = _REFERENCE.match(reference)
    if match is None:
        raise CallableError(
            f"{reference!r} is not a callable reference: write 'module:function', "
            "e.g. 'flows.shop:checkout'"
        )
    return match.group(1), match.group(2)


def find_module_source(module: str, root: Path) -> Path | None:
    """The ``.py`` file of ``module`` under ``root`` or a ``sys.path`` directory, unimported."""
    relative = Path(*module.split("."))
    for base in [root, *(Path(entry) for entry in sys.path if entry)]:
        for candidate in (base / relative.with_suffix(".py"), base / relative / "__init__.py"):
            if candidate.is_file():
                return candidate
    return None


def check_params(
    names: list[str], defaults: set[str], where: str, ports: int = 0
) -> tuple[str, ...]:
    """The parameters to inject; raises :class:`CallableError` for names that cannot be.

    ``port`` exists only for a flow that leases ports (``ports``); with a default it is simply
    not injected otherwise.
    """
    injected = []
    for name in names:
        if name in PARAMS:
            if name == "port" and ports < 1:
                if name not in defaults:
                    raise CallableError(
                        f"{where}: parameter 'port' is only known to flows that lease ports "
                        "(ports = N)"
                    )
                continue
            injected.append(name)
        elif name not in defaults:
            raise CallableError(
                f"{where}: unknown parameter {name!r}; a callable can ask for {', '.join(PARAMS)}"
            )
    return tuple(injected)


def inspect_callable(reference: str, root: Path, ports: int = 0) -> CallableInfo:
    """Check a ``module:function`` reference against the module's source."""
    module, function = split_reference(reference)
    source = find_module_source(module, root)
    if source is None:
        top = module.split(".")[0]
        try:
            spec = importlib.util.find_spec(top)
        except (ImportError, ValueError):
            spec = None
        if spec is None:
            raise CallableError(
                f"cannot find module {module!r} (looked in the run-set's directory and sys.path)"
            )
        return CallableInfo(module, function, None)
    try:
        tree = ast.parse(source.read_bytes(), filename=str(source))
    except SyntaxError as exc:
        raise CallableError(f"syntax error in {source.name} line {exc.lineno}: {exc.msg}") from None
    except (OSError, ValueError) as exc:
        raise CallableError(f"cannot read {source}: {exc}") from None
    definition: ast.FunctionDef | ast.AsyncFunctionDef | None = None
    bound = False
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == function:
            definition, bound = node, True
        elif _binds(node, function):
            definition, bound = None, True
    if not bound:
        raise CallableError(f"module {module!r} has no function {function!r} ({source.name})")
    if definition is None:
        # Assigned, imported or star-imported: checked when the flow runs.
        return CallableInfo(module, function, None, str(source))
    if isinstance(definition, ast.AsyncFunctionDef):
        raise CallableError(
            f"{module}:{function} is 'async def'; write a plain 'def' (flows get Playwright's "
            "sync API)"
        )
    args = definition.args
    where = f"{module}:{function}"
    if args.posonlyargs:
        raise CallableError(f"{where}: positional-only parameters cannot be injected by name")
    positional = [arg.arg for arg in args.args]
    defaults = set(positional[len(positional) - len(args.defaults) :]) if args.defaults else set()
    keyword = [arg.arg for arg in args.kwonlyargs]
    defaults |= {
        arg.arg for arg, default in zip(args.kwonlyargs, args.kw_defaults, strict=True) if default
    }
    return CallableInfo(
        module, function, check_params(positional + keyword, defaults, where, ports), str(source)
    )


def _binds(node: ast.stmt, name: str) -> bool:
    """Whether a top-level statement (other than a def) binds ``name``."""
    if isinstance(node, ast.ClassDef):
        return node.name == name
    if isinstance(node, ast.Import | ast.ImportFrom):
        return any(
            alias.name == "*" or (alias.asname or alias.name.split(".")[0]) == name
            for alias in node.names
        )
    targets: list[ast.expr] = []
    if isinstance(node, ast.Assign):
        targets = list(node.targets)
    elif isinstance(node, ast.AnnAssign | ast.AugAssign):
        targets = [node.target]
    elif isinstance(node, ast.If | ast.Try | ast.With):
        # Conditional definitions: trust the run-time check.
        return any(
            _binds(child, name) or _defines(child, name)
            for child in ast.iter_child_nodes(node)
            if isinstance(child, ast.stmt)
        )
    return any(isinstance(target, ast.Name) and target.id == name for target in targets)


def _defines(node: ast.stmt, name: str) -> bool:
    return isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name


def needs_browser(params: tuple[str, ...] | None) -> bool:
    return bool(params) and any(name in BROWSER_PARAMS for name in params or ())
