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

DEFAULT_TIMEOUT_S = 15 * 60.0
DEFAULT_KILL_GRACE_S = 5.0
# The keys that choose what a flow is; exactly one must be present.
KIND_KEYS: tuple[str, ...] = ("command",)
# pytest's own markers: a tag with one of these names would change how a flow runs.
RESERVED_TAGS = frozenset(
    {"skip", "skipif", "xfail", "parametrize", "usefixtures", "filterwarnings", "runset"}
)
_TAG = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)", re.IGNORECASE)
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class RunsetError(Exception):
    """A run-set file that cannot be used; ``str()`` is one line naming file and field."""


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
    kind: Literal["command"]
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


def _location(raw: Any, loc: tuple[int | str, ...]) -> str:
    """``flow #3 'login', field 'timeout'`` from a pydantic error location."""
    parts = list(loc)
    if len(parts) >= 2 and parts[0] == "flows" and isinstance(parts[1], int):
        index = parts[1]
        name = None
        flows = raw.get("flows") if isinstance(raw, dict) else None
        if isinstance(flows, list) and index < len(flows) and isinstance(flows[index], dict):
            name = flows[index].get("name")
        where = f"flow #{index + 1}"
        if isinstance(name, str):
            where += f" {name!r}"
        rest = [str(p) for p in parts[2:]]
        return where + (f", field '{'.'.join(rest)}'" if rest else "")
    if parts and parts[0] == "runset":
        return "[runset]" + (f", field '{'.'.join(str(p) for p in parts[1:])}'" if parts[1:] else "")
    return f"field '{'.'.join(str(p) for p in parts)}'" if parts else "file"


def _pydantic_message(error: Any) -> str:
    kind = error.get("type", "")
    if kind == "extra_forbidden":
        return "unknown key (typo?)"
    if kind == "missing":
        return "required key is missing"
    message = str(error.get("msg", "invalid value"))
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            message = message[len(prefix) :]
    return message


def _describe_validation_error(path: Path, raw: Any, exc: ValidationError) -> str:
    errors = exc.errors()
    first = errors[0]
    loc = tuple(p for p in first.get("loc", ()) if not (isinstance(p, str) and "[" in p))
    # pydantic adds union member names ("list[str]", "str") to locations; drop them.
    loc = tuple(p for p in loc if p not in ("str", "bool", "int", "float", "function-before"))
    message = _pydantic_message(first)
    # Cross-field checks name their field as "field: problem"; fold it into the location.
    named = re.match(r"^([a-z_]+): (.*)$", message)
    if named and len(loc) == 2:
        loc = (*loc, named.group(1))
        message = named.group(2)
    text = f"{path}: {_location(raw, loc)}: {message}"
    if len(errors) > 1:
        text += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
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
        check(f"[runset], field 'env.{key}'", value)
    if doc.runset.base_url is not None:
        check("[runset], field 'base_url'", doc.runset.base_url)
    for index, spec in enumerate(doc.flows):
        where = f"flow #{index + 1} {spec.name!r}, field"
        if isinstance(spec.command, str):
            check(f"{where} 'command'", spec.command)
        elif spec.command is not None:
            for position, arg in enumerate(spec.command):
                check(f"{where} 'command[{position}]'", arg)
        for key, value in spec.env.items():
            check(f"{where} 'env.{key}'", value)
        if spec.cwd is not None:
            check(f"{where} 'cwd'", spec.cwd)


def parse_runset(path: Path, data: bytes, display: str | None = None) -> RunSet:
    """Validate the bytes of a run-set file.

    ``path`` anchors relative paths; ``display`` (default: ``path``) names the file in messages,
    so users see the path as they typed it.
    """
    shown = Path(display) if display is not None else path
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RunsetError(
            f"{shown}: not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start})"
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
        flows.append(
            Flow(
                index=index,
                name=spec.name,
                slug=slug,
                kind="command",
                command=command,
                shell=spec.shell,
                cwd=spec.cwd,
                env=dict(spec.env),
                tags=tuple(dict.fromkeys(spec.tags)),
                timeout_s=spec.timeout if spec.timeout is not None else settings.timeout,
                kill_grace_s=(
                    spec.kill_grace if spec.kill_grace is not None else settings.kill_grace
                ),
                retries=spec.retries if spec.retries is not None else settings.retries,
                skip=_reason(spec.skip, "skipped in the run-set"),
                xfail=_reason(spec.xfail, "expected to fail"),
                sha256=_flow_sha(raw_flows[index]),
                description=spec.description,
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
