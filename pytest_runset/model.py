"""The run-set file: pydantic models of its TOML schema and :func:`load_runset`.

Nothing here imports pytest: the ``pytest-runset`` command line uses the same loader. Every
problem with a file becomes one :class:`RunsetError` whose text is a single line naming the
file, the flow (position and name) and the field.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)

from .placeholders import PlaceholderError, check_template
from .slugs import unique_slugs
from .steps import Viewport

DEFAULT_TIMEOUT_S = 15 * 60.0
DEFAULT_KILL_GRACE_S = 5.0
# Longest accepted duration. Far beyond any sensible flow, and well below what the waits of the
# stdlib accept (``threading.TIMEOUT_MAX``): a larger value would crash a worker mid-flow.
MAX_DURATION_S = 365 * 86400.0
# The keys that choose what a flow is; exactly one must be present.
KIND_KEYS: tuple[str, ...] = ("command", "steps", "spec", "callable")
# How flows run in a browser: a fresh context in a warm browser, or a browser per flow.
BROWSER_ISOLATION = ("context", "process")
# pytest's own markers: a tag with one of these names would change how a flow runs.
RESERVED_TAGS = frozenset(
    {"skip", "skipif", "xfail", "parametrize", "usefixtures", "filterwarnings", "runset"}
)
_TAG = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)", re.IGNORECASE)
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class RunsetError(Exception):
    """A run-set file that cannot be used; ``str()`` is one line naming file and field.

    Whatever goes into the message (file names, keys, flow names, values from the file), line
    breaks come out escaped: the message is always exactly one line.
    """

    def __init__(self, message: str) -> None:
        super().__init__(_one_line(message))


def parse_duration(value: object) -> float:
    """Seconds from a number (seconds) or a string such as ``"90s"``, ``"15m"``, ``"1h30m"``."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like '90s', '15m'")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            parts = list(_DURATION_PART.finditer(text))
            rebuilt = "".join(p.group(0) for p in parts)
            if not parts or rebuilt.replace(" ", "") != text.replace(" ", ""):
                raise ValueError(
                    f"{value!r} is not a duration (use seconds, or e.g. '90s', '15m', '1h30m')"
                ) from None
            seconds = sum(float(p.group(1)) * _UNIT_SECONDS[p.group(2).lower()] for p in parts)
    else:
        raise ValueError("a duration is a number of seconds or a string like '90s', '15m'")
    if not math.isfinite(seconds):
        raise ValueError("a duration must be finite")
    if seconds > MAX_DURATION_S:
        raise ValueError(f"{value!r} is too long: a duration is at most 365 days")
    return seconds


def _positive_duration(value: object) -> float:
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError("must be greater than 0")
    return seconds


def _non_negative_duration(value: object) -> float:
    seconds = parse_duration(value)
    if seconds < 0:
        raise ValueError("must not be negative")
    return seconds


PositiveDuration = Annotated[float, BeforeValidator(_positive_duration)]
NonNegativeDuration = Annotated[float, BeforeValidator(_non_negative_duration)]
EnvTable = dict[StrictStr, StrictStr]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RunsetSettings(_Strict):
    """The ``[runset]`` table."""

    name: StrictStr | None = None
    concurrency: Annotated[StrictInt, Field(gt=0)] | None = None
    timeout: PositiveDuration = DEFAULT_TIMEOUT_S
    kill_grace: NonNegativeDuration = DEFAULT_KILL_GRACE_S
    output: StrictStr | None = None
    retries: Annotated[StrictInt, Field(ge=0)] = 0
    base_url: StrictStr | None = None
    env: EnvTable = Field(default_factory=dict)
    browser_isolation: Literal["context", "process"] = "context"
    viewport: Viewport | None = None

    @field_validator("name")
    @classmethod
    def _name_not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be empty")
        return value


