"""Browser options of the run-set: ``[runset.browser]``, a flow's ``browser = { ... }``,
``[[runset.projects]]`` and a persona's ``login``, as pydantic models, and how the levels merge.

The keys are Playwright's own names (``device``, ``locale``, ``timezone_id``, ``slow_mo``, ...)
so a Playwright user writes what they know. Options that change the browser's launch
(``name``, ``channel``, ``headless``, ``slow_mo``, ``args``) go to ``launch``; the rest are the
options of each flow's fresh ``BrowserContext``. A device name is checked against the list that
ships inside the installed Playwright package, read from disk without starting anything.

Levels merge key by key, most specific last: ``[runset.browser]`` (with ``[runset] viewport``),
then the project, then the flow's own table (with the flow's or its spec file's ``viewport``).
As in Playwright Test, where a project spreads ``devices["Pixel 5"]`` into its options, a level
that names a ``device`` replaces the viewport and user agent of the levels below it; the same
level's own ``viewport`` or ``user_agent`` still win over the device's.
"""

from __future__ import annotations

import difflib
import functools
import importlib.util
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)

from pytest_runset.gateway.protocol import BrowserLaunch, ContextOptions
from pytest_runset.model.durations import parse_duration
from pytest_runset.model.steps import Viewport

__all__ = [
    "BrowserOptions",
    "BrowserProfile",
    "PersonaLogin",
    "ProjectSpec",
    "SignIn",
    "closest_devices",
    "device_names",
    "device_problem",
    "resolve_profile",
]

LAUNCH_KEYS = ("name", "channel", "headless", "slow_mo", "args")
# Playwright's permission names (BrowserContext.grant_permissions).
PERMISSIONS = frozenset(
    {
        "accelerometer",
        "accessibility-events",
        "ambient-light-sensor",
        "background-sync",
        "camera",
        "clipboard-read",
        "clipboard-write",
        "geolocation",
        "gyroscope",
        "local-fonts",
        "local-network-access",
        "magnetometer",
        "microphone",
        "midi",
        "midi-sysex",
        "notifications",
        "payment-handler",
        "storage-access",
    }
)
_LOCALE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PROJECT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# Where the installed Playwright keeps its device list: a JSON file in older drivers, an object
# literal inside the bundled JavaScript in newer ones.
_DEVICE_FILES = ("lib/server/deviceDescriptorsSource.json", "deviceDescriptorsSource.json")
_BUNDLE_MARKER = "deviceDescriptorsSource_default = {"


def _slow_mo(value: object) -> float:
    """Playwright's ``slow_mo`` is milliseconds: a number is ms, a string a duration."""
    if isinstance(value, bool):
        raise ValueError("must be milliseconds (a number) or a duration such as '250ms'")
    number = isinstance(value, int | float)
    milliseconds = float(value) if number else parse_duration(value) * 1000  # type: ignore[arg-type]
    if not 0 <= milliseconds <= 60_000:
        raise ValueError("must be between 0 and 60000 milliseconds")
    return milliseconds


