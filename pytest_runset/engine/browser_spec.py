"""A browser flow's browser in its attempt's spec: options of every level, the command line's
overrides, HTTP credentials and the persona's sign-in.

:func:`pytest_runset.engine.attempt.build_attempt` builds the flow's spec; this module completes
its ``browser`` part from the flow's merged :class:`~pytest_runset.model.browser_options.
BrowserProfile`. The command line wins over the run-set, as ``--runset-timeout`` wins over every
flow's timeout: ``--runset-browser``/``--browser`` pick the engine, ``--runset-headed``/
``--headed`` show the window, and pytest-playwright's ``--browser-channel``, ``--slowmo`` and
``--device`` (mapped by the session, :data:`OVERRIDES`) replace the file's values.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, TypedDict

import pytest

from pytest_runset.gateway.protocol import AttemptSpec, BrowserLaunch, ContextOptions, LoginSpec
from pytest_runset.model.flows import Flow, Persona
from pytest_runset.model.placeholders import substitute

__all__ = [
    "AUTH_DIR",
    "OVERRIDES",
    "AttemptSecretError",
    "BrowserOverrides",
    "complete_browser",
    "remove_auth_dir",
]

# The run's private directory of persona storage states (0700, removed when the run ends).
AUTH_DIR = "auth"
# ``config.option`` attribute the session sets to the command line's browser overrides.
OVERRIDES = "runset_browser_overrides"


class BrowserOverrides(TypedDict, total=False):
    """What the command line asks of every browser flow (``None``/absent: the file decides)."""

    name: str
    channel: str
    slow_mo: float
    device: str


class AttemptSecretError(Exception):
    """A secret the browser needs is not set; the attempt cannot start (the flow is ``error``)."""


def complete_browser(
    config: pytest.Config,
    spec: AttemptSpec,
    *,
    flow: Flow,
    persona: Persona | None,
    values: dict[str, str],
    environment: dict[str, str],
    run_dir: Path,
    substitute_step: Any,
) -> None:
    """Fill in ``spec["browser"]`` (launch and context options, sign-in) in place.

    A secret (the HTTP credentials' password) joins ``spec["secrets"]``, so it is masked like a
    persona's. Raises :class:`AttemptSecretError` when its variable is not set.
    """
    browser = spec.get("browser")
    if not browser:
        return
    overrides: BrowserOverrides = getattr(config.option, OVERRIDES, None) or BrowserOverrides()
    profile = flow.browser_profile
    launch = profile.launch.copy() if profile is not None else BrowserLaunch()
    context = profile.context.copy() if profile is not None else ContextOptions()
    name = overrides.get("name") or (profile.name if profile else None) or browser["name"]
    browser["name"] = name
    if "channel" in overrides:
        launch["channel"] = overrides["channel"]
    if "slow_mo" in overrides:
        launch["slow_mo"] = overrides["slow_mo"]
    if "device" in overrides:
        # As a more specific level would: the device brings its own viewport and user agent.
        context.pop("viewport", None)
        context.pop("user_agent", None)
        context["device"] = overrides["device"]
    # --runset-headed (or --headed) shows every browser; headless = false in the file, one.
    headless = launch.pop("headless", None)
    browser["headed"] = bool(browser.get("headed")) or headless is False
    browser["launch"] = launch
    if profile is not None and profile.credentials is not None:
        username, variable = profile.credentials
        password = os.environ.get(variable)
        if password is None:
            raise AttemptSecretError(
                f"browser http_credentials: environment variable {variable} (password_env) "
                "is not set"
            )
        context["http_credentials"] = {"username": username, "password": password}
        secrets = spec.setdefault("secrets", [])
        if password and password not in secrets:
            secrets.append(password)
    browser["context"] = context
    viewport = context.get("viewport")
    browser["viewport"] = [viewport["width"], viewport["height"]] if viewport else None
    if persona is not None and persona.login is not None:
        browser["login"] = _login(persona, values, environment, run_dir, substitute_step)


def _login(
    persona: Persona,
    values: dict[str, str],
    environment: dict[str, str],
    run_dir: Path,
    substitute_step: Any,
) -> LoginSpec:
    sign_in = persona.login
    assert sign_in is not None
    base_url = values.get("base_url") or None
    if sign_in.base_url is not None:
        base_url = substitute(sign_in.base_url, values, environment)
    return {
        "persona": persona.name,
        "dir": str(run_dir / AUTH_DIR),
        "ttl_s": sign_in.ttl_s,
        "steps": [substitute_step(step, values, environment) for step in sign_in.steps],
        "callable": sign_in.callable_ref,
        "params": list(sign_in.params) if sign_in.params is not None else None,
        "base_url": base_url,
    }


def remove_auth_dir(run_dir: Path) -> None:
    """Remove the run's sign-in states (called once the run's flows are over)."""
    shutil.rmtree(run_dir / AUTH_DIR, ignore_errors=True)
