"""Options of other pytest plugins that users pass out of habit: honoured for flows, or refused.

Projects that run flows often have pytest-timeout, pytest-rerunfailures, pytest-repeat and
pytest-playwright installed, and a user who types ``--timeout 60`` or ``--browser firefox``
expects every test to obey, flows included. Each such option is looked at only when the plugin
that defines it is loaded (``getoption(..., default=None)`` is ``None`` otherwise), and it is
either mapped onto pytest-runset's own option (which wins when both are given) or, when flows
cannot honour it, refused in one line naming the option and the runset equivalent. It is never
silently ignored.

Mapping is harmless in a session without flows, so it happens in ``pytest_configure``; refusals
wait until the session is known to have flows (:func:`check_for_flows`).
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterable
from dataclasses import dataclass

import pytest

from pytest_runset.engine.browser_spec import BrowserOverrides

# Options whose default is a real value, so that only the command line tells "given" from
# "left alone" (``--tracing off`` must win over pytest-runset's retain-on-failure default).
_VALUED = (
    "--output",
    "--tracing",
    "--video",
    "--screenshot",
    "--reruns-mode",
    "--repeat-scope",
    "--runset-browser",
    "--runset-trace",
    "--runset-video",
    "--runset-screenshot",
)
_GIVEN = pytest.StashKey[frozenset[str]]()

# pytest-playwright's option -> pytest-runset's (the ``config.option`` names).
_BROWSER_MAP = {
    "--tracing": ("tracing", "runset_trace", "--runset-trace"),
    "--video": ("video", "runset_video", "--runset-video"),
    "--screenshot": ("screenshot", "runset_screenshot", "--runset-screenshot"),
}


def option_value(config: pytest.Config, dest: str) -> object:
    """A foreign plugin's option value; ``None`` when that plugin is not loaded."""
    return config.getoption(dest, default=None)


def given(config: pytest.Config, flag: str) -> bool:
    """Whether the command line (``addopts`` and ``PYTEST_ADDOPTS`` included) names ``flag``."""
    found = config.stash.get(_GIVEN, None)
    if found is None:
        found = config.stash[_GIVEN] = _named_options(_command_line(config))
    return flag in found


def _command_line(config: pytest.Config) -> list[str]:
    """The arguments as pytest parsed them: ini ``addopts``, then ``PYTEST_ADDOPTS``, then
    the invocation's own (the order of ``Config._preparse``)."""
    args: list[str] = []
    try:
        args.extend(str(arg) for arg in config.getini("addopts"))
    except ValueError:
        pass
    args.extend(shlex.split(os.environ.get("PYTEST_ADDOPTS", "")))
    args.extend(str(arg) for arg in config.invocation_params.args)
    return args


def _named_options(args: list[str]) -> frozenset[str]:
    # pytest takes no abbreviations: a long option is its exact name, alone or with "=value".
    return frozenset(
        flag for flag in _VALUED if any(arg == flag or arg.startswith(f"{flag}=") for arg in args)
    )


@dataclass(frozen=True)
class Adopted:
    """What other plugins' options ask of every flow (``None``: nothing)."""

    # pytest-timeout's --timeout (seconds, > 0).
    timeout: float | None = None
    # pytest-timeout's --session-timeout: the run's global timeout.
    global_timeout: float | None = None
    # pytest-rerunfailures' --force-reruns, else --reruns.
    retries: int | None = None
    # pytest-rerunfailures' --reruns-delay and --reruns-delay-backoff-factor.
    retry_delay: float = 0.0
    retry_backoff: float = 1.0


def adopted(config: pytest.Config) -> Adopted:
    """The flow settings other plugins' options give (invalid values are refused later)."""
    timeout = _number(option_value(config, "timeout"))
    session_timeout = _number(option_value(config, "session_timeout"))
    force = option_value(config, "force_reruns")
    reruns = force if force is not None else option_value(config, "reruns")
    delay = _number(option_value(config, "reruns_delay"))
    backoff = _number(option_value(config, "reruns_delay_backoff_factor"))
    return Adopted(
        timeout=timeout if timeout is not None and timeout > 0 else None,
        global_timeout=(
            session_timeout if session_timeout is not None and session_timeout > 0 else None
        ),
        retries=reruns if isinstance(reruns, int) and reruns >= 0 else None,
        retry_delay=delay if delay is not None and delay > 0 else 0.0,
        retry_backoff=backoff if backoff is not None and backoff > 0 else 1.0,
    )


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def map_browser_options(config: pytest.Config) -> None:
    """Put pytest-playwright's options into pytest-runset's, where ours were not given.

    Done once in ``pytest_configure`` (pytest-xdist's workers get the same arguments and map
    them the same way), so everything that reads ``--runset-*`` sees the mapped value.
    """
    option = config.option
    browsers = option_value(config, "browser")
    if isinstance(browsers, list) and len(browsers) == 1 and not given(config, "--runset-browser"):
        option.runset_browser = browsers[0]
    # What the command line asks of every browser flow, over the run-set's browser options
    # (engine/browser_spec.py reads it when it builds an attempt).
    overrides: BrowserOverrides = {}
    if given(config, "--runset-browser") or (isinstance(browsers, list) and len(browsers) == 1):
        overrides["name"] = option.runset_browser
    channel = option_value(config, "browser_channel")
    if isinstance(channel, str) and channel:
        overrides["channel"] = channel
    slowmo = _number(option_value(config, "slowmo"))
    if slowmo is not None and slowmo > 0:
        overrides["slow_mo"] = slowmo
    device = option_value(config, "device")
    if isinstance(device, str) and device:
        overrides["device"] = device
    option.runset_browser_overrides = overrides
    if option_value(config, "headed"):
        option.runset_headed = True
    for flag, (dest, ours, our_flag) in _BROWSER_MAP.items():
        value = option_value(config, dest)
        if value is not None and given(config, flag) and not given(config, our_flag):
            setattr(option, ours, value)
    base_url = option_value(config, "base_url")
    if isinstance(base_url, str) and base_url and not option.runset_base_url:
        option.runset_base_url = base_url