SlowMo = Annotated[float, BeforeValidator(_slow_mo)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Geolocation(_Strict):
    latitude: StrictInt | StrictFloat = Field(ge=-90, le=90)
    longitude: StrictInt | StrictFloat = Field(ge=-180, le=180)
    accuracy: StrictInt | StrictFloat | None = Field(default=None, ge=0)


class HttpCredentials(_Strict):
    """HTTP authentication; the password is a secret read from the environment."""

    username: StrictStr
    password_env: StrictStr

    @field_validator("password_env")
    @classmethod
    def _variable_name(cls, value: str) -> str:
        if not _ENV_NAME.match(value):
            raise ValueError(f"names an environment variable, not {value!r}")
        return value


class BrowserOptions(_Strict):
    """``[runset.browser]``, a flow's ``browser = { ... }``, and the keys of a project."""

    name: Literal["chromium", "firefox", "webkit"] | None = None
    channel: StrictStr | None = None
    headless: StrictBool | None = None
    slow_mo: SlowMo | None = None
    args: list[StrictStr] | None = None
    device: StrictStr | None = None
    viewport: Viewport | None = None
    locale: StrictStr | None = None
    timezone_id: StrictStr | None = None
    color_scheme: Literal["light", "dark", "no-preference"] | None = None
    geolocation: Geolocation | None = None
    permissions: list[StrictStr] | None = None
    extra_http_headers: dict[StrictStr, StrictStr] | None = None
    http_credentials: HttpCredentials | None = None
    ignore_https_errors: StrictBool | None = None
    user_agent: StrictStr | None = None

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str | None) -> str | None:
        if value is not None:
            problem = device_problem(value)
            if problem:
                raise ValueError(problem)
        return value

    @field_validator("locale")
    @classmethod
    def _locale(cls, value: str | None) -> str | None:
        if value is not None and not _LOCALE.match(value):
            raise ValueError(f"{value!r} is not a locale such as 'en-US' or 'de-DE'")
        return value

    @field_validator("timezone_id")
    @classmethod
    def _timezone(cls, value: str | None) -> str | None:
        if value is not None:
            known = _time_zones()
            if known and value not in known:
                near = difflib.get_close_matches(value, sorted(known), n=3)
                hint = f" (closest: {', '.join(near)})" if near else ""
                raise ValueError(f"unknown time zone {value!r}{hint}; use an IANA name")
        return value

    @field_validator("permissions")
    @classmethod
    def _permissions(cls, value: list[str] | None) -> list[str] | None:
        for permission in value or ():
            if permission not in PERMISSIONS:
                near = difflib.get_close_matches(permission, sorted(PERMISSIONS), n=3)
                hint = f"closest: {', '.join(near)}" if near else "see Playwright's list"
                raise ValueError(f"unknown permission {permission!r} ({hint})")
        return value

    @field_validator("channel")
    @classmethod
    def _channel(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be empty")
        return value


class ProjectSpec(BrowserOptions):
    """``[[runset.projects]]``: a name and any browser key. ``name`` names the project, so the
    project's browser engine is ``browser_name`` (Playwright Test's ``browserName``)."""

    name: StrictStr  # type: ignore[assignment]
    browser_name: Literal["chromium", "firefox", "webkit"] | None = None

    @field_validator("name")
    @classmethod
    def _project_name(cls, value: str) -> str:
        if not _PROJECT_NAME.match(value):
            raise ValueError(
                f"project name {value!r}: use letters, digits, '_', '.' and '-', starting with "
                "a letter or digit (it is part of node ids and directory names)"
            )
        return value

    def options(self) -> BrowserOptions:
        """The project's browser keys as one level of :func:`resolve_profile`."""
        given = {key: getattr(self, key) for key in self.model_fields_set if key not in ("name",)}
        if "browser_name" in given:
            given["name"] = given.pop("browser_name")
        return BrowserOptions.model_construct(_fields_set=set(given), **given)


class PersonaLogin(_Strict):
    """``[personas.<name>] login = { steps | spec | callable }``."""

    steps: list[Any] | None = None
    spec: StrictStr | None = None
    callable: StrictStr | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> PersonaLogin:
        kinds = [key for key in ("steps", "spec", "callable") if getattr(self, key) is not None]
        if len(kinds) != 1:
            raise ValueError("give exactly one of steps, spec, callable")
        return self


def check_persona_login(name: str, fields: dict[str, Any]) -> None:
    """``login`` is the only table of a persona, and ``login_ttl`` a duration beside it."""
    for key, value in fields.items():
        if isinstance(value, PersonaLogin) and key != "login":
            raise ValueError(f"persona {name!r}: field {key!r} must be a value, not a table")
    login = fields.get("login")
    if login is not None and not isinstance(login, PersonaLogin):
        raise ValueError(
            f"persona {name!r}: login must be a table: {{ steps = [...] }}, "
            '{ spec = "..." } or { callable = "module:function" }'
        )
    if "login_ttl" in fields:
        if login is None:
            raise ValueError(f"persona {name!r}: login_ttl needs a login")
        try:
            ttl = parse_duration(fields["login_ttl"])
        except ValueError as exc:
            raise ValueError(f"persona {name!r}: login_ttl: {exc}") from None
        if ttl <= 0:
            raise ValueError(f"persona {name!r}: login_ttl: must be greater than 0")


@dataclass(frozen=True)
class SignIn:
    """A persona's sign-in, validated (model/persona_login.py): what to run and how long its
    state lasts."""

    steps: tuple[dict[str, Any], ...] = ()
    callable_ref: str | None = None
    params: tuple[str, ...] | None = None
    # A spec file's base URL (placeholders filled in at dispatch).
    base_url: str | None = None
    # Renew the storage state when it is older than this (None: it lasts the run).
    ttl_s: float | None = None


# -- devices -----------------------------------------------------------------------------------


def _driver_package() -> Path | None:
    """The installed Playwright's driver package, found without importing Playwright."""
    try:
        spec = importlib.util.find_spec("playwright")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "driver" / "package"


@functools.lru_cache(maxsize=1)
def device_names() -> tuple[str, ...] | None:
    """Playwright's device names, or ``None`` when no Playwright (or no list) is installed."""
    package = _driver_package()
    if package is None:
        return None
    for name in _DEVICE_FILES:
        path = package / name
        if path.is_file():
            try:
                return tuple(json.loads(path.read_text("utf-8")))
            except (OSError, ValueError):
                return None
    for bundle in sorted((package / "lib").glob("*.js")):
        try:
            text = bundle.read_text("utf-8", errors="replace")
        except OSError:
            continue
        start = text.find(_BUNDLE_MARKER)
        if start >= 0:
            return _top_level_keys(text, start + len(_BUNDLE_MARKER) - 1)
    return None


def _top_level_keys(text: str, start: int) -> tuple[str, ...]:
    """The quoted keys directly inside the object literal whose ``{`` is at ``start``."""
    keys: list[str] = []
    depth = 0
    position = start
    while position < len(text):
        char = text[position]
        if char == '"':
            end = position + 1
            while end < len(text) and text[end] != '"':
                end += 2 if text[end] == "\\" else 1
            if depth == 1 and text[end + 1 : end + 3].lstrip().startswith(":"):
                keys.append(json.loads(text[position : end + 1]))
            position = end + 1
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                break
        position += 1
    return tuple(keys)


def closest_devices(name: str) -> list[str]:
    return difflib.get_close_matches(name, list(device_names() or ()), n=3, cutoff=0.5)


def device_problem(name: str) -> str | None:
    """Why ``name`` is no Playwright device (``None``: it is one, or no list to check)."""
    names = device_names()
    if names is None or name in names:
        return None
    near = closest_devices(name)
    hint = f"closest: {', '.join(repr(n) for n in near)}" if near else "see Playwright's devices"
    return f"unknown device {name!r} ({hint})"


@functools.lru_cache(maxsize=1)
def _time_zones() -> frozenset[str]:
    try:
        import zoneinfo

        return frozenset(zoneinfo.available_timezones())
    except Exception:
        return frozenset()


# -- merging the levels ------------------------------------------------------------------------


# One level of options: its table, and the legacy ``viewport`` key beside it.
Level = tuple[BrowserOptions | None, Viewport | None]


@dataclass(frozen=True)
class BrowserProfile:
    """A flow's browser options with every level merged: what its attempts are built from."""

    # Launch options (a different launch needs a browser of its own on the worker).
    name: str | None = None
    launch: BrowserLaunch = field(default_factory=BrowserLaunch)
    # New-context options, Playwright's keyword names (``http_credentials`` left out).
    context: ContextOptions = field(default_factory=ContextOptions)
    # ``(username, environment variable of the password)``, read when an attempt is built.
    credentials: tuple[str, str] | None = None
    # The levels merged, least specific first (projects insert theirs before the flow's).
    levels: tuple[Level, ...] = ()

    @property
    def viewport(self) -> tuple[int, int] | None:
        size = self.context.get("viewport")
        return (size["width"], size["height"]) if size else None


def _as_dict(options: BrowserOptions | None, viewport: Viewport | None) -> dict[str, Any]:
    """The keys one level sets (a legacy ``viewport`` key fills in the level's viewport)."""
    given = (
        {key: getattr(options, key) for key in options.model_fields_set}
        if options is not None
        else {}
    )
    given = {key: value for key, value in given.items() if value is not None}
    if viewport is not None and "viewport" not in given:
        given["viewport"] = viewport
    return given


def resolve_profile(levels: tuple[Level, ...]) -> BrowserProfile:
    """Merge the levels (least specific first) into one :class:`BrowserProfile`."""
    merged: dict[str, Any] = {}
    for options, viewport in levels:
        given = _as_dict(options, viewport)
        if "device" in given:
            # The device brings its own viewport and user agent (Playwright Test's spread).
            merged.pop("viewport", None)
            merged.pop("user_agent", None)
        merged.update(given)
    launch = BrowserLaunch()
    context = ContextOptions()
    credentials = None
    for key, value in merged.items():
        if key == "name":
            continue
        if key in ("channel", "headless", "slow_mo", "args"):
            launch[key] = list(value) if key == "args" else value  # type: ignore[literal-required]
        elif key == "viewport":
            context["viewport"] = {"width": value.width, "height": value.height}
        elif key == "geolocation":
            context["geolocation"] = value.model_dump(exclude_none=True)
        elif key == "http_credentials":
            credentials = (value.username, value.password_env)
        elif key in ("permissions",):
            context["permissions"] = list(value)
        elif key == "extra_http_headers":
            context["extra_http_headers"] = dict(value)
        else:
            context[key] = value  # type: ignore[literal-required]
    return BrowserProfile(
        name=merged.get("name"),
        launch=launch,
        context=context,
        credentials=credentials,
        levels=levels,
    )
