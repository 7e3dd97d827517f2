"""Gateway specs: where the flows run (``--runset-tx``, ``--runset-px``, ``[runset] tx``).

A spec is an execnet spec (``popen``, ``ssh=host//python=...``, ``socket=host:port``,
``popen//via=ID``, ``socket//installvia=ID``) with an optional ``N*`` multiplier. Parsing here
only checks what execnet would reject late or confusingly (unknown keys, a ``via`` naming no
proxy, a socket address without a port) so that a typo costs one line and exit code 4.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import execnet


# The execnet spec keys a gateway may carry; ``id`` is ours (worker ids), ``vagrant_ssh`` is
# left out on purpose (untested here).
_KNOWN_KEYS = frozenset(
    {
        "popen",
        "ssh",
        "socket",
        "python",
        "chdir",
        "nice",
        "dont_write_bytecode",
        "execmodel",
        "ssh_config",
        "via",
        "installvia",
    }
)
_MULTIPLIER = re.compile(r"^(\d+)\*(.*)$", re.DOTALL)
_LOOPBACK_NAMES = frozenset({"localhost", "ip6-localhost", "::1", "[::1]"})
MAX_GATEWAYS = 256


class TxSpecError(ValueError):
    """A gateway spec that cannot work; the message is one line naming the spec."""


@dataclass(frozen=True)
class GatewaySpec:
    """One gateway to start (a multiplied spec gives several equal ones)."""

    spec: str
    # Shown in worker ids (``gw2@build-2``); ``None`` for a gateway on this machine.
    host: str | None
    # Not on the controller's filesystem: flow files are sent back over the channel.
    remote: bool

    @property
    def kind(self) -> str:
        parsed = _parse_xspec(self.spec)
        return "ssh" if parsed.ssh else "socket" if parsed.socket else "popen"


@dataclass(frozen=True)
class ProxySpec:
    """A proxy gateway (``--runset-px``) that ``via=ID`` gateways are started through."""

    spec: str
    id: str
    host: str | None
    remote: bool


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine's loopback interface (by literal or name)."""
    name = host.strip().lower()
    return name in _LOOPBACK_NAMES or name.startswith("127.") or name == "0:0:0:0:0:0:0:1"


def _parse_xspec(text: str) -> execnet.XSpec:
    # Deferred: loading a run-set that names no gateway (and the CLI) need no execnet.
    import execnet

    return execnet.XSpec(text)


def _xspec(text: str, option: str) -> execnet.XSpec:
    if not text or not text.strip():
        raise TxSpecError(f"{option} {text!r}: empty gateway spec")
    try:
        spec = _parse_xspec(text)
    except (ValueError, AttributeError, IndexError) as exc:
        raise TxSpecError(f"{option} {text!r}: {exc}") from None
    for key in text.split("//"):
        name = key.split("=", 1)[0]
        if name.startswith("env:"):
            if len(name) == 4:
                raise TxSpecError(f"{option} {text!r}: 'env:' needs a variable name")
            continue
        if name == "id" and option != "--runset-px":
            raise TxSpecError(
                f"{option} {text!r}: 'id' is chosen by pytest-runset (gwN); remove it"
            )
        if name not in _KNOWN_KEYS and name != "id":
            raise TxSpecError(f"{option} {text!r}: unknown key {name!r}")
    kinds = [kind for kind in ("popen", "ssh", "socket") if getattr(spec, kind)]
    if len(kinds) != 1:
        raise TxSpecError(
            f"{option} {text!r}: needs exactly one of popen, ssh=HOST, socket=HOST:PORT"
        )
    ssh: object = spec.ssh  # execnet types these as str, but a bare key gives True
    socket: object = spec.socket
    if ssh is True or (isinstance(ssh, str) and not ssh.strip()):
        raise TxSpecError(f"{option} {text!r}: ssh needs a host (ssh=HOST)")
    if socket is True and not spec.installvia:
        raise TxSpecError(
            f"{option} {text!r}: socket needs HOST:PORT, or installvia=ID to start a server"
        )
    if isinstance(spec.socket, str):
        host, sep, port = spec.socket.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise TxSpecError(f"{option} {text!r}: socket address must be HOST:PORT")
    if spec.socket and spec.python:
        raise TxSpecError(f"{option} {text!r}: execnet socket gateways cannot take python=")
    if spec.via and spec.socket:
        raise TxSpecError(f"{option} {text!r}: via= works with popen and ssh (use installvia=)")
    if spec.installvia and not spec.socket:
        raise TxSpecError(f"{option} {text!r}: installvia= works with socket only")
    for flag in ("via", "installvia"):
        if getattr(spec, flag) is True:  # a bare ``via`` without an id
            raise TxSpecError(f"{option} {text!r}: {flag}= needs a proxy id")
    return spec


