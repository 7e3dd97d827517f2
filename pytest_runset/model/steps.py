"""Browser steps: the step vocabulary, its validation at load time, and spec files.

A step is a TOML table with exactly one *action* key (``click = "#id"``) and the modifiers that
action takes (``value``, ``key``, ``text``, ``timeout``...). Steps are checked completely when
the run-set loads, and become plain dicts (``action``, ``target``, modifiers, ``label``) that the
gateway's step runner executes. Nothing here imports pytest or Playwright.
"""

from __future__ import annotations

import contextlib
import contextvars
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from pytest_runset.gateway.safe_files import MAX_DEFINITION_BYTES, UnsafeFile, read_regular
from pytest_runset.model.durations import parse_duration
from pytest_runset.model.fsnames import os_name
from pytest_runset.model.messages import toml_type
from pytest_runset.model.placeholders import PlaceholderError, check_template
from pytest_runset.model.spec_lines import step_lines
from pytest_runset.model.toml_text import parse_toml


@dataclass(frozen=True)
class _Rule:
    """What one action takes: the kind of its own value, required and optional modifiers."""

    target: str  # "selector", "url", "value" or "file"
    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()


# The step vocabulary, in the order the docs list it.
RULES: dict[str, _Rule] = {
    "goto": _Rule("url"),
    "click": _Rule("selector"),
    "fill": _Rule("selector", required=("value",)),
    "press": _Rule("selector", required=("key",)),
    "check": _Rule("selector"),
    "uncheck": _Rule("selector"),
    "select": _Rule("selector", required=("value",)),
    "hover": _Rule("selector"),
    "wait_for": _Rule("selector", optional=("state",)),
    "expect_visible": _Rule("selector"),
    "expect_hidden": _Rule("selector"),
    "expect_text": _Rule("selector", optional=("text", "contains", "regex")),
    "expect_url": _Rule("value", optional=("regex",)),
    "expect_title": _Rule("value", optional=("regex",)),
    "screenshot": _Rule("file", optional=("full_page", "selector")),
}
ACTIONS: tuple[str, ...] = tuple(RULES)
# Every step may bound its own wait.
COMMON = ("timeout",)
WAIT_STATES = ("attached", "detached", "visible", "hidden")
SCREENSHOT_SUFFIXES = (".png", ".jpg", ".jpeg")
# Files of the flow directory that a screenshot step must not overwrite.
RESERVED_FILES = frozenset(
    {"stdout.log", "stderr.log", "result.json", "flow-report.json", "trace.zip", "console.log"}
)
_LABEL_WIDTH = 80


class StepError(ValueError):
    """A bad step; ``index`` is 0-based (-1: the list itself), ``label`` names the step."""

    def __init__(self, index: int, message: str, label: str | None = None) -> None:
        super().__init__(message)
        self.index = index
        self.label = label


class _LabelledError(ValueError):
    def __init__(self, label: str, message: str) -> None:
        super().__init__(message)
        self.label = label


class SpecError(ValueError):
    """A spec file that cannot be used; the message names the place inside the file."""


