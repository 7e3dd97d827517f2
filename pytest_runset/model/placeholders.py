"""``{...}`` placeholders in commands, env values, working directories and URLs.

Substitution is plain text replacement of a fixed vocabulary, never ``str.format``: a
run-set file must not be able to reach attributes of Python objects. ``{{`` and ``}}`` are
literal braces. Names are checked when the run-set is loaded, values are filled in when a
flow is dispatched (only then are the slot, the run directory and the ports known).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

# Names every flow can use.
SIMPLE_NAMES = frozenset(
    {"slot", "flow_dir", "run_dir", "run_id", "slug", "name", "base_url", "attempt", "python"}
)
_ENV_NAME = re.compile(r"^env\.([A-Za-z_][A-Za-z0-9_]*)$")
_PORT_NAME = re.compile(r"^(?:port|ports\[(\d+)\])$")


class PlaceholderError(ValueError):
    """A malformed or unknown placeholder."""


def _shown(name: str) -> str:
    """``{name}`` for a message, with unprintable characters escaped (messages are one line)."""
    text = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in name)
    return "{" + text + "}"


@dataclass(frozen=True)
class _Literal:
    text: str


@dataclass(frozen=True)
class _Field:
    name: str


def _tokenize(template: str) -> list[_Literal | _Field]:
    tokens: list[_Literal | _Field] = []
    buf: list[str] = []
    i = 0
    n = len(template)
    while i < n:
        ch = template[i]
        if ch == "{":
            if template.startswith("{{", i):
                buf.append("{")
                i += 2
                continue
            end = template.find("}", i + 1)
            if end < 0:
                raise PlaceholderError(f"unclosed '{{' at position {i}")
            name = template[i + 1 : end].strip()
            if not name or "{" in name:
                raise PlaceholderError(f"malformed placeholder at position {i}")
            if buf:
                tokens.append(_Literal("".join(buf)))
                buf = []
            tokens.append(_Field(name))
            i = end + 1
        elif ch == "}":
            if template.startswith("}}", i):
                buf.append("}")
                i += 2
                continue
            raise PlaceholderError(f"single '}}' at position {i} (write '}}}}' for a brace)")
        else:
            buf.append(ch)
            i += 1
    if buf:
        tokens.append(_Literal("".join(buf)))
    return tokens


def placeholder_names(template: str) -> list[str]:
    """The placeholder names used in ``template`` (raises on malformed braces)."""
    return [t.name for t in _tokenize(template) if isinstance(t, _Field)]


_PERSONA_NAME = re.compile(r"^persona\.([A-Za-z_][A-Za-z0-9_]*)$")
_SERVICE_PORT = re.compile(r"^services\.([A-Za-z0-9_.-]+?)\.(?:port|ports\[(\d+)\])$")
_SIDECAR_PORT = re.compile(r"^sidecar\.(?:port|ports\[(\d+)\])$")


def check_name(
    name: str,
    *,
    ports: int,
    persona_fields: frozenset[str] | None = None,
    services: Mapping[str, int] | None = None,
    sidecar_ports: int = 0,
) -> None:
    """Raise :class:`PlaceholderError` unless ``name`` is known in this context.

    ``ports``: ports the flow (or service) leases; ``persona_fields``: the fields every persona
    the flow may get has (``None``: no persona); ``services``: service name -> leased ports;
    ``sidecar_ports``: ports of the flow's sidecar.
    """
    if name in SIMPLE_NAMES or _ENV_NAME.match(name):
        return
    port = _PORT_NAME.match(name)
    if port:
        _check_port_index(name, port.group(1), ports, "the flow leases")
        return
    persona = _PERSONA_NAME.match(name)
    if persona:
        if persona_fields is None:
            raise PlaceholderError(
                f"placeholder {_shown(name)} needs a persona (set persona = ...)"
            )
        if persona.group(1) not in persona_fields:
            known = ", ".join(sorted(persona_fields)) or "none"
            raise PlaceholderError(
                f"placeholder {_shown(name)}: the persona has no field "
                f"{persona.group(1)!r} (fields: {known})"
            )
        return
    service = _SERVICE_PORT.match(name)
    if service:
        known_services = services or {}
        if service.group(1) not in known_services:
            raise PlaceholderError(
                f"placeholder {_shown(name)}: no service named {service.group(1)!r}"
            )
        _check_port_index(name, service.group(2), known_services[service.group(1)], "it leases")
        return
    sidecar = _SIDECAR_PORT.match(name)
    if sidecar:
        _check_port_index(name, sidecar.group(1), sidecar_ports, "the sidecar leases")
        return
    if name.startswith("matrix."):
        # A flow with a matrix has these filled in when it is expanded (model/matrix.py).
        raise PlaceholderError(f"placeholder {_shown(name)} needs a matrix on the flow")
    raise PlaceholderError(f"unknown placeholder {_shown(name)}")


def _check_port_index(name: str, index_text: str | None, ports: int, whose: str) -> None:
    if ports <= 0:
        where = "flows that lease ports" if whose == "the flow leases" else "leased ports"
        raise PlaceholderError(f"placeholder {_shown(name)} is only known to {where}")
    index = int(index_text or 0)
    if index >= ports:
        raise PlaceholderError(
            f"placeholder {_shown(name)} is out of range: {whose} {ports} port(s)"
        )


def check_template(
    template: str,
    *,
    ports: int = 0,
    persona_fields: frozenset[str] | None = None,
    services: Mapping[str, int] | None = None,
    sidecar_ports: int = 0,
) -> None:
    for name in placeholder_names(template):
        check_name(
            name,
            ports=ports,
            persona_fields=persona_fields,
            services=services,
            sidecar_ports=sidecar_ports,
        )


def substitute(template: str, values: Mapping[str, str], env: Mapping[str, str]) -> str:
    """Fill ``template`` from ``values`` (simple and port names) and ``env`` (``env.NAME``).

    Raises :class:`PlaceholderError` naming the first value that is not available.
    """
    out: list[str] = []
    for token in _tokenize(template):
        if isinstance(token, _Literal):
            out.append(token.text)
            continue
        name = token.name
        env_match = _ENV_NAME.match(name)
        if env_match:
            var = env_match.group(1)
            if var not in env:
                raise PlaceholderError(
                    f"placeholder {_shown(name)}: environment variable {var} is not set"
                )
            out.append(env[var])
        elif name in values:
            out.append(values[name])
        else:
            raise PlaceholderError(f"placeholder {_shown(name)} has no value for this flow")
    return "".join(out)
