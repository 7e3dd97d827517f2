"""``matrix`` on a flow: one ``[[flows]]`` table becomes one table per combination of values.

Axes are lists of values (strings, numbers, booleans) or ``{ range = [start, stop] }``;
``exclude`` drops the combinations a partial table matches and ``include`` adds combinations,
as GitHub Actions' matrix does. Combinations come in axis order (the last axis varies fastest),
then the included ones in the order they are written.

Expansion works on the parsed TOML, before the flows are validated: a template's name, tags
and persona only become valid once ``{matrix.<axis>}`` is filled in, and every expanded table
is then validated, checked and slugged exactly like a hand-written one. So node ids, slugs,
``-k``, ``--lf``, shards, resume and the coordinator's queue see ordinary flows. Each expanded
table's ``env`` gets ``RUNSET_MATRIX_<AXIS>``.

In the fields that are templates (``command``, ``env``, ``cwd``, ``steps``, ``sidecar``) a
value is inserted with its braces doubled, so a value can never become a placeholder; in every
other string it is inserted as it is. No pytest here, one pass over the combinations.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, TypeAlias

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from pytest_runset.model.flows import RunsetError
from pytest_runset.model.messages import describe_validation_error, flow_label, show_key

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from pathlib import Path

__all__ = [
    "MAX_COMBINATIONS",
    "Expansion",
    "MatrixSpec",
    "MatrixValue",
    "expand_flows",
    "matrix_env_name",
    "render_value",
]

# A bound on one flow's expansion: a typo in a range must not build millions of flows.
MAX_COMBINATIONS = 100_000
# Keys of a flow table whose strings are templates (placeholders filled in at dispatch).
TEMPLATED_KEYS = frozenset({"command", "env", "cwd", "steps", "sidecar"})
_AXIS_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# ``{{`` and ``}}`` are matched first so that doubled braces keep what they enclose literal.
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{\s*matrix\.([^{}]*?)\s*\}")

MatrixValue: TypeAlias = str | int | float | bool
# Booleans first: in smart mode pydantic keeps the exact type, but the order documents intent.
_Value = StrictBool | StrictInt | StrictFloat | StrictStr


class AxisRange(BaseModel):
    """``{ range = [start, stop] }``: the integers start, start + 1, ..., stop - 1."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    range: list[StrictInt]

    @field_validator("range")
    @classmethod
    def _start_stop(cls, value: list[int]) -> list[int]:
        if len(value) != 2:
            raise ValueError("must be [start, stop] (integers, stop excluded)")
        return value

    @property
    def size(self) -> int:
        return max(0, self.range[1] - self.range[0])


# A table is a range, anything else a list: only that member's problems are reported.
_Axis = Annotated[
    Annotated[list[_Value], Tag("values")] | Annotated[AxisRange, Tag("range")],
    Discriminator(lambda value: "range" if isinstance(value, dict | AxisRange) else "values"),
]


class MatrixSpec(BaseModel):
    """A flow's ``matrix`` table: the axes, and the ``include``/``exclude`` lists."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    axes: dict[StrictStr, _Axis]
    include: list[dict[StrictStr, _Value]] = Field(default_factory=list)
    exclude: list[dict[StrictStr, _Value]] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _split_axes(cls, data: Any) -> Any:
        """The file writes axes beside ``include``/``exclude``; the model keeps them apart.
        (``axes`` is not a key of the file, so messages leave it out of field paths.)"""
        if not isinstance(data, dict):
            return data
        lists = {key: data[key] for key in ("include", "exclude") if key in data}
        axes = {key: value for key, value in data.items() if key not in lists}
        return {"axes": axes, **lists}

    @field_validator("axes")
    @classmethod
    def _sane_axes(
        cls, value: dict[str, list[MatrixValue] | AxisRange]
    ) -> dict[str, list[MatrixValue] | AxisRange]:
        if not value:
            raise ValueError("give at least one axis, e.g. seed = [1, 2, 3]")
        env_names: dict[str, str] = {}
        for name, axis in value.items():
            if not _AXIS_NAME.match(name):
                raise ValueError(
                    f"axis {show_key(name)!r}: use letters, digits and '_' "
                    "(it names a placeholder and an environment variable)"
                )
            other = env_names.setdefault(matrix_env_name(name), name)
            if other != name:
                raise ValueError(f"axes {other!r} and {name!r} would share {matrix_env_name(name)}")
            size = axis.size if isinstance(axis, AxisRange) else len(axis)
            if size == 0:
                raise ValueError(f"axis {name!r} has no values")
            if isinstance(axis, list):
                for item in axis:
                    if isinstance(item, float) and not math.isfinite(item):
                        raise ValueError(f"axis {name!r}: {item} is not a finite number")
        return value

    def values(self, axis: str) -> Iterator[MatrixValue]:
        spec = self.axes[axis]
        if isinstance(spec, AxisRange):
            return iter(range(*spec.range))
        return iter(spec)

    def product_size(self) -> int:
        return math.prod(
            axis.size if isinstance(axis, AxisRange) else len(axis) for axis in self.axes.values()
        )


class _MatrixOnly(BaseModel):
    """A flow table seen only for its ``matrix`` (the rest is validated after expansion)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    matrix: MatrixSpec | None = None


