"""How problems in a run-set file are worded: locations and pydantic errors as one line.

This module owns the wording of :class:`~pytest_runset.model.flows.RunsetError` messages: how a
flow, a key or a field path is shown (:func:`flow_label`, :func:`show_key`, :func:`show_name`),
and how a pydantic ``ValidationError`` becomes one line in the words of a TOML file
(:func:`describe_validation_error`). It raises nothing and reads no files.
"""

from __future__ import annotations

import contextlib
import contextvars
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from pathlib import Path

    from pydantic import ValidationError

__all__ = [
    "describe_validation_error",
    "flow_label",
    "flow_positions",
    "show_key",
    "show_name",
    "toml_type",
]

# How a TOML value is named in "must be X, not Y" messages.
_TOML_TYPES: tuple[tuple[type, str], ...] = (
    (bool, "a boolean"),
    (int, "an integer"),
    (float, "a float"),
    (str, "a string"),
    (list, "an array"),
    (dict, "a table"),
)
# What pydantic's type errors expect, in the words of a TOML file.
_EXPECTED = {
    "list_type": "an array",
    "string_type": "a string",
    "bool_type": "a boolean",
    "int_type": "an integer",
    "float_type": "a number",
    "dict_type": "a table",
    "model_type": "a table",
}
_LONG_NAME = 60


def show_key(key: str) -> str:
    """A TOML key as written in a message: escapes for anything unprintable."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in key)


def show_name(name: str) -> str:
    """A flow name for messages: quoted, escaped, long names shortened."""
    if len(name) > _LONG_NAME:
        name = name[: _LONG_NAME - 3] + "..."
    return repr(name)


# Where each flow of a matrix-expanded document was written (0-based table positions); set
# by the loader around the checks of such a document, so messages count tables of the file.
_POSITIONS: contextvars.ContextVar[Sequence[int] | None] = contextvars.ContextVar(
    "runset_flow_positions", default=None
)


@contextlib.contextmanager
def flow_positions(positions: Sequence[int]) -> Iterator[None]:
    """Within: :func:`flow_label` numbers flow ``i`` as its table, ``positions[i]``."""
    token = _POSITIONS.set(positions)
    try:
        yield
    finally:
        _POSITIONS.reset(token)


def flow_label(index: int, name: object) -> str:
    """``flow #3 'login'``: 1-based position of its table, then the name when it is a string."""
    positions = _POSITIONS.get()
    if positions is not None and 0 <= index < len(positions):
        index = positions[index]
    label = f"flow #{index + 1}"
    if isinstance(name, str):
        label += f" {show_name(name)}"
    return label


def _field_path(parts: list[int | str]) -> str:
    """``env.APP`` / ``command[1]`` from location parts."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + show_key(part)
    return text


def _location(raw: Any, loc: tuple[int | str, ...]) -> str:
    """``flow #3 'login', field 'timeout'`` from a (cleaned) pydantic error location."""
    parts = list(loc)
    if len(parts) >= 2 and parts[0] == "flows" and isinstance(parts[1], int):
        index = parts[1]
        name = None
        flows = raw.get("flows") if isinstance(raw, dict) else None
        if isinstance(flows, list) and index < len(flows) and isinstance(flows[index], dict):
            name = flows[index].get("name")
        where = flow_label(index, name)
        rest = parts[2:]
        return where + (f", field '{_field_path(rest)}'" if rest else "")
    if parts and parts[0] == "runset":
        rest = parts[1:]
        return "[runset]" + (f", field '{_field_path(rest)}'" if rest else "")
    return f"field '{_field_path(parts)}'" if parts else "file"


def _real_location(raw: Any, error: Any) -> tuple[tuple[int | str, ...], Any]:
    """The error's location in the file's own keys, and the value found there.

    pydantic puts names of union members (``str``, ``list[str]``, ``function-before[...]``)
    into locations; they are recognised as parts that are not keys of the parsed document.
    A ``missing`` error's last part is the missing key itself and is kept.
    """
    loc = tuple(error.get("loc", ()))
    node: Any = raw
    real: list[int | str] = []
    for position, part in enumerate(loc):
        if isinstance(node, dict):
            found = isinstance(part, str) and part in node
        elif isinstance(node, list):
            found = type(part) is int and 0 <= part < len(node)
        else:
            found = False
        if found:
            node = node[part]
        elif error.get("type") == "missing" and position == len(loc) - 1:
            node = None
        else:
            continue
        real.append(part)
    return tuple(real), node


def toml_type(value: Any) -> str:
    """How a TOML value is named in "must be X, not Y" messages."""
    for kind, name in _TOML_TYPES:
        if isinstance(value, kind):
            return name
    return "a date or time"


def _pydantic_message(error: Any, value: Any) -> str:
    kind = error.get("type", "")
    if kind == "extra_forbidden":
        return "unknown key (typo?)"
    if kind == "missing":
        return "required key is missing"
    if kind in _EXPECTED:
        return f"must be {_EXPECTED[kind]}, not {toml_type(value)}"
    message = str(error.get("msg", "invalid value"))
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            message = message[len(prefix) :]
    if message.startswith("Input should be "):
        message = "must be " + message[len("Input should be ") :]
    return message


def describe_validation_error(path: Path, raw: Any, exc: ValidationError) -> str:
    """The one line a :class:`~pytest_runset.model.flows.RunsetError` shows for ``exc``.

    ``raw`` is the parsed TOML document: it locates the error by the file's own keys and
    names the flow it is in.
    """
    located = [(error, *_real_location(raw, error)) for error in exc.errors()]
    first, loc, value = located[0]
    # One value that fits no member of a union gives one error per member: merge them.
    alternatives = [
        _EXPECTED[error["type"]]
        for error, other, _ in located
        if other == loc and error.get("type") in _EXPECTED
    ]
    if len(alternatives) > 1 and first.get("type") in _EXPECTED:
        unique = list(dict.fromkeys(alternatives))
        message = f"must be {' or '.join(unique)}, not {toml_type(value)}"
    else:
        message = _pydantic_message(first, value)
    # Cross-field checks name their field as "field: problem"; fold it into the location.
    named = re.match(r"^([a-z_]+): (.*)$", message)
    if named and len(loc) == 2 and loc[0] == "flows":
        loc = (*loc, named.group(1))
        message = named.group(2)
    text = f"{path}: {_location(raw, loc)}: {message}"
    # Errors at an enclosing location are the other members of the same union, not problems
    # of their own (``command = ["a", 1]`` fails as a list at [1] and as a string at command).
    others = len({other for _, other, _ in located if other != loc[: len(other)]})
    if others:
        text += f" (and {others} more problem{'s' if others > 1 else ''})"
    return text