class Viewport(BaseModel):
    """``viewport = { width = 1280, height = 720 }``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    width: StrictInt = Field(gt=0, le=10000)
    height: StrictInt = Field(gt=0, le=10000)


def _shown(text: str) -> str:
    """A value for a message or label: escaped, shortened."""
    text = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
    if len(text) > _LABEL_WIDTH:
        text = text[: _LABEL_WIDTH - 3] + "..."
    return text


def step_label(action: str, target: object) -> str:
    """``click "role=button[name='Pay']"``: how messages name a step."""
    if isinstance(target, str):
        return f'{action} "{_shown(target)}"'
    return action


def _string(where: str, value: object, *, empty: bool = False) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{where} must be a string, not {toml_type(value)}")
    if not empty and not value.strip():
        raise ValueError(f"{where} must not be empty")
    return value


# What placeholders the flow being validated may use (its ports, persona fields, services);
# set by the loader around parse_steps/load_spec.
_CONTEXT: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "runset_step_placeholders", default=None
)


@contextlib.contextmanager
def placeholder_context(context: dict[str, Any]) -> Iterator[None]:
    token = _CONTEXT.set(context)
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def _template(where: str, value: str) -> None:
    try:
        check_template(value, **(_CONTEXT.get() or {}))
    except PlaceholderError as exc:
        raise ValueError(f"{where}: {exc}") from None


def _regex(pattern: str) -> None:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"bad regex {_shown(pattern)!r}: {exc}") from None


def _timeout(value: object) -> float:
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise ValueError(f"'timeout': {exc}") from None
    if seconds <= 0:
        raise ValueError("'timeout' must be greater than 0")
    return seconds


def _check_file(name: str) -> None:
    path = Path(name)
    if path.is_absolute() or ".." in path.parts or name.startswith("~"):
        raise ValueError(
            f"screenshot file {name!r} must be a relative path inside the flow directory"
        )
    if path.suffix.lower() not in SCREENSHOT_SUFFIXES:
        raise ValueError(f"screenshot file {name!r} must end in .png, .jpg or .jpeg")
    if str(path) in RESERVED_FILES:
        raise ValueError(f"screenshot file {name!r} is a name the flow directory uses itself")


def parse_step(raw: object) -> dict[str, Any]:
    """Validate one step table; return its plain-data form.

    Raises ``ValueError``, or :class:`_LabelledError` once the step's action is known.
    """
    if not isinstance(raw, dict):
        raise ValueError(f'must be a table like {{ click = "#id" }}, not {toml_type(raw)}')
    actions = [key for key in raw if key in RULES]
    if not actions:
        unknown = [key for key in raw if key not in COMMON and not _is_modifier(key)]
        if unknown:
            raise ValueError(
                f"unknown step {_shown(str(unknown[0]))!r} (typo?); steps are {', '.join(ACTIONS)}"
            )
        raise ValueError(f"no action: give one of {', '.join(ACTIONS)}")
    if len(actions) > 1:
        raise ValueError(f"two actions ({' and '.join(actions)}): give one action per step")
    action = actions[0]
    label = step_label(action, raw[action])
    try:
        step = _parse_action(raw, action, RULES[action])
    except ValueError as exc:
        raise _LabelledError(label, str(exc)) from None
    step["label"] = label
    return step


def _parse_action(raw: dict[str, Any], action: str, rule: _Rule) -> dict[str, Any]:
    takes = [*rule.required, *rule.optional, *COMMON]
    allowed = {action, *takes}
    for key in raw:
        if key not in allowed:
            hint = "not taken by this action" if _is_modifier(key) else "unknown key (typo?)"
            raise ValueError(f"{_shown(str(key))!r}: {hint}; {action} takes {', '.join(takes)}")
    for key in rule.required:
        if key not in raw:
            raise ValueError(f"needs '{key}'")
    step: dict[str, Any] = {"action": action, "timeout_s": None}
    target = raw[action]
    if rule.target == "file":
        target = _string("the file name", target)
        _template("the file name", target)
        _check_file(target)
    elif rule.target == "value":
        target = _string("the expected value", target, empty=True)
        if raw.get("regex") is True:
            _regex(target)
        else:
            _template("the expected value", target)
    else:
        what = "the URL" if rule.target == "url" else "the selector"
        target = _string(what, target)
        _template(what, target)
    step["target"] = target
    if "timeout" in raw:
        step["timeout_s"] = _timeout(raw["timeout"])
    if action == "select":
        value = raw["value"]
        if isinstance(value, list):
            if not value:
                raise ValueError("'value' must not be an empty array")
            for item in value:
                _template("'value'", _string("every 'value'", item, empty=True))
            step["value"] = list(value)
        else:
            step["value"] = _string("'value'", value, empty=True)
            _template("'value'", step["value"])
    elif "value" in rule.required:
        step["value"] = _string("'value'", raw["value"], empty=True)
        _template("'value'", step["value"])
    if action == "press":
        step["key"] = _string("'key'", raw["key"])
        _template("'key'", step["key"])
    if action == "wait_for":
        state = raw.get("state", "visible")
        if state not in WAIT_STATES:
            raise ValueError(f"'state' must be one of {', '.join(WAIT_STATES)}")
        step["state"] = state
    if action == "expect_text":
        given = [key for key in ("text", "contains", "regex") if key in raw]
        if len(given) != 1:
            raise ValueError("needs exactly one of 'text', 'contains' or 'regex'")
        key = given[0]
        expected = _string(f"'{key}'", raw[key], empty=key == "text")
        if key == "regex":
            _regex(expected)
        else:
            _template(f"'{key}'", expected)
        step["match"] = key
        step["expected"] = expected
    if action in ("expect_url", "expect_title"):
        regex = raw.get("regex", False)
        if not isinstance(regex, bool):
            raise ValueError("'regex' must be a boolean here (true: the value is a regex)")
        step["regex"] = regex
    if action == "screenshot":
        full_page = raw.get("full_page", False)
        if not isinstance(full_page, bool):
            raise ValueError("'full_page' must be a boolean")
        step["full_page"] = full_page
        if "selector" in raw:
            step["selector"] = _string("'selector'", raw["selector"])
            _template("'selector'", step["selector"])
    return step


def _is_modifier(key: object) -> bool:
    return any(key in rule.required or key in rule.optional for rule in RULES.values())


def parse_steps(raw: object) -> tuple[dict[str, Any], ...]:
    """Validate a list of steps; raises :class:`StepError` naming the first bad step."""
    if not isinstance(raw, list):
        raise StepError(-1, f"'steps' must be an array of tables, not {toml_type(raw)}")
    if not raw:
        raise StepError(-1, "'steps' must not be empty")
    steps = []
    for index, item in enumerate(raw):
        try:
            steps.append(parse_step(item))
        except _LabelledError as exc:
            raise StepError(index, str(exc), exc.label) from None
        except ValueError as exc:
            raise StepError(index, str(exc)) from None
    return tuple(steps)


def describe_step_error(exc: StepError) -> str:
    """``step 3 (fill "#user"): needs 'value'`` (1-based), or the message of the list itself."""
    if exc.index < 0:
        return str(exc)
    where = f"step {exc.index + 1}"
    if exc.label:
        where += f" ({exc.label})"
    return f"{where}: {exc}"


@dataclass(frozen=True)
class SpecFile:
    """A spec file's content: its steps and the defaults it gives its flow."""

    steps: tuple[dict[str, Any], ...]
    base_url: str | None = None
    viewport: Viewport | None = None
    timeout_s: float | None = None
    # The 1-based line of each step in the file, so a failure can point at its step; empty
    # when the steps' lines cannot be told apart.
    step_lines: tuple[int, ...] = ()


