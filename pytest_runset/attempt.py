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
    return Attempt(spec=spec, cookie=cookie, timeout_s=timeout, env=extra)