class _MatrixTables(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    flows: list[_MatrixOnly]


@dataclass(frozen=True)
class Expansion:
    """A document whose matrix flows are expanded.

    ``document`` is the parsed TOML with ``flows`` replaced by the expanded tables;
    ``positions[i]`` is the 0-based position in the file of the table flow ``i`` came from and
    ``combinations[i]`` its matrix values (``None`` for a flow without a matrix).
    """

    document: dict[str, Any]
    positions: list[int]
    combinations: list[dict[str, MatrixValue] | None]


def matrix_env_name(axis: str) -> str:
    """``RUNSET_MATRIX_<AXIS>``: the environment variable that holds an axis's value."""
    return f"RUNSET_MATRIX_{axis.upper()}"


def render_value(value: MatrixValue) -> str:
    """A value as text: booleans as TOML writes them, numbers as Python prints them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _key(value: MatrixValue) -> tuple[bool, bool, MatrixValue]:
    """A value's identity for matching: ``true`` is not ``1``, ``"1"`` is not ``1``."""
    return (isinstance(value, bool), isinstance(value, str), value)


def expand_flows(shown: Path, raw: Mapping[str, Any]) -> Expansion | None:
    """The document with its matrix flows expanded, or ``None`` when no flow has a matrix.

    Raises :class:`RunsetError` (one line naming the file, the flow and the field) for a
    malformed matrix, an unknown axis in ``include``/``exclude`` or a placeholder, more than
    :data:`MAX_COMBINATIONS` combinations, or two combinations that give the same name.
    """
    tables = raw.get("flows")
    if not isinstance(tables, list) or not any(
        isinstance(table, dict) and "matrix" in table for table in tables
    ):
        return None
    only = [
        {"matrix": table["matrix"]} if isinstance(table, dict) and "matrix" in table else {}
        for table in tables
    ]
    try:
        specs = _MatrixTables.model_validate({"flows": only}).flows
    except ValidationError as exc:
        raise RunsetError(describe_validation_error(shown, raw, exc)) from None
    expanded: list[Any] = []
    positions: list[int] = []
    combinations: list[dict[str, MatrixValue] | None] = []
    for position, (table, holder) in enumerate(zip(tables, specs, strict=True)):
        if holder.matrix is None:
            expanded.append(table)
            positions.append(position)
            combinations.append(None)
            continue
        where = f"{shown}: {flow_label(position, table.get('name'))}"
        template = {key: value for key, value in table.items() if key != "matrix"}
        combos = _combinations(where, holder.matrix)
        _check_placeholders(where, template, holder.matrix)
        names: dict[str, dict[str, MatrixValue]] = {}
        for combo in combos:
            filled = _expanded_table(template, combo)
            name = filled.get("name")
            if isinstance(name, str):
                first = names.setdefault(name, combo)
                if first is not combo:
                    raise RunsetError(
                        f"{where}, field 'name': {name!r} is the name of both "
                        f"{_shown_combo(first)} and {_shown_combo(combo)}; put every axis "
                        "in the name (e.g. {matrix.<axis>}) so each flow has its own"
                    )
            expanded.append(filled)
            positions.append(position)
            combinations.append(combo)
    document = dict(raw)
    document["flows"] = expanded
    return Expansion(document=document, positions=positions, combinations=combinations)


def _shown_combo(combo: Mapping[str, MatrixValue]) -> str:
    """``{variant = "a", seed = 1}``: a combination as TOML writes an inline table."""
    shown = (
        json.dumps(value, ensure_ascii=False) if isinstance(value, str) else render_value(value)
        for value in combo.values()
    )
    return (
        "{" + ", ".join(f"{axis} = {text}" for axis, text in zip(combo, shown, strict=True)) + "}"
    )


def _combinations(where: str, spec: MatrixSpec) -> list[dict[str, MatrixValue]]:
    """Every combination of ``spec``: the product in axis order less ``exclude``, then
    ``include`` (an included combination already present is not added twice)."""
    axes = list(spec.axes)
    known = ", ".join(axes)
    for kind in ("exclude", "include"):
        for number, entry in enumerate(getattr(spec, kind)):
            field = f"{where}, field 'matrix.{kind}[{number}]'"
            unknown = [name for name in entry if name not in spec.axes]
            if unknown:
                raise RunsetError(f"{field}: unknown axis {show_key(unknown[0])!r} (axes: {known})")
            if kind == "exclude" and not entry:
                raise RunsetError(f"{field}: an empty table would exclude every combination")
            missing = [name for name in axes if name not in entry]
            if kind == "include" and missing:
                raise RunsetError(
                    f"{field}: give a value for every axis (missing: {', '.join(missing)})"
                )
    total = spec.product_size() + len(spec.include)
    if total > MAX_COMBINATIONS:
        raise RunsetError(
            f"{where}, field 'matrix': {total:,} combinations; at most {MAX_COMBINATIONS:,} "
            "per flow"
        )
    excludes = [
        [(axes.index(name), _key(value)) for name, value in entry.items()] for entry in spec.exclude
    ]
    combos: list[dict[str, MatrixValue]] = []
    seen: set[tuple[tuple[bool, bool, MatrixValue], ...]] = set()
    for values in itertools.product(*(list(spec.values(axis)) for axis in axes)):
        keys = tuple(_key(value) for value in values)
        if any(all(keys[i] == key for i, key in entry) for entry in excludes):
            continue
        seen.add(keys)
        combos.append(dict(zip(axes, values, strict=True)))
    for entry in spec.include:
        keys = tuple(_key(entry[axis]) for axis in axes)
        if keys not in seen:
            seen.add(keys)
            combos.append({axis: entry[axis] for axis in axes})
    return combos


def _check_placeholders(where: str, template: Mapping[str, Any], spec: MatrixSpec) -> None:
    """Every ``{matrix.<axis>}`` of the template names an axis (checked once per flow)."""
    for path, text in _strings(template, ""):
        for match in _PLACEHOLDER.finditer(text):
            axis = match.group(1)
            if axis is not None and axis not in spec.axes:
                raise RunsetError(
                    f"{where}, field '{path}': unknown matrix axis "
                    f"{{matrix.{show_key(axis)}}} (axes: {', '.join(spec.axes)})"
                )


def _strings(node: Any, path: str) -> Iterator[tuple[str, str]]:
    """``(field path, string)`` of every string in a table (keys and values)."""
    if isinstance(node, str):
        yield path, node
    elif isinstance(node, dict):
        for key, value in node.items():
            inner = f"{path}.{show_key(key)}" if path else show_key(key)
            yield inner, key
            yield from _strings(value, inner)
    elif isinstance(node, list):
        for position, value in enumerate(node):
            yield from _strings(value, f"{path}[{position}]")


def _expanded_table(
    template: Mapping[str, Any], combo: Mapping[str, MatrixValue]
) -> dict[str, Any]:
    """One combination's flow table: placeholders filled in, ``RUNSET_MATRIX_*`` in its env."""
    literal = {axis: render_value(value) for axis, value in combo.items()}
    escaped = {axis: text.replace("{", "{{").replace("}", "}}") for axis, text in literal.items()}
    table = {
        key: _fill(value, escaped if key in TEMPLATED_KEYS else literal)
        for key, value in template.items()
    }
    env = table.get("env", {})
    if isinstance(env, dict):  # anything else is refused when the table is validated
        table["env"] = {**env, **{matrix_env_name(axis): escaped[axis] for axis in combo}}
    return table


def _fill(node: Any, values: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        if "{" not in node:
            return node
        return _PLACEHOLDER.sub(lambda m: values[m.group(1)] if m.group(1) else m.group(0), node)
    if isinstance(node, dict):
        return {_fill(key, values): _fill(value, values) for key, value in node.items()}
    if isinstance(node, list):
        return [_fill(value, values) for value in node]
    return node
