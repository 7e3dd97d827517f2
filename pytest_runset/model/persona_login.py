"""A persona's sign-in (``[personas.<name>] login = { ... }``), checked when the file loads.

The sign-in is a browser journey like a flow's: inline ``steps``, a ``spec`` file, or a
``callable``. It runs once per run and host, before the persona's first browser flow there,
and its storage state (cookies, local storage) starts every browser flow of that persona (see
:mod:`pytest_runset.gateway.runners.persona_login`). Placeholders in its steps may use the
persona's fields (``{persona.password}``), ``{base_url}``, ``{run_id}`` and ``{env.NAME}``;
nothing of one flow (its ports, its directory), since it serves them all.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_runset.model.browser_options import PersonaLogin, SignIn
from pytest_runset.model.durations import parse_duration
from pytest_runset.model.flows import Persona, RunsetError
from pytest_runset.model.steps import (
    SpecError,
    StepError,
    describe_step_error,
    load_spec,
    parse_steps,
    placeholder_context,
)

if TYPE_CHECKING:
    from pytest_runset.model.schema import RunsetDocument

__all__ = ["LOGIN_KEYS", "attach_logins"]

# Keys of a persona table that describe its sign-in, not a field of the persona.
LOGIN_KEYS = ("login", "login_ttl")
# Placeholders that name one flow: a sign-in serves every flow of its persona.
_FLOW_ONLY = ("{flow_dir}", "{slug}", "{name}", "{attempt}", "{slot}")


def attach_logins(
    shown: Path, root: Path, doc: RunsetDocument, personas: dict[str, Persona]
) -> dict[str, Persona]:
    """``personas`` with their validated sign-ins; raises :class:`RunsetError`."""
    services = {service.name: service.ports for service in doc.runset.services}
    result = dict(personas)
    for name, table in doc.personas.items():
        login = table.get("login")
        if not isinstance(login, PersonaLogin):
            continue
        where = f"{shown}: persona {name!r}, field 'login'"
        context = {"persona_fields": personas[name].field_names, "services": services}
        ttl = parse_duration(table["login_ttl"]) if "login_ttl" in table else None
        result[name] = dataclasses.replace(
            personas[name], login=_sign_in(where, root, login, context, ttl)
        )
    return result


def _sign_in(
    where: str, root: Path, login: PersonaLogin, context: dict[str, Any], ttl: float | None
) -> SignIn:
    if login.steps is not None:
        try:
            with placeholder_context(context):
                steps = parse_steps(login.steps)
        except StepError as exc:
            raise RunsetError(f"{where}, {describe_step_error(exc)}") from None
        _no_flow_placeholders(where, steps)
        return SignIn(steps=steps, ttl_s=ttl)
    if login.spec is not None:
        try:
            with placeholder_context(context):
                loaded = load_spec(root / login.spec)
        except SpecError as exc:
            raise RunsetError(f"{where}, spec {login.spec!r}: {exc}") from None
        _no_flow_placeholders(where, loaded.steps)
        return SignIn(steps=loaded.steps, base_url=loaded.base_url, ttl_s=ttl)
    from pytest_runset.gateway.callables import CallableError, inspect_callable

    reference = str(login.callable)
    try:
        info = inspect_callable(reference, root)
    except CallableError as exc:
        raise RunsetError(f"{where}.callable: {exc}") from None
    unusable = [name for name in info.params or () if name in ("port", "ports")]
    if unusable:
        raise RunsetError(
            f"{where}.callable: {reference}: a sign-in leases no ports (asks for {unusable[0]!r})"
        )
    return SignIn(callable_ref=reference, params=info.params, ttl_s=ttl)


def _no_flow_placeholders(where: str, steps: tuple[dict[str, Any], ...]) -> None:
    for number, step in enumerate(steps, 1):
        for key in ("target", "value", "key", "expected", "selector"):
            value = step.get(key)
            texts = value if isinstance(value, list) else [value]
            for text in texts:
                if not isinstance(text, str):
                    continue
                for placeholder in _FLOW_ONLY:
                    if placeholder in text:
                        raise RunsetError(
                            f"{where}, step {number}: {placeholder} names one flow, and the "
                            "sign-in serves every flow of the persona"
                        )