class FlowSpec(_Strict):
    """One ``[[flows]]`` table as written."""

    name: StrictStr
    command: list[StrictStr] | StrictStr | None = None
    steps: list[Any] | None = None
    spec: StrictStr | None = None
    callable: StrictStr | None = None
    browser: StrictBool | None = None
    viewport: Viewport | None = None
    shell: StrictBool = False
    cwd: StrictStr | None = None
    env: EnvTable = Field(default_factory=dict)
    tags: list[StrictStr] = Field(default_factory=list)
    timeout: PositiveDuration | None = None
    kill_grace: NonNegativeDuration | None = None
    retries: Annotated[StrictInt, Field(ge=0)] | None = None
    skip: StrictStr | StrictBool | None = None
    xfail: StrictStr | StrictBool | None = None
    description: StrictStr | None = None

    @field_validator("name")
    @classmethod
    def _name_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("tags")
    @classmethod
    def _tags_are_marker_names(cls, value: list[str]) -> list[str]:
        for tag in value:
            if not _TAG.match(tag):
                raise ValueError(
                    f"tag {tag!r} is not usable as a pytest marker "
                    "(letters, digits and '_', not starting with a digit)"
                )
            if tag in RESERVED_TAGS:
                raise ValueError(f"tag {tag!r} is reserved by pytest; choose another name")
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> FlowSpec:
        kinds = [key for key in KIND_KEYS if getattr(self, key) is not None]
        if not kinds:
            raise ValueError(f"no kind: give one of {', '.join(KIND_KEYS)}")
        if len(kinds) > 1:
            raise ValueError(f"two kinds ({' and '.join(kinds)}): give exactly one")
        if isinstance(self.command, list) and not self.command:
            raise ValueError("command: must not be an empty list")
        if isinstance(self.command, str):
            if not self.shell:
                raise ValueError(
                    "command: a string command needs shell = true (or give an argv list)"
                )
            if not self.command.strip():
                raise ValueError("command: must not be empty")
        elif self.shell:
            raise ValueError("shell: shell = true needs the command as one string")
        kind = kinds[0]
        if kind in ("steps", "spec") and self.cwd is not None:
            raise ValueError("cwd: only command and callable flows have a working directory")
        if kind in ("steps", "spec") and self.browser is False:
            raise ValueError("browser: steps always run in a browser")
        if kind == "command" and self.browser is not None:
            raise ValueError("browser: only callable flows take 'browser'")
        if self.viewport is not None and (kind == "command" or self.browser is False):
            raise ValueError("viewport: only browser flows have a viewport")
        if self.spec is not None and not self.spec.strip():
            raise ValueError("spec: must not be empty")
        return self


class RunsetDocument(_Strict):
    """The whole file."""

    runset: RunsetSettings = Field(default_factory=RunsetSettings)
    flows: list[FlowSpec] = Field(default_factory=list)


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


@dataclass(frozen=True)
class RunSet:
    """A loaded, validated run-set file."""

    path: Path
    name: str
    sha256: str
    settings: RunsetSettings
    flows: tuple[Flow, ...] = field(default_factory=tuple)

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


def _check_placeholders(path: Path, doc: RunsetDocument) -> None:
    def check(where: str, text: str) -> None:
        try:
            check_template(text)
        except PlaceholderError as exc:
            raise RunsetError(f"{path}: {where}: {exc}") from None

    for key, value in doc.runset.env.items():
        check(f"[runset], field 'env.{_show_key(key)}'", value)
    if doc.runset.base_url is not None:
        check("[runset], field 'base_url'", doc.runset.base_url)
    for index, spec in enumerate(doc.flows):
        where = f"{_flow_label(index, spec.name)}, field"
        if isinstance(spec.command, str):
            check(f"{where} 'command'", spec.command)
        elif spec.command is not None:
            for position, arg in enumerate(spec.command):
                check(f"{where} 'command[{position}]'", arg)
        for key, value in spec.env.items():
            check(f"{where} 'env.{_show_key(key)}'", value)
        if spec.cwd is not None:
            check(f"{where} 'cwd'", spec.cwd)


def _browser_parts(
    shown: Path, root: Path, index: int, spec: FlowSpec, settings: RunsetSettings
) -> dict[str, Any]:
    """The :class:`Flow` fields of a steps, spec or callable flow (``{}`` for a command).

    Steps are validated here, spec files read (relative to the run-set's directory) and a
    callable's parameters checked; each problem is one :class:`RunsetError` naming the flow.
    """
    from .callables import CallableError, inspect_callable, needs_browser
    from .steps import SpecError, StepError, describe_step_error, load_spec, parse_steps

    where = f"{shown}: {_flow_label(index, spec.name)}"
    viewport = spec.viewport or settings.viewport
    if spec.steps is not None:
        try:
            steps = parse_steps(spec.steps)
        except StepError as exc:
            raise RunsetError(f"{where}, {describe_step_error(exc)}") from None
        parts: dict[str, Any] = {"kind": "steps", "steps": steps, "browser": True}
    elif spec.spec is not None:
        try:
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
            info = inspect_callable(spec.callable, root)
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
    _check_placeholders(shown, doc)

    settings = doc.runset
    slugs = unique_slugs(spec.name for spec in doc.flows)
    raw_flows = raw.get("flows", [])
    flows = []
    for index, (spec, slug) in enumerate(zip(doc.flows, slugs, strict=True)):
        command: tuple[str, ...] | str
        command = spec.command if isinstance(spec.command, str) else tuple(spec.command or ())
        extra = _browser_parts(shown, path.parent, index, spec, settings)
        timeout = extra.pop("timeout_s", None)
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
                **extra,
            )
        )
    return RunSet(
        path=path,
        name=settings.name or path.stem,
        sha256=hashlib.sha256(data).hexdigest(),
        settings=settings,
        flows=tuple(flows),
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