SPEC_KEYS = ("steps", "base_url", "viewport", "timeout", "description")


def load_spec(path: Path) -> SpecFile:
    """Read and validate a spec file; raises :class:`SpecError` with a one-line message."""
    try:
        data = read_regular(os_name(path), max_bytes=MAX_DEFINITION_BYTES)
    except UnsafeFile as exc:
        raise SpecError(f"cannot read: {exc}") from None
    except IsADirectoryError:
        raise SpecError("is a directory, not a spec file") from None
    except FileNotFoundError:
        raise SpecError("no such spec file") from None
    except OSError as exc:
        raise SpecError(f"cannot read: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise SpecError("not valid UTF-8") from None
    raw = parse_toml(text, SpecError)
    for key in raw:
        if key not in SPEC_KEYS:
            raise SpecError(
                f"field {_shown(key)!r}: unknown key (typo?); a spec file holds "
                f"{', '.join(SPEC_KEYS)}"
            )
    if "steps" not in raw:
        raise SpecError("field 'steps': required key is missing")
    try:
        steps = parse_steps(raw["steps"])
    except StepError as exc:
        raise SpecError(describe_step_error(exc)) from None
    base_url = raw.get("base_url")
    if base_url is not None:
        if not isinstance(base_url, str):
            raise SpecError(f"field 'base_url': must be a string, not {toml_type(base_url)}")
        try:
            check_template(base_url, **(_CONTEXT.get() or {}))
        except PlaceholderError as exc:
            raise SpecError(f"field 'base_url': {exc}") from None
    viewport = None
    if "viewport" in raw:
        viewport = _viewport(raw["viewport"])
    timeout_s = None
    if "timeout" in raw:
        try:
            timeout_s = parse_duration(raw["timeout"])
            if timeout_s <= 0:
                raise ValueError("must be greater than 0")
        except ValueError as exc:
            raise SpecError(f"field 'timeout': {exc}") from None
    description = raw.get("description")
    if description is not None and not isinstance(description, str):
        raise SpecError(f"field 'description': must be a string, not {toml_type(description)}")
    lines = tuple(step_lines(text))
    return SpecFile(
        steps=steps,
        base_url=base_url,
        viewport=viewport,
        timeout_s=timeout_s,
        step_lines=lines if len(lines) == len(steps) else (),
    )


def _viewport(raw: object) -> Viewport:
    from pydantic import ValidationError

    if not isinstance(raw, dict):
        raise SpecError(f"field 'viewport': must be a table, not {toml_type(raw)}")
    try:
        return Viewport.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error.get("loc", ()))
        kind = error.get("type", "")
        if kind == "extra_forbidden":
            message = "unknown key (typo?)"
        elif kind == "missing":
            message = "required key is missing"
        else:
            message = str(error.get("msg", "invalid value")).replace("Input should be", "must be")
        raise SpecError(f"field 'viewport.{where}': {message}") from None