def _own_host(spec: execnet.XSpec) -> tuple[str | None, bool]:
    """Host shown for a spec and whether it is off this machine (ignoring via chains)."""
    if spec.ssh:
        target = str(spec.ssh).split()[-1]
        return target.rpartition("@")[2], True
    if isinstance(spec.socket, str):
        host = spec.socket.rpartition(":")[0]
        return host, True
    return None, False


def parse_proxies(values: list[str]) -> dict[str, ProxySpec]:
    """``--runset-px`` specs by id (``//id=NAME``, else ``px0``, ``px1`` ...)."""
    proxies: dict[str, ProxySpec] = {}
    for index, text in enumerate(values):
        spec = _xspec(text, "--runset-px")
        if spec.via or spec.installvia:
            raise TxSpecError(f"--runset-px {text!r}: a proxy cannot itself go via another")
        ident = str(spec.id) if spec.id else f"px{index}"
        if ident in proxies:
            raise TxSpecError(f"--runset-px {text!r}: proxy id {ident!r} given twice")
        full = text if spec.id else f"{text}//id={ident}"
        host, remote = _own_host(spec)
        proxies[ident] = ProxySpec(spec=full, id=ident, host=host, remote=remote)
    return proxies


def parse_tx(
    values: list[str], proxies: dict[str, ProxySpec] | None, *, source: str
) -> list[GatewaySpec]:
    """Expand ``N*spec`` and check every spec; ``source`` names the option or TOML key.

    ``proxies=None`` checks the form only (a run-set file cannot know the command line's
    ``--runset-px`` ids).
    """
    gateways: list[GatewaySpec] = []
    for text in values:
        count = 1
        body = text.strip()
        match = _MULTIPLIER.match(body)
        if match:
            count = int(match.group(1))
            body = match.group(2)
            if count < 1:
                raise TxSpecError(f"{source} {text!r}: the multiplier must be at least 1")
        spec = _xspec(body, source)
        host, remote = _own_host(spec)
        through = spec.via or spec.installvia
        if through and proxies is not None:
            proxy = proxies.get(str(through))
            if proxy is None:
                known = ", ".join(sorted(proxies)) or "none given"
                raise TxSpecError(
                    f"{source} {text!r}: no --runset-px gateway with id {through!r} ({known})"
                )
            if spec.via and spec.popen:
                host, remote = proxy.host, proxy.remote
            elif spec.via:
                pass  # ssh started from the proxy's host: the ssh target is the host
            else:
                # execnet starts the socket server through the proxy bound to loopback and
                # connects to it there: the gateway lives on the proxy's host.
                host, remote = proxy.host or "localhost", True
        gateways.extend(GatewaySpec(spec=body, host=host, remote=remote) for _ in range(count))
        if len(gateways) > MAX_GATEWAYS:
            raise TxSpecError(f"{source}: more than {MAX_GATEWAYS} gateways")
    return gateways


def non_loopback_sockets(gateways: list[GatewaySpec]) -> list[str]:
    """Specs of socket gateways that reach beyond this machine (unauthenticated code runs)."""
    found: list[str] = []
    for gateway in gateways:
        if gateway.kind == "socket" and gateway.host is not None and not is_loopback(gateway.host):
            found.append(gateway.spec)
    return found


__all__ = [
    "GatewaySpec",
    "ProxySpec",
    "TxSpecError",
    "is_loopback",
    "non_loopback_sockets",
    "parse_proxies",
    "parse_tx",
]
