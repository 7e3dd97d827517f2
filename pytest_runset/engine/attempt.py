"""Turning a flow into the plain-data spec of one attempt that a worker runs.

Here the slug directory is created, placeholders are filled in and the flow's environment is
assembled (inherited + ``[runset] env`` + the flow's ``env`` + ``RUNSET_*``), so that the
gateway side receives nothing but builtins.
"""

from __future__ import annotations

import os
import secrets as random_tokens
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict, cast

import pytest

from pytest_runset.engine.browser_spec import AttemptSecretError, complete_browser
from pytest_runset.gateway import proctree
from pytest_runset.gateway.protocol import AttemptSpec, ContainmentRequest, SidecarSpec
from pytest_runset.model.flows import Flow, Persona, RunSet
from pytest_runset.model.placeholders import substitute
from pytest_runset.model.slugs import UnsafePathError, attempt_dir_name, flow_dir

FLOW_REPORT_NAME = "flow-report.json"


class ContainmentPlan(TypedDict):
    """The session's containment, as each attempt's spec carries it: the tier the command
    line asks for (None: the run-set's), the run's group key and cookie file."""

    tier: str | None
    group: str
    cookie_file: str | None


@dataclass(frozen=True)
class Attempt:
    spec: AttemptSpec
    cookie: str
    timeout_s: float
    env: dict[str, str]
    secrets: list[str]


class AttemptError(Exception):
    """The attempt cannot start (a secret's variable is unset, say); the flow is ``error``."""


def persona_values(persona: Persona) -> tuple[dict[str, str], list[str]]:
    """``{persona.<field>}`` values and the secrets among them (read from the environment)."""
    values = dict(persona.fields)
    secrets: list[str] = []
    for name, variable in persona.secrets.items():
        value = os.environ.get(variable)
        if value is None:
            raise AttemptError(
                f"persona {persona.name!r}: environment variable {variable} ({name}_env) is not set"
            )
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            # Undecodable bytes reach Python as surrogates, which no channel or file can carry.
            raise AttemptError(
                f"persona {persona.name!r}: environment variable {variable} ({name}_env) "
                "is not valid UTF-8"
            ) from None
        values[name] = value
        secrets.append(value)
    return values, secrets


