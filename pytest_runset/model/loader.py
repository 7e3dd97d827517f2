"""The run-set file: pydantic models of its TOML schema and :func:`load_runset`.

Nothing here imports pytest: the ``pytest-runset`` command line uses the same loader. Every
problem with a file becomes one :class:`RunsetError` whose text is a single line naming the
file, the flow (position and name) and the field.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from pytest_runset.model.placeholders import PlaceholderError, check_template
from pytest_runset.model.schema import (
    DEFAULT_KILL_GRACE_S,
    DEFAULT_TIMEOUT_S,
    KIND_KEYS,
    MAX_DURATION_S,
    RESERVED_TAGS,
    FlowSpec,
    RunsetDocument,
    RunsetSettings,
    SidecarSpec,
    parse_duration,
)
from pytest_runset.model.slugs import unique_slugs

__all__ = [
    "DEFAULT_KILL_GRACE_S",
    "DEFAULT_TIMEOUT_S",
    "KIND_KEYS",
    "MAX_DURATION_S",
    "RESERVED_TAGS",
    "Flow",
    "FlowSpec",
    "RunSet",
    "RunsetDocument",
    "RunsetError",
    "RunsetSettings",
    "load_runset",
    "parse_duration",
    "parse_runset",
]


class RunsetError(Exception):
    """A run-set file that cannot be used; ``str()`` is one line naming file and field.

    Whatever goes into the message (file names, keys, flow names, values from the file), line
    breaks come out escaped: the message is always exactly one line.
    """

    def __init__(self, message: str) -> None:
        super().__init__(_one_line(message))


@dataclass(frozen=True)
class Flow:
    """One flow with defaults applied: what collection and the pool work with."""

    index: int
    name: str
    slug: str
    kind: Literal["command", "steps", "callable"]
    command: tuple[str, ...] | str
    shell: bool
    cwd: str | None
    env: dict[str, str]
    tags: tuple[str, ...]
    timeout_s: float
    kill_grace_s: float
    retries: int
    skip: str | None
    xfail: str | None
    sha256: str
    description: str | None = None
    # Browser and callable flows (see steps.py and callables.py).
    steps: tuple[dict[str, Any], ...] = ()
    spec: str | None = None
    callable_ref: str | None = None
    params: tuple[str, ...] | None = ()
    browser: bool = False
    base_url: str | None = None
    viewport: tuple[int, int] | None = None
    persona: str | None = None
    ports: int = 0
    exclusive: bool = False
    sidecar: SidecarSpec | None = None
    workspace: str = "none"


@dataclass(frozen=True)
class Persona:
    """An identity a flow runs as; never used by two running flows at once."""

    name: str
    # Plain fields, as strings.
    fields: dict[str, str]
    # Secret fields: field name -> environment variable that holds the value.
    secrets: dict[str, str]

    @property
    def field_names(self) -> frozenset[str]:
        return frozenset(self.fields) | frozenset(self.secrets)


POOL_PREFIX = "pool:"


@dataclass(frozen=True)
class RunSet:
    """A loaded, validated run-set file."""

    path: Path
    name: str
    sha256: str
    settings: RunsetSettings
    flows: tuple[Flow, ...] = field(default_factory=tuple)
    personas: dict[str, Persona] = field(default_factory=dict)
    pools: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def persona_candidates(self, persona: str) -> tuple[str, ...]:
        """The persona names a flow's ``persona`` value may resolve to."""
        if persona.startswith(POOL_PREFIX):
            return self.pools[persona[len(POOL_PREFIX) :]]
        return (persona,)

    @property
    def directory(self) -> Path:
        return self.path.parent


def _reason(value: str | bool | None, default: str) -> str | None:
    if value is None or value is False:
        return None
    if value is True:
        return default
    return value


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


def _one_line(text: str) -> str:
    """``text`` with every character that would break a line shown as an escape."""
    if len(text.splitlines()) <= 1 and not text.endswith(("\n", "\r")):
        return text
    return "".join(ch if ch.isprintable() or ch == " " else repr(ch)[1:-1] for ch in text)


