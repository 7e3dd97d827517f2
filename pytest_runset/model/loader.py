"""Loading a run-set file: :func:`load_runset` and :func:`parse_runset`.

This module owns turning the bytes of a run-set file into a :class:`~.flows.RunSet`: decoding,
TOML parsing, validation against :mod:`.schema`, the checks that span the document (persona
references, placeholders, browser steps, spec files and callables) and applying defaults.

Nothing here imports pytest: the ``pytest-runset`` command line uses the same loader. Every
problem with a file becomes one :class:`~.flows.RunsetError` whose text is a single line naming
the file, the flow (position and name) and the field (see :mod:`.messages`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from pytest_runset.gateway.safe_files import MAX_DEFINITION_BYTES, UnsafeFile, read_regular
from pytest_runset.model.browser_options import BrowserOptions, resolve_profile
from pytest_runset.model.flows import POOL_PREFIX, Flow, Persona, RunSet, RunsetError
from pytest_runset.model.fsnames import as_text
from pytest_runset.model.matrix import Expansion, expand_flows
from pytest_runset.model.messages import (
    describe_validation_error,
    flow_label,
    flow_positions,
    show_key,
    show_name,
)
from pytest_runset.model.persona_login import LOGIN_KEYS, attach_logins
from pytest_runset.model.placeholders import PlaceholderError, check_template, placeholder_names
from pytest_runset.model.projects import expand_projects
from pytest_runset.model.schema import FlowSpec, RunsetDocument, RunsetSettings
from pytest_runset.model.slugs import unique_slugs
from pytest_runset.model.steps import (
    SpecError,
    StepError,
    describe_step_error,
    load_spec,
    parse_steps,
    placeholder_context,
)
from pytest_runset.model.toml_text import parse_toml

__all__ = ["load_runset", "parse_runset"]


def _reason(value: str | bool | None, default: str) -> str | None:
    if value is None or value is False:
        return None
    if value is True:
        return default
    return value


def _flow_sha(raw_flow: Any) -> str:
    canonical = json.dumps(raw_flow, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def _personas(doc: RunsetDocument) -> dict[str, Persona]:
    personas = {}
    for name, table in doc.personas.items():
        fields: dict[str, str] = {}
        secrets: dict[str, str] = {}
        for key, value in table.items():
            if key in LOGIN_KEYS:
                continue
            if key.endswith("_env"):
                secrets[key[: -len("_env")]] = str(value)
            elif isinstance(value, bool):
                fields[key] = "true" if value else "false"
            else:
                fields[key] = str(value)
        personas[name] = Persona(name=name, fields=fields, secrets=secrets)
    return personas


def _check_references(
    path: Path, doc: RunsetDocument, personas: dict[str, Persona]
) -> dict[int, frozenset[str] | None]:
    """Check persona references; return the persona fields each flow may use, by index."""
    fields: dict[int, frozenset[str] | None] = {}
    for index, spec in enumerate(doc.flows):
        fields[index] = None
        if spec.persona is None:
            continue
        where = f"{path}: {flow_label(index, spec.name)}, field 'persona'"
        if spec.persona.startswith(POOL_PREFIX):
            pool = spec.persona[len(POOL_PREFIX) :]
            if pool not in doc.persona_pools:
                known = ", ".join(sorted(doc.persona_pools)) or "none defined"
                raise RunsetError(f"{where}: unknown persona pool {pool!r} (pools: {known})")
            members = [personas[name] for name in doc.persona_pools[pool]]
        elif spec.persona in personas:
            members = [personas[spec.persona]]
        else:
            known = ", ".join(sorted(personas)) or "none defined"
            raise RunsetError(
                f"{where}: unknown persona {spec.persona!r} (personas: {known}; "
                "a pool is written 'pool:<name>')"
            )
        fields[index] = frozenset.intersection(*(member.field_names for member in members))
    return fields


def _check_secret_argv(path: Path, doc: RunsetDocument, personas: dict[str, Persona]) -> None:
    """A persona secret in a flow's (or its sidecar's) command is readable by every local user
    in ``/proc/PID/cmdline``: refused unless the flow sets ``allow_secret_argv = true``."""
    for index, spec in enumerate(doc.flows):
        if spec.persona is None or spec.allow_secret_argv:
            continue
        candidates = (
            doc.persona_pools.get(spec.persona[len(POOL_PREFIX) :], [])
            if spec.persona.startswith(POOL_PREFIX)
            else [spec.persona]
        )
        secrets = {field for name in candidates for field in personas[name].secrets}
        commands = [("command", spec.command)]
        if spec.sidecar is not None:
            commands.append(("sidecar.command", spec.sidecar.command))
        for key, command in commands:
            args = [command] if isinstance(command, str) else list(command or [])
            for arg in args:
                for name in placeholder_names(arg):
                    field = name.removeprefix("persona.")
                    if name.startswith("persona.") and field in secrets:
                        raise RunsetError(
                            f"{path}: {flow_label(index, spec.name)}, field '{key}': "
                            f"{{{name}}} is a secret and every local user can read a "
                            f"process's arguments; use $RUNSET_PERSONA_{field.upper()} instead, "
                            "or set allow_secret_argv = true on the flow"
                        )


def _check_placeholders(
    path: Path, doc: RunsetDocument, persona_fields: dict[int, frozenset[str] | None]
) -> None:
    services = {service.name: service.ports for service in doc.runset.services}

    def check(where: str, text: str, **context: Any) -> None:
        try:
            check_template(text, services=services, **context)
        except PlaceholderError as exc:
            raise RunsetError(f"{path}: {where}: {exc}") from None

    def check_command(
        where: str, command: list[str] | str | None, prefix: str = "", **context: Any
    ) -> None:
        if isinstance(command, str):
            check(f"{where} '{prefix}command'", command, **context)
        elif command is not None:
            for position, arg in enumerate(command):
                check(f"{where} '{prefix}command[{position}]'", arg, **context)

    for key, value in doc.runset.env.items():
        check(f"[runset], field 'env.{show_key(key)}'", value)
    if doc.runset.base_url is not None:
        check("[runset], field 'base_url'", doc.runset.base_url)
    for position, service in enumerate(doc.runset.services):
        where = f"[[runset.services]] #{position + 1} {show_name(service.name)}, field"
        check_command(where, service.command, ports=service.ports)
        for key, value in service.env.items():
            check(f"{where} 'env.{show_key(key)}'", value, ports=service.ports)
        for name in ("ready", "cwd"):
            value = getattr(service, name)
            if value is not None:
                check(f"{where} '{name}'", value, ports=service.ports)
    for index, spec in enumerate(doc.flows):
        where = f"{flow_label(index, spec.name)}, field"
        sidecar_ports = spec.sidecar.ports if spec.sidecar is not None else 0
        context: dict[str, Any] = {
            "ports": spec.ports,
            "persona_fields": persona_fields[index],
            "sidecar_ports": sidecar_ports,
        }
        check_command(where, spec.command, **context)
        for key, value in spec.env.items():
            check(f"{where} 'env.{show_key(key)}'", value, **context)
        if spec.cwd is not None:
            check(f"{where} 'cwd'", spec.cwd, **context)
        if spec.sidecar is not None:
            own = {"ports": sidecar_ports, "persona_fields": persona_fields[index]}
            check_command(where, spec.sidecar.command, prefix="sidecar.", **own)
            for key, value in spec.sidecar.env.items():
                check(f"{where} 'sidecar.env.{show_key(key)}'", value, **own)
            if spec.sidecar.ready is not None:
                check(f"{where} 'sidecar.ready'", spec.sidecar.ready, **own)


def _browser_parts(
    shown: Path,
    root: Path,
    index: int,
    spec: FlowSpec,
    settings: RunsetSettings,
    persona_fields: frozenset[str] | None = None,
) -> dict[str, Any]:
    """The :class:`Flow` fields of a steps, spec or callable flow (``{}`` for a command).

    Steps are validated here, spec files read (relative to the run-set's directory) and a
    callable's parameters checked; each problem is one :class:`RunsetError` naming the flow.
    """
    from pytest_runset.gateway.callables import CallableError, inspect_callable, needs_browser

    where = f"{shown}: {flow_label(index, spec.name)}"
    context = placeholder_context(
        {
            "ports": spec.ports,
            "persona_fields": persona_fields,
            "services": {service.name: service.ports for service in settings.services},
            "sidecar_ports": spec.sidecar.ports if spec.sidecar is not None else 0,
        }
    )
    own_viewport = spec.viewport
    if spec.steps is not None:
        try:
            with context:
                steps = parse_steps(spec.steps)
        except StepError as exc:
            raise RunsetError(f"{where}, {describe_step_error(exc)}") from None
        parts: dict[str, Any] = {"kind": "steps", "steps": steps, "browser": True}
    elif spec.spec is not None:
        try:
            with context:
                loaded = load_spec(root / spec.spec)
        except SpecError as exc:
            raise RunsetError(f"{where}, spec {spec.spec!r}: {exc}") from None
        parts = {
            "kind": "steps",
            "steps": loaded.steps,
            "spec": spec.spec,
            "spec_step_lines": loaded.step_lines,
            "browser": True,
            "base_url": loaded.base_url,
            "timeout_s": loaded.timeout_s,
        }
        own_viewport = spec.viewport or loaded.viewport
    elif spec.callable is not None:
        try:
            info = inspect_callable(spec.callable, root, ports=spec.ports)
        except CallableError as exc:
            raise RunsetError(f"{where}, field 'callable': {exc}") from None
        wants = needs_browser(info.params)
        if spec.browser is False and wants:
            raise RunsetError(
                f"{where}, field 'browser': the callable asks for a page, context or browser, "
                "so it needs browser = true (or leave 'browser' out)"
            )
        # A table of browser options means a browser, as ``true`` does.
        browser = wants if spec.browser is None else spec.browser is not False
        parts = {
            "kind": "callable",
            "callable_ref": spec.callable,
            "params": info.params,
            "browser": browser,
        }
    else:
        return {}
    if parts["browser"]:
        own = spec.browser if isinstance(spec.browser, BrowserOptions) else None
        profile = resolve_profile(((settings.browser, settings.viewport), (own, own_viewport)))
        parts["browser_profile"] = profile
        parts["viewport"] = profile.viewport
    return parts


def parse_runset(path: Path, data: bytes, display: str | None = None) -> RunSet:
    """Validate the bytes of a run-set file.

    ``path`` anchors relative paths; ``display`` (default: ``path``) names the file in messages,
    so users see the path as they typed it.
    """
    shown = Path(display) if display is not None else path
    try:
        # A byte order mark (editors on Windows write one) is not part of the document.
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise RunsetError(
            f"{shown}: not valid UTF-8: byte 0x{data[exc.start]:02x} "
            f"at line {line}, column {column} (offset {exc.start})"
        ) from None
    raw = parse_toml(text, lambda problem: RunsetError(f"{shown}: {problem}"))
    expansion = expand_flows(shown, raw)
    if expansion is None:
        return _validated(path, shown, data, raw, None)
    # Messages about an expanded flow count the tables of the file, not the expanded flows.
    with flow_positions(expansion.positions):
        return _validated(path, shown, data, expansion.document, expansion)


def _validated(
    path: Path, shown: Path, data: bytes, raw: dict[str, Any], expansion: Expansion | None
) -> RunSet:
    """The :class:`RunSet` of a parsed (and matrix-expanded) document."""
    try:
        doc = RunsetDocument.model_validate(raw)
    except ValidationError as exc:
        raise RunsetError(describe_validation_error(shown, raw, exc)) from None
    personas = attach_logins(shown, path.parent, doc, _personas(doc))
    persona_fields = _check_references(shown, doc, personas)
    _check_placeholders(shown, doc, persona_fields)
    _check_secret_argv(shown, doc, personas)

    settings = doc.runset
    slugs = unique_slugs(spec.name for spec in doc.flows)
    raw_flows = raw.get("flows", [])
    flows = []
    for index, (spec, slug) in enumerate(zip(doc.flows, slugs, strict=True)):
        extra = _browser_parts(shown, path.parent, index, spec, settings, persona_fields[index])
        timeout = extra.pop("timeout_s", None)
        command: tuple[str, ...] | str
        command = spec.command if isinstance(spec.command, str) else tuple(spec.command or ())
        flows.append(
            Flow(
                index=index,
                name=spec.name,
                slug=slug,
                kind=extra.pop("kind", "command"),
                command=command,
                shell=spec.shell,
                cwd=spec.cwd,
                env=dict(spec.env),
                tags=tuple(dict.fromkeys(spec.tags)),
                timeout_s=(
                    spec.timeout
                    if spec.timeout is not None
                    else timeout
                    if timeout is not None
                    else settings.timeout
                ),
                kill_grace_s=(
                    spec.kill_grace if spec.kill_grace is not None else settings.kill_grace
                ),
                retries=spec.retries if spec.retries is not None else settings.retries,
                skip=_reason(spec.skip, "skipped in the run-set"),
                xfail=_reason(spec.xfail, "expected to fail"),
                sha256=_flow_sha(raw_flows[index]),
                description=spec.description,
                persona=spec.persona,
                ports=spec.ports,
                exclusive=spec.exclusive,
                sidecar=spec.sidecar,
                workspace=spec.workspace,
                memory_max=spec.memory_max if spec.memory_max is not None else settings.memory_max,
                pids_max=spec.pids_max if spec.pids_max is not None else settings.pids_max,
                matrix=expansion.combinations[index] if expansion else None,
                position=expansion.positions[index] if expansion else None,
                **extra,
            )
        )
    return RunSet(
        path=path,
        name=settings.name or as_text(path.stem),
        sha256=hashlib.sha256(data).hexdigest(),
        settings=settings,
        flows=expand_projects(shown, flows, doc.flows, settings),
        personas=personas,
        pools={name: tuple(members) for name, members in doc.persona_pools.items()},
    )


def load_runset(path: str | Path, display: str | None = None) -> RunSet:
    """Read and validate a run-set file (UTF-8 TOML); raise :class:`RunsetError` on any problem.

    ``display`` is how messages name the file (default: ``path`` as given).
    """
    file = Path(path)
    shown = display if display is not None else str(path)
    try:
        data = read_regular(file, max_bytes=MAX_DEFINITION_BYTES)
    except UnsafeFile as exc:
        raise RunsetError(f"{shown}: cannot read: {exc}") from None
    except IsADirectoryError:
        raise RunsetError(f"{shown}: is a directory, not a run-set file") from None
    except FileNotFoundError:
        raise RunsetError(f"{shown}: no such run-set file") from None
    except OSError as exc:
        raise RunsetError(f"{shown}: cannot read: {exc.strerror or exc}") from None
    return parse_runset(file.absolute(), data, display=shown)