def port_values(prefix: str, ports: list[int]) -> dict[str, str]:
    """``{port}``/``{ports[i]}`` (or with a prefix such as ``sidecar.``) for leased ports."""
    if not ports:
        return {}
    values = {f"{prefix}port": str(ports[0])}
    values.update({f"{prefix}ports[{i}]": str(port) for i, port in enumerate(ports)})
    return values


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
    persona: Persona | None = None,
    ports: list[int] | None = None,
    service_values: dict[str, str] | None = None,
    workdir: Path | None = None,
    containment: ContainmentPlan | None = None,
) -> Attempt:
    """Everything a worker needs for one attempt.

    Raises :class:`~pytest_runset.placeholders.PlaceholderError`, :class:`UnsafePathError` or
    :class:`OSError` when the attempt cannot even start (the flow then ends as ``error``).
    """
    target = flow_dir(run_dir, attempt_dir_name(flow.slug, attempt))
    make_flow_dir(target)
    cookie = f"{run_id}.{flow.slug}.{attempt}.{random_tokens.token_hex(4)}"
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
    flow_ports = list(ports or [])[: flow.ports]
    sidecar_ports = list(ports or [])[flow.ports :]
    values.update(port_values("", flow_ports))
    values.update(port_values("sidecar.", sidecar_ports))
    values.update(service_values or {})
    secrets: list[str] = []
    persona_env: dict[str, str] = {}
    if persona is not None:
        fields, secrets = persona_values(persona)
        values.update({f"persona.{name}": value for name, value in fields.items()})
        persona_env["RUNSET_PERSONA"] = persona.name
        persona_env.update({f"RUNSET_PERSONA_{name.upper()}": v for name, v in fields.items()})
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
    if flow_ports:
        extra["RUNSET_PORT"] = str(flow_ports[0])
        extra["RUNSET_PORTS"] = ",".join(str(port) for port in flow_ports)
    if sidecar_ports:
        extra["RUNSET_SIDECAR_PORT"] = str(sidecar_ports[0])
        extra["RUNSET_SIDECAR_PORTS"] = ",".join(str(port) for port in sidecar_ports)
    extra.update(persona_env)
    config.hook.pytest_runset_flow_env(config=config, flow=flow, env=extra)
    # The cookie is what finds the flow's processes; no hook may drop or change it.
    extra[proctree.COOKIE_VAR] = cookie
    environment = {**inherited, **extra}
    command: list[str] | str
    if isinstance(flow.command, str):
        command = substitute(flow.command, values, environment)
    else:
        command = [substitute(arg, values, environment) for arg in flow.command]
    cwd = workdir if workdir is not None else runset.directory
    if flow.cwd is not None:
        cwd = cwd / substitute(flow.cwd, values, environment)
    if not cwd.is_dir():
        raise OSError(f"working directory {cwd} does not exist")
    spec: AttemptSpec = {
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
        "secrets": secrets,
        "ports": flow_ports,
        "persona": ({"name": persona.name, **fields} if persona is not None else None),
        "containment": {
            # --runset-containment wins over the run-set's [runset] containment.
            "tier": cast(
                "ContainmentRequest",
                (containment["tier"] if containment else None) or runset.settings.containment,
            ),
            "group": containment["group"] if containment else run_id,
            "cookie_file": containment["cookie_file"] if containment else None,
            "memory_max": flow.memory_max,
            "pids_max": flow.pids_max,
        },
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
        try:
            complete_browser(
                config,
                spec,
                flow=flow,
                persona=persona,
                values=values,
                environment=environment,
                run_dir=run_dir,
                substitute_step=_substitute_step,
            )
        except AttemptSecretError as exc:
            raise AttemptError(str(exc)) from None
    if flow.sidecar is not None:
        spec["sidecar"] = _sidecar_spec(flow, values, environment, sidecar_ports, target, cwd)
    return Attempt(spec=spec, cookie=cookie, timeout_s=timeout, env=extra, secrets=secrets)


def _sidecar_spec(
    flow: Flow,
    flow_values: dict[str, str],
    environment: dict[str, str],
    ports: list[int],
    target: Path,
    cwd: Path,
) -> SidecarSpec:
    """The flow's sidecar as plain data: its own ``{port}`` is the sidecar's port."""
    sidecar = flow.sidecar
    assert sidecar is not None
    values = {**flow_values, **port_values("", ports)}
    for key in [key for key in values if key.startswith(("port", "ports["))]:
        if key not in port_values("", ports):
            del values[key]
    env: dict[str, str] = {}
    for key, value in sidecar.env.items():
        env[key] = substitute(value, values, {**environment, **env})
    if ports:
        env["RUNSET_PORT"] = str(ports[0])
        env["RUNSET_PORTS"] = ",".join(str(port) for port in ports)
    command: list[str] | str
    if isinstance(sidecar.command, str):
        command = substitute(sidecar.command, values, environment)
    else:
        command = [substitute(arg, values, environment) for arg in sidecar.command]
    return {
        "command": command,
        "shell": sidecar.shell,
        "cwd": str(cwd / sidecar.cwd) if sidecar.cwd else str(cwd),
        "env": env,
        "ready": substitute(sidecar.ready, values, environment) if sidecar.ready else None,
        "ready_timeout_s": sidecar.ready_timeout,
        "ready_log": sidecar.ready_log,
        "kill_grace_s": (
            sidecar.kill_grace if sidecar.kill_grace is not None else flow.kill_grace_s
        ),
        "log_path": str(target / "sidecar.log"),
    }


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
) -> AttemptSpec:
    """The parts of a steps or callable flow's spec: steps, callable, browser options."""
    base_url = values["base_url"]
    if flow.base_url is not None:
        base_url = substitute(flow.base_url, values, environment)
    part: AttemptSpec = {
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
            "endpoint": (
                getattr(option, "runset_browser_endpoint", None) or runset.settings.browser_endpoint
            ),
            "viewport": list(flow.viewport) if flow.viewport else None,
            # A browser per flow carries the flow's cookie; a warm one its worker's.
            "cookie": cookie if isolation == "process" else browser_cookie,
        }
    return part
