"""The TOML schema of a run-set file as pydantic models (validation only, no I/O).

:mod:`pytest_runset.model.loader` turns a validated document into the plain
:class:`~pytest_runset.model.flows.Flow` and :class:`~pytest_runset.model.flows.RunSet` objects
the rest of the plugin works with; durations are parsed by :mod:`pytest_runset.model.durations`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    Tag,
    field_validator,
    model_validator,
)

from pytest_runset.model.browser_options import (
    BrowserOptions,
    PersonaLogin,
    ProjectSpec,
    check_persona_login,
)
from pytest_runset.model.durations import parse_duration
from pytest_runset.model.sizes import parse_size
from pytest_runset.model.steps import Viewport

DEFAULT_TIMEOUT_S = 15 * 60.0
DEFAULT_KILL_GRACE_S = 5.0
# The keys that choose what a flow is; exactly one must be present.
KIND_KEYS: tuple[str, ...] = ("command", "steps", "spec", "callable")
# How flows run in a browser: a fresh context in a warm browser, or a browser per flow.
BROWSER_ISOLATION = ("context", "process")
# pytest's own markers: a tag with one of these names would change how a flow runs.
RESERVED_TAGS = frozenset(
    {"skip", "skipif", "xfail", "parametrize", "usefixtures", "filterwarnings", "runset"}
)
_TAG = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


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
MemorySize = Annotated[int, BeforeValidator(parse_size)]
PidsMax = Annotated[StrictInt, Field(gt=0, le=4194304)]
# How a flow's processes are kept together (docs/reliability.md#containment).
CONTAINMENT_TIERS = ("auto", "cgroup", "process-group")
NonNegativeDuration = Annotated[float, BeforeValidator(_non_negative_duration)]
EnvTable = dict[StrictStr, StrictStr]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SERVICE_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
DEFAULT_PORT_RANGE = (20000, 29999)


def _check_command(command: list[str] | str | None, shell: bool) -> None:
    if command is None:
        return
    if isinstance(command, list) and not command:
        raise ValueError("command: must not be an empty list")
    if isinstance(command, str):
        if not shell:
            raise ValueError("command: a string command needs shell = true (or give an argv list)")
        if not command.strip():
            raise ValueError("command: must not be empty")
    elif shell:
        raise ValueError("shell: shell = true needs the command as one string")


class PortsSettings(_Strict):
    """``[runset.ports]``: the pool ports are leased from (host-wide, across sessions)."""

    range: tuple[StrictInt, StrictInt] = DEFAULT_PORT_RANGE

    @field_validator("range")
    @classmethod
    def _sane_range(cls, value: tuple[int, int]) -> tuple[int, int]:
        low, high = value
        if not 1024 <= low <= high <= 65535:
            raise ValueError("must be [low, high] with 1024 <= low <= high <= 65535")
        return value


class ProcessSpec(_Strict):
    """A process next to the flows: a service (per run) or a sidecar (per flow)."""

    command: list[StrictStr] | StrictStr
    shell: StrictBool = False
    cwd: StrictStr | None = None
    env: EnvTable = Field(default_factory=dict)
    ports: Annotated[StrictInt, Field(ge=0, le=64)] = 1
    ready: StrictStr | None = None
    ready_timeout: PositiveDuration = 30.0
    ready_log: StrictStr | None = None
    kill_grace: NonNegativeDuration | None = None

    @field_validator("ready")
    @classmethod
    def _ready_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://", "tcp://")):
            raise ValueError("must be an http(s):// URL or tcp://host:port")
        return value

    @field_validator("ready_log")
    @classmethod
    def _ready_log_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _command_shape(self) -> ProcessSpec:
        _check_command(self.command, self.shell)
        return self


class ServiceSpec(ProcessSpec):
    """``[[runset.services]]``: started once before the first flow, stopped after the last."""

    name: StrictStr

    @field_validator("name")
    @classmethod
    def _name_is_simple(cls, value: str) -> str:
        if not _SERVICE_NAME.match(value):
            raise ValueError("use letters, digits, '_' and '-' (it appears in placeholders)")
        return value


class SidecarSpec(ProcessSpec):
    """``[flows.sidecar]``: started by the worker before its flow and stopped after it."""


PersonaValue: TypeAlias = StrictStr | StrictInt | StrictFloat | StrictBool
# A flow's ``browser``: ``true``/``false``, or a table of options (one error message, not two).
FlowBrowser: TypeAlias = Annotated[
    Annotated[BrowserOptions, Tag("table")] | Annotated[StrictBool, Tag("flag")],
    Discriminator(lambda value: "table" if isinstance(value, dict | BrowserOptions) else "flag"),
]
# A persona's ``login`` is a table (model/browser_options.py); every other field a value.
PersonaEntry: TypeAlias = Annotated[
    Annotated[PersonaLogin, Tag("login")] | Annotated[PersonaValue, Tag("value")],
    Discriminator(lambda value: "login" if isinstance(value, dict | PersonaLogin) else "value"),
]


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
    ports: PortsSettings = Field(default_factory=PortsSettings)
    limits: dict[StrictStr, Annotated[StrictInt, Field(gt=0)]] = Field(default_factory=dict)
    browser_isolation: Literal["context", "process"] = "context"
    viewport: Viewport | None = None
    browser: BrowserOptions | None = None
    projects: list[ProjectSpec] = Field(default_factory=list)
    services: list[ServiceSpec] = Field(default_factory=list)
    tx: list[StrictStr] | None = None
    max_artifact_mb: Annotated[StrictInt | StrictFloat, Field(gt=0)] = 200
    browser_endpoint: StrictStr | None = None
    containment: Literal["auto", "cgroup", "process-group"] = "auto"
    # A redis:// or rediss:// URL (checked by the session, resources/coordinator.py).
    coordinator: StrictStr | None = None
    memory_max: MemorySize | None = None
    pids_max: PidsMax | None = None

    @field_validator("tx")
    @classmethod
    def _tx_specs(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return value
        from pytest_runset.model.txspec import TxSpecError, parse_tx

        if not value:
            raise ValueError("must name at least one gateway spec (or leave tx out)")
        try:
            parse_tx(value, None, source="tx")
        except TxSpecError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("browser_endpoint")
    @classmethod
    def _endpoint_scheme(cls, value: str | None) -> str | None:
        if value is not None:
            from pytest_runset.gateway.endpoint import check_endpoint

            check_endpoint(value)
        return value

    @field_validator("projects")
    @classmethod
    def _unique_projects(cls, value: list[ProjectSpec]) -> list[ProjectSpec]:
        names = [project.name.lower() for project in value]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"project name {duplicates[0]!r} is used twice")
        return value

    @field_validator("services")
    @classmethod
    def _unique_services(cls, value: list[ServiceSpec]) -> list[ServiceSpec]:
        names = [service.name for service in value]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"service name {duplicates[0]!r} is used twice")
        return value

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
    steps: list[Any] | None = None
    spec: StrictStr | None = None
    callable: StrictStr | None = None
    browser: FlowBrowser | None = None
    viewport: Viewport | None = None
    # The projects this browser flow runs in (default: all of them).
    projects: list[StrictStr] | None = None
    persona: StrictStr | None = None
    ports: Annotated[StrictInt, Field(ge=0, le=64)] = 0
    exclusive: StrictBool = False
    # A secret placeholder in the argv is refused unless the flow says it knows the risk.
    allow_secret_argv: StrictBool = False
    sidecar: SidecarSpec | None = None
    workspace: Literal["none", "worktree", "copy"] = "none"
    memory_max: MemorySize | None = None
    pids_max: PidsMax | None = None

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
        _check_command(self.command, self.shell)
        kind = kinds[0]
        if kind in ("steps", "spec") and self.cwd is not None:
            raise ValueError("cwd: only command and callable flows have a working directory")
        if kind in ("steps", "spec") and self.browser is False:
            raise ValueError("browser: steps always run in a browser")
        if kind == "command" and self.browser is not None:
            raise ValueError("browser: command flows have no browser")
        if kind == "command" and self.projects is not None:
            raise ValueError("projects: command flows run once, in no project")
        if self.viewport is not None and (kind == "command" or self.browser is False):
            raise ValueError("viewport: only browser flows have a viewport")
        if self.spec is not None and not self.spec.strip():
            raise ValueError("spec: must not be empty")
        return self


class RunsetDocument(_Strict):
    """The whole file."""

    runset: RunsetSettings = Field(default_factory=RunsetSettings)
    flows: list[FlowSpec] = Field(default_factory=list)
    personas: dict[StrictStr, dict[StrictStr, PersonaEntry]] = Field(default_factory=dict)
    persona_pools: dict[StrictStr, list[StrictStr]] = Field(default_factory=dict)

    @field_validator("personas")
    @classmethod
    def _persona_fields(
        cls, value: dict[str, dict[str, PersonaLogin | str | int | float | bool]]
    ) -> dict[str, dict[str, PersonaLogin | str | int | float | bool]]:
        for name, fields in value.items():
            if not _IDENT.match(name):
                raise ValueError(f"persona name {name!r}: use letters, digits and '_'")
            check_persona_login(name, fields)
            for key, item in fields.items():
                if not _IDENT.match(key):
                    raise ValueError(f"persona {name!r}: field {key!r}: use letters, digits, '_'")
                if key.endswith("_env") and not (isinstance(item, str) and _IDENT.match(item)):
                    raise ValueError(
                        f"persona {name!r}: {key} names an environment variable, not {item!r}"
                    )
                if key.endswith("_env") and key[: -len("_env")] in fields:
                    raise ValueError(
                        f"persona {name!r}: {key[: -len('_env')]!r} is given both directly "
                        f"and through {key}"
                    )
        return value

    @model_validator(mode="after")
    def _references(self) -> RunsetDocument:
        for pool, members in self.persona_pools.items():
            if not members:
                raise ValueError(f"persona_pools: pool {pool!r} is empty")
            for member in members:
                if member not in self.personas:
                    raise ValueError(
                        f"persona_pools: pool {pool!r} names unknown persona {member!r}"
                    )
        return self