def refusals(config: pytest.Config) -> list[str]:
    """One line per option of another plugin that flows cannot honour, as given."""
    found: list[str] = []
    found.extend(_timeout_refusals(config))
    found.extend(_rerun_refusals(config))
    found.extend(_repeat_refusals(config))
    found.extend(_playwright_refusals(config))
    return found


def check_for_flows(config: pytest.Config) -> None:
    """Refuse (exit 4, one line) the first option flows cannot honour; call it only once the
    session is known to have flows."""
    problems = refusals(config)
    if problems:
        raise pytest.UsageError(problems[0])


def _timeout_refusals(config: pytest.Config) -> Iterable[str]:
    timeout = option_value(config, "timeout")
    if isinstance(timeout, int | float) and timeout <= 0 and config.option.runset_timeout is None:
        yield (
            f"--timeout {timeout:g} (pytest-timeout): every flow has a timeout; give a "
            "number of seconds above 0, or --runset-timeout SECONDS"
        )


def _rerun_refusals(config: pytest.Config) -> Iterable[str]:
    equivalent = "flows are retried on any failure, timeout or error (--runset-retries N)"
    for dest, flag in (("only_rerun", "--only-rerun"), ("rerun_except", "--rerun-except")):
        patterns = option_value(config, dest)
        if isinstance(patterns, list) and patterns:
            yield f"{flag} {patterns[0]} (pytest-rerunfailures): {equivalent}; drop {flag}"
    excluded = option_value(config, "rerun_exclude_path")
    if isinstance(excluded, list) and excluded:
        yield (
            f"--rerun-exclude-path {excluded[0]} (pytest-rerunfailures): set retries = 0 on "
            "those flows in the run-set instead"
        )
    budget = option_value(config, "max_suite_reruns")
    if budget is not None:
        yield (
            f"--max-suite-reruns {budget} (pytest-rerunfailures): flows have no suite-wide "
            "retry budget; use --runset-retries N"
        )
    if option_value(config, "reruns_mode") == "append" and given(config, "--reruns-mode"):
        yield (
            "--reruns-mode append (pytest-rerunfailures): --reruns replaces each flow's own "
            "retries; set retries in the run-set, or drop --reruns-mode"
        )


def _repeat_refusals(config: pytest.Config) -> Iterable[str]:
    count = option_value(config, "count")
    if isinstance(count, int) and count < 1:
        yield f"--count {count} (pytest-repeat): must be at least 1"
    scope = option_value(config, "repeat_scope")
    if scope not in (None, "function") and given(config, "--repeat-scope"):
        yield (
            f"--repeat-scope {scope} (pytest-repeat): flows repeat one by one (--count N "
            "makes N items of each flow, in the scheduler's order); drop --repeat-scope"
        )


def _playwright_refusals(config: pytest.Config) -> Iterable[str]:
    browsers = option_value(config, "browser")
    if isinstance(browsers, list) and len(browsers) > 1:
        named = " ".join(f"--browser {name}" for name in browsers)
        yield (
            f"{named} (pytest-playwright): flows run in one browser per session; give one "
            "--browser (or --runset-browser NAME)"
        )
    device = option_value(config, "device")
    if isinstance(device, str) and device:
        # Only with --device: the device list is read from the installed Playwright.
        from pytest_runset.model.browser_options import device_problem

        problem = device_problem(device)
        if problem:
            yield f"--device {device} (pytest-playwright): {problem}"
    slowmo = option_value(config, "slowmo")
    if isinstance(slowmo, int | float) and slowmo < 0:
        yield f"--slowmo {slowmo} (pytest-playwright): must be 0 or more milliseconds"
    output = option_value(config, "output")
    if isinstance(output, str) and given(config, "--output"):
        # Its session fixture deletes that directory: a run there would lose its files.
        yield (
            f"--output {output} (pytest-playwright): pytest-playwright empties that directory "
            "when the session starts, so flows cannot keep their runs there; give "
            "--runset-output DIR (a directory of its own)"
        )
    if option_value(config, "full_page_screenshot"):
        yield (
            "--full-page-screenshot (pytest-playwright): flows' screenshots show the viewport "
            "(no pytest-runset equivalent; --runset-screenshot on|off|only-on-failure); "
            "drop it"
        )
    if option_value(config, "playwright_debug"):
        yield (
            "--playwright-debug (pytest-playwright): no pytest-runset equivalent; run one "
            "flow with --runset-headed and PWDEBUG=1 (docs/ide-and-tools.md, "
            '"Debugging a flow")'
        )
