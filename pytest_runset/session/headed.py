"""Watching and debugging a browser journey: headed runs, ``slow_mo`` and ``PWDEBUG=1``.

A browser shows a window when the session asks for it (``--runset-headed``, pytest-playwright's
``--headed``), when a flow's browser options say ``headless = false``, or when ``PWDEBUG`` is
set (Playwright then opens its Inspector and shows the browser, whatever ``headless`` says).
Without a display, Chromium would print a banner about a missing X server that the flow's
one-line message cuts off; :func:`check_display` says it in one line instead, before any flow
starts, as a usage error (exit 4).

``PWDEBUG`` with exactly one selected browser flow (:func:`prepare_debugging`) also lifts the
flow's timeout, as a debugger does for a callable flow (:mod:`.debugging`): the time spent
stepping through the Inspector is the user's. The steps runner drops its per-step waits then
(``gateway/runners/steps.py``), as Playwright drops its own default timeouts under ``PWDEBUG``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence

import pytest

from pytest_runset.session.collect import RunsetItem
from pytest_runset.session.settings import SETTINGS

# The timeout of a flow debugged with PWDEBUG: long enough for any session at the Inspector,
# finite so that a forgotten one still ends.
DEBUG_TIMEOUT_S = 24 * 3600.0
_NO_INSPECTOR = ("", "0", "false", "console")


def pwdebug(environ: Mapping[str, str]) -> bool:
    """Whether Playwright runs under its Inspector, as Playwright reads ``PWDEBUG``: any value
    but ``0``, ``false`` and ``console`` (which only adds the ``playwright`` console object)."""
    return environ.get("PWDEBUG", "") not in _NO_INSPECTOR


def has_display(environ: Mapping[str, str]) -> bool:
    return bool(environ.get("DISPLAY") or environ.get("WAYLAND_DISPLAY"))


def display_problem(
    environ: Mapping[str, str], *, headed_option: bool, headed_flows: Sequence[str]
) -> str | None:
    """The one line that says a browser window cannot be shown here, or ``None``.

    ``headed_flows`` are the selected browser flows whose own options ask for a window.
    """
    if has_display(environ):
        return None
    if headed_option:
        why = "--runset-headed"
    elif pwdebug(environ):
        why = f"PWDEBUG={environ['PWDEBUG']}"
    elif headed_flows:
        more = f" and {len(headed_flows) - 1} more" if len(headed_flows) > 1 else ""
        why = f"headless = false (flow {headed_flows[0]!r}{more})"
    else:
        return None
    return (
        f"{why}: no display to show the browser on ($DISPLAY and $WAYLAND_DISPLAY are unset); "
        "run pytest under a virtual one: xvfb-run -a pytest ..."
    )


def _remote(config: pytest.Config) -> bool:
    """Browsers run elsewhere (a browser endpoint, ssh or socket gateways): whether there is a
    display there is not this machine's business."""
    option = config.option
    specs = getattr(option, "runset_tx", None) or []
    elsewhere = any("popen" not in str(spec) for spec in specs)
    return elsewhere or bool(getattr(option, "runset_browser_endpoint", None))


def _wants_window(item: RunsetItem) -> bool:
    profile = item.flow.browser_profile
    return profile is not None and profile.launch.get("headless") is False


def check_display(config: pytest.Config, flows: Sequence[RunsetItem]) -> None:
    """Refuse a headed run of browser flows without a display (``pytest.UsageError``)."""
    browser_flows = [item for item in flows if item.flow.browser]
    if not browser_flows or _remote(config):
        return
    problem = display_problem(
        os.environ,
        headed_option=bool(getattr(config.option, "runset_headed", False)),
        headed_flows=[item.flow.name for item in browser_flows if _wants_window(item)],
    )
    if problem is not None:
        raise pytest.UsageError(problem)


def prepare_debugging(config: pytest.Config, flows: Sequence[RunsetItem]) -> None:
    """Before the run: no display for a headed run is a usage error; one browser flow under
    ``PWDEBUG`` keeps no timeout of its own."""
    check_display(config, flows)
    if pwdebug(os.environ) and len(flows) == 1 and flows[0].flow.browser:
        settings = config.stash[SETTINGS]
        config.stash[SETTINGS] = dataclasses.replace(settings, timeout_override=DEBUG_TIMEOUT_S)
