"""Turning a flow into the plain-data spec of one attempt that a worker runs.

Here the slug directory is created, placeholders are filled in and the flow's environment is
assembled (inherited + ``[runset] env`` + the flow's ``env`` + ``RUNSET_*``), so that the
gateway side receives nothing but builtins.
"""

from __future__ import annotations

import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from . import proctree
from .model import Flow, RunSet
from .placeholders import substitute
from .slugs import UnsafePathError, attempt_dir_name, flow_dir

FLOW_REPORT_NAME = "flow-report.json"


@dataclass(frozen=True)
class Attempt:
    spec: dict[str, Any]
    cookie: str
    timeout_s: float
    env: dict[str, str]


def make_flow_dir(path: Path) -> None:
    """Create a flow directory without following anything planted at its name."""
    try:
        os.mkdir(path, 0o755)
    except FileExistsError:
        if os.path.islink(path) or not os.path.isdir(path):
            raise UnsafePathError(f"{path} exists and is not a plain directory") from None


def build_attempt(
    config: pytest.Config,
    *,
    flow: Flow,
    runset: RunSet,
    run_id: str,
    run_dir: Path,
    base_url: str | None,
    slot: int,
    worker_id: str,
    attempt: int,
    timeout_override: float | None,
) -> Attempt:
    """Everything a worker needs for one attempt.

    Raises :class:`~pytest_runset.placeholders.PlaceholderError`, :class:`UnsafePathError` or
    :class:`OSError` when the attempt cannot even start (the flow then ends as ``error``).
    """
    target = flow_dir(run_dir, attempt_dir_name(flow.slug, attempt))
    make_flow_dir(target)
    cookie = f"{run_id}.{flow.slug}.{attempt}.{secrets.token_hex(4)}"
    timeout = timeout_override or flow.timeout_s
    values = {
        "slot": str(slot),
        "flow_dir": str(target),
        "run_dir": str(run_dir),
        "run_id": run_id,
        "slug": flow.slug,
        "name": flow.name,
        "attempt": str(attempt),
        "python": sys.executable,
    }
    inherited = dict(os.environ)
    url = substitute(base_url, values, inherited) if base_url else ""
    values["base_url"] = url
    extra: dict[str, str] = {}
    for key, value in runset.settings.env.items():
        extra[key] = substitute(value, values, {**inherited, **extra})
    for key, value in flow.env.items():
        extra[key] = substitute(value, values, {**inherited, **extra})
    extra.update(
        {
            "RUNSET_RUN_ID": run_id,
            "RUNSET_RUN_DIR": str(run_dir),
            "RUNSET_FLOW": flow.name,
            "RUNSET_SLUG": flow.slug,
            "RUNSET_FLOW_DIR": str(target),
            "RUNSET_REPORT": str(target / FLOW_REPORT_NAME),
            "RUNSET_ATTEMPT": str(attempt),
            "RUNSET_WORKER": worker_id,
            "RUNSET_SLOT": str(slot),
        }
    )
    if url:
        extra["RUNSET_BASE_URL"] = url
    config.hook.pytest_runset_flow_env(config=config, flow=flow, env=extra)
    # The cookie is what finds the flow's processes; no hook may drop or change it.
    extra[proctree.COOKIE_VAR] = cookie
    environment = {**inherited, **extra}
    command: list[str] | str
    if isinstance(flow.command, str):
        command = substitute(flow.command, values, environment)
    else:
        command = [substitute(arg, values, environment) for arg in flow.command]
    cwd = runset.directory
    if flow.cwd is not None:
        cwd = cwd / substitute(flow.cwd, values, environment)
    if not cwd.is_dir():
        raise OSError(f"working directory {cwd} does not exist")
    spec = {
        "flow_id": cookie,
        "kind": flow.kind,
        "name": flow.name,
        "slug": flow.slug,
        "attempt": attempt,
        "command": command,
        "shell": flow.shell,
        "cwd": str(cwd),
        "env": extra,
        "flow_dir": str(target),
        "run_dir": str(run_dir),
        "report_path": str(target / FLOW_REPORT_NAME),
        "timeout_s": timeout,
        "kill_grace_s": flow.kill_grace_s,
    }
    if flow.kind != "command":
        spec.update(
            _inprocess_spec(
                config,
                flow=flow,
                runset=runset,
                values=values,
                environment=environment,
                cookie=cookie,
                browser_cookie=proctree.browser_cookie(run_id, worker_id),
            )
        )
    return Attempt(spec=spec, cookie=cookie, timeout_s=timeout, env=extra)


# Step fields that hold templates; regexes are taken literally (``\d{3}`` is not a placeholder).
_STEP_TEMPLATES = ("target", "value", "key", "expected", "selector")


def _substitute_step(
    step: dict[str, Any], values: dict[str, str], env: dict[str, str]
) -> dict[str, Any]:
    filled = dict(step)
    for key in _STEP_TEMPLATES:
        value = step.get(key)
        if key == "target" and step.get("regex") is True:
            continue
        if key == "expected" and step.get("match") == "regex":
            continue
        if isinstance(value, str):
            filled[key] = substitute(value, values, env)
        elif isinstance(value, list):
            filled[key] = [substitute(item, values, env) for item in value]
    return filled


def _inprocess_spec(
    config: pytest.Config,
    *,
    flow: Flow,
    runset: RunSet,
    values: dict[str, str],
    environment: dict[str, str],
    cookie: str,
    browser_cookie: str,
) -> dict[str, Any]:
    """The parts of a steps or callable flow's spec: steps, callable, browser options."""
    base_url = values["base_url"]
    if flow.base_url is not None:
        base_url = substitute(flow.base_url, values, environment)
    part: dict[str, Any] = {
        "steps": [_substitute_step(step, values, environment) for step in flow.steps],
        "callable": flow.callable_ref,
        "params": list(flow.params) if flow.params is not None else None,
        "root": str(runset.directory),
        "base_url": base_url,
        "browser": None,
    }
    if flow.browser:
        option = config.option
        executable = getattr(option, "runset_browser_executable", None)
        if executable and os.sep in executable:
            executable = str(config.invocation_params.dir / executable)
        isolation = runset.settings.browser_isolation
        part["browser"] = {
            "name": getattr(option, "runset_browser", "chromium"),
            "executable": executable,
            "headed": bool(getattr(option, "runset_headed", False)),
            "trace": getattr(option, "runset_trace", "retain-on-failure"),
            "screenshot": getattr(option, "runset_screenshot", "only-on-failure"),
            "video": getattr(option, "runset_video", "off"),
            "isolation": isolation,
            "viewport": list(flow.viewport) if flow.viewport else None,
            # A browser per flow carries the flow's cookie; a warm one its worker's.
            "cookie": cookie if isolation == "process" else browser_cookie,
        }
    return part