def _show_key(key: str) -> str:
    """A TOML key as written in a message: escapes for anything unprintable."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in key)


def _show_name(name: str) -> str:
    """A flow name for messages: quoted, escaped, long names shortened."""
    if len(name) > _LONG_NAME:
        name = name[: _LONG_NAME - 3] + "..."
    return repr(name)


def _flow_label(index: int, name: object) -> str:
    """``flow #3 'login'``: 1-based position, then the name when it is a string."""
    label = f"flow #{index + 1}"
    if isinstance(name, str):
        label += f" {_show_name(name)}"
    return label


def _field_path(parts: list[int | str]) -> str:
    """``env.APP`` / ``command[1]`` from location parts."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + _show_key(part)
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
        where = _flow_label(index, name)
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


def _toml_type(value: Any) -> str:
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
        return f"must be {_EXPECTED[kind]}, not {_toml_type(value)}"
    message = str(error.get("msg", "invalid value"))
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            message = message[len(prefix) :]
    if message.startswith("Input should be "):
        message = "must be " + message[len("Input should be ") :]
    return message


def _describe_validation_error(path: Path, raw: Any, exc: ValidationError) -> str:
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
        message = f"must be {' or '.join(unique)}, not {_toml_type(value)}"
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


def _flow_sha(raw_flow: Any) -> str:
    canonical = json.dumps(raw_flow, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def _personas(doc: RunsetDocument) -> dict[str, Persona]:
    personas = {}
    for name, table in doc.personas.items():
        fields: dict[str, str] = {}
        secrets: dict[str, str] = {}
        for key, value in table.items():
            if key.endswith("_env"):
                secrets[key[: -len("_env")]] = str(value)
            elif isinstance(value, bool):
                fields[key] = "true" if value else "false"
            else:
                fields[key] = str(value)
        personas[name] = Persona(name=name, fields=fields, secrets=secrets)
    return personas


def _check_references(
    path: Path, doc: RunsetDocument, personas: dict[str, Persona]
) -> dict[int, frozenset[str] | None]:
    """Check persona references; return the persona fields each flow may use, by index."""
    fields: dict[int, frozenset[str] | None] = {}
    for index, spec in enumerate(doc.flows):
        fields[index] = None
        if spec.persona is None:
            continue
        where = f"{path}: {_flow_label(index, spec.name)}, field 'persona'"
        if spec.persona.startswith(POOL_PREFIX):
            pool = spec.persona[len(POOL_PREFIX) :]
            if pool not in doc.persona_pools:
                known = ", ".join(sorted(doc.persona_pools)) or "none defined"
                raise RunsetError(f"{where}: unknown persona pool {pool!r} (pools: {known})")
            members = [personas[name] for name in doc.persona_pools[pool]]
        elif spec.persona in personas:
            members = [personas[spec.persona]]
        else:
            known = ", ".join(sorted(personas)) or "none defined"
            raise RunsetError(
                f"{where}: unknown persona {spec.persona!r} (personas: {known}; "
                "a pool is written 'pool:<name>')"
            )
        fields[index] = frozenset.intersection(*(member.field_names for member in members))
    return fields


def _check_placeholders(
    path: Path, doc: RunsetDocument, persona_fields: dict[int, frozenset[str] | None]
) -> None:
    services = {service.name: service.ports for service in doc.runset.services}

    def check(where: str, text: str, **context: Any) -> None:
        try:
            check_template(text, services=services, **context)
        except PlaceholderError as exc:
            raise RunsetError(f"{path}: {where}: {exc}") from None

    def check_command(
        where: str, command: list[str] | str | None, prefix: str = "", **context: Any
    ) -> None:
        if isinstance(command, str):
            check(f"{where} '{prefix}command'", command, **context)
        elif command is not None:
            for position, arg in enumerate(command):
                check(f"{where} '{prefix}command[{position}]'", arg, **context)

    for key, value in doc.runset.env.items():
        check(f"[runset], field 'env.{_show_key(key)}'", value)
    if doc.runset.base_url is not None:
        check("[runset], field 'base_url'", doc.runset.base_url)
    for position, service in enumerate(doc.runset.services):
        where = f"[[runset.services]] #{position + 1} {_show_name(service.name)}, field"
        check_command(where, service.command, ports=service.ports)
        for key, value in service.env.items():
            check(f"{where} 'env.{_show_key(key)}'", value, ports=service.ports)
        for name in ("ready", "cwd"):
            value = getattr(service, name)
            if value is not None:
                check(f"{where} '{name}'", value, ports=service.ports)
    for index, spec in enumerate(doc.flows):
        where = f"{_flow_label(index, spec.name)}, field"
        sidecar_ports = spec.sidecar.ports if spec.sidecar is not None else 0
        context: dict[str, Any] = {
            "ports": spec.ports,
            "persona_fields": persona_fields[index],
            "sidecar_ports": sidecar_ports,
        }
        check_command(where, spec.command, **context)
        for key, value in spec.env.items():
            check(f"{where} 'env.{_show_key(key)}'", value, **context)
        if spec.cwd is not None:
            check(f"{where} 'cwd'", spec.cwd, **context)
        if spec.sidecar is not None:
            own = {"ports": sidecar_ports, "persona_fields": persona_fields[index]}
            check_command(where, spec.sidecar.command, prefix="sidecar.", **own)
            for key, value in spec.sidecar.env.items():
                check(f"{where} 'sidecar.env.{_show_key(key)}'", value, **own)
            if spec.sidecar.ready is not None:
                check(f"{where} 'sidecar.ready'", spec.sidecar.ready, **own)


def _browser_parts(
    shown: Path,
    root: Path,
    index: int,
    spec: FlowSpec,
    settings: RunsetSettings,
    persona_fields: frozenset[str] | None = None,
) -> dict[str, Any]:
    """The :class:`Flow` fields of a steps, spec or callable flow (``{}`` for a command).

    Steps are validated here, spec files read (relative to the run-set's directory) and a
    callable's parameters checked; each problem is one :class:`RunsetError` naming the flow.
    """
    from pytest_runset.gateway.callables import CallableError, inspect_callable, needs_browser
    from pytest_runset.model.steps import (
        SpecError,
        StepError,
        describe_step_error,
        load_spec,
        parse_steps,
        placeholder_context,
    )

    where = f"{shown}: {_flow_label(index, spec.name)}"
    context = placeholder_context(
        {
            "ports": spec.ports,
            "persona_fields": persona_fields,
            "services": {service.name: service.ports for service in settings.services},
            "sidecar_ports": spec.sidecar.ports if spec.sidecar is not None else 0,
        }
    )
    viewport = spec.viewport or settings.viewport
    if spec.steps is not None:
        try:
            with context:
                steps = parse_steps(spec.steps)
        except StepError as exc:
            raise RunsetError(f"{where}, {describe_step_error(exc)}") from None
        parts: dict[str, Any] = {"kind": "steps", "steps": steps, "browser": True}
    elif spec.spec is not None:
        try:
            with context:
                loaded = load_spec(root / spec.spec)
        except SpecError as exc:
            raise RunsetError(f"{where}, spec {spec.spec!r}: {exc}") from None
        parts = {
            "kind": "steps",
            "steps": loaded.steps,
            "spec": spec.spec,
            "browser": True,
            "base_url": loaded.base_url,
            "timeout_s": loaded.timeout_s,
        }
        viewport = spec.viewport or loaded.viewport or settings.viewport
    elif spec.callable is not None:
        try:
            info = inspect_callable(spec.callable, root, ports=spec.ports)
        except CallableError as exc:
            raise RunsetError(f"{where}, field 'callable': {exc}") from None
        wants = needs_browser(info.params)
        if spec.browser is False and wants:
            raise RunsetError(
                f"{where}, field 'browser': the callable asks for a page, context or browser, "
                "so it needs browser = true (or leave 'browser' out)"
            )
        browser = spec.browser if spec.browser is not None else wants
        parts = {
            "kind": "callable",
            "callable_ref": spec.callable,
            "params": info.params,
            "browser": browser,
        }
    else:
        return {}
    if parts["browser"]:
        parts["viewport"] = (viewport.width, viewport.height) if viewport else None
    return parts


def parse_runset(path: Path, data: bytes, display: str | None = None) -> RunSet:
    """Validate the bytes of a run-set file.

    ``path`` anchors relative paths; ``display`` (default: ``path``) names the file in messages,
    so users see the path as they typed it.
    """
    shown = Path(display) if display is not None else path
    try:
        # A byte order mark (editors on Windows write one) is not part of the document.
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise RunsetError(
            f"{shown}: not valid UTF-8: byte 0x{data[exc.start]:02x} "
            f"at line {line}, column {column} (offset {exc.start})"
        ) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RunsetError(f"{shown}: invalid TOML: {exc}") from None
    try:
        doc = RunsetDocument.model_validate(raw)
    except ValidationError as exc:
        raise RunsetError(_describe_validation_error(shown, raw, exc)) from None
    personas = _personas(doc)
    persona_fields = _check_references(shown, doc, personas)
    _check_placeholders(shown, doc, persona_fields)

    settings = doc.runset
    slugs = unique_slugs(spec.name for spec in doc.flows)
    raw_flows = raw.get("flows", [])
    flows = []
    for index, (spec, slug) in enumerate(zip(doc.flows, slugs, strict=True)):
        extra = _browser_parts(shown, path.parent, index, spec, settings, persona_fields[index])
        timeout = extra.pop("timeout_s", None)
        command: tuple[str, ...] | str
        command = spec.command if isinstance(spec.command, str) else tuple(spec.command or ())
        flows.append(
            Flow(
                index=index,
                name=spec.name,
                slug=slug,
                kind=extra.pop("kind", "command"),
                command=command,
                shell=spec.shell,
                cwd=spec.cwd,
                env=dict(spec.env),
                tags=tuple(dict.fromkeys(spec.tags)),
                timeout_s=(
                    spec.timeout
                    if spec.timeout is not None
                    else timeout
                    if timeout is not None
                    else settings.timeout
                ),
                kill_grace_s=(
                    spec.kill_grace if spec.kill_grace is not None else settings.kill_grace
                ),
                retries=spec.retries if spec.retries is not None else settings.retries,
                skip=_reason(spec.skip, "skipped in the run-set"),
                xfail=_reason(spec.xfail, "expected to fail"),
                sha256=_flow_sha(raw_flows[index]),
                description=spec.description,
                persona=spec.persona,
                ports=spec.ports,
                exclusive=spec.exclusive,
                sidecar=spec.sidecar,
                workspace=spec.workspace,
                **extra,
            )
        )
    return RunSet(
        path=path,
        name=settings.name or path.stem,
        sha256=hashlib.sha256(data).hexdigest(),
        settings=settings,
        flows=tuple(flows),
        personas=personas,
        pools={name: tuple(members) for name, members in doc.persona_pools.items()},
    )


def load_runset(path: str | Path, display: str | None = None) -> RunSet:
    """Read and validate a run-set file (UTF-8 TOML); raise :class:`RunsetError` on any problem.

    ``display`` is how messages name the file (default: ``path`` as given).
    """
    file = Path(path)
    shown = display if display is not None else str(path)
    try:
        with file.open("rb") as handle:
            data = handle.read()
    except IsADirectoryError:
        raise RunsetError(f"{shown}: is a directory, not a run-set file") from None
    except FileNotFoundError:
        raise RunsetError(f"{shown}: no such run-set file") from None
    except OSError as exc:
        raise RunsetError(f"{shown}: cannot read: {exc.strerror or exc}") from None
    return parse_runset(file.absolute(), data, display=shown)
