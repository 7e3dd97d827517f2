"""The coordinator of runs across machines: a Redis server several sessions share.

Connection, URL and security live here; what is kept in Redis lives in
:mod:`.cluster_leases` (personas, pools, tag limits) and :mod:`.shared_queue` (the queue).
redis-py is an optional dependency (``pytest-runset[redis]``), imported only when a session
names a coordinator: a session without one never pays for it.

Security, as the design asks: the password comes from the URL or from
``RUNSET_COORDINATOR_PASSWORD`` and is masked in every message; ``rediss://`` is TLS; a URL
that is neither loopback nor TLS earns a warning (the queue and lease holders would cross the
network in clear). Every key is namespaced under ``runset:`` and expires after a day, and
nothing secret is written: flow keys, statuses, host names and counters only.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from pytest_runset.gateway.masking import MASK, mask_text

if TYPE_CHECKING:
    import redis

URL_ENV = "RUNSET_COORDINATOR"
PASSWORD_ENV = "RUNSET_COORDINATOR_PASSWORD"
# Seconds a session's heartbeat (and every lease it holds) outlives its last renewal. Short
# enough that a dead runner's flows go back to the queue soon, long enough to ride out a
# stalled machine; tests shorten it.
TTL_ENV = "RUNSET_COORDINATOR_TTL"
DEFAULT_TTL_S = 15.0
# Every key the coordinator writes expires after a day, whatever happens to the sessions.
KEY_TTL_S = 86_400
PREFIX = "runset"
# How long one Redis call may block the session's main thread.
SOCKET_TIMEOUT_S = 5.0
# The start of a Lua script that needs the time: ``now`` in ms on the *server's* clock, the one
# clock every session agrees on (a machine's own clock may be off by seconds). Writes after
# TIME need effects replication, the default from Redis 5 on (asked for explicitly before).
SERVER_NOW = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('time')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""


class CoordinatorError(Exception):
    """The coordinator cannot be used (unreachable, extra missing, bad URL); one line."""


@dataclass(frozen=True)
class CoordinatorURL:
    """A checked coordinator URL; ``shown`` is what messages may print (no password)."""

    raw: str
    host: str
    port: int
    tls: bool
    has_password: bool
    shown: str

    @property
    def loopback(self) -> bool:
        if self.host == "localhost" or self.host.startswith("/"):
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def warning(self) -> str | None:
        """The warning a URL earns when it is neither loopback nor TLS."""
        if self.loopback or self.tls:
            return None
        return (
            f"runset: coordinator {self.shown} is neither loopback nor TLS: lease holders and "
            "the queue cross the network in clear (use rediss://)"
        )


def parse_url(raw: str, source: str = "--runset-coordinator") -> CoordinatorURL:
    """Check a ``redis://`` / ``rediss://`` URL; a :class:`CoordinatorError` names the problem."""
    try:
        parts = urlsplit(raw.strip())
        port = parts.port or 6379
    except ValueError as exc:
        raise CoordinatorError(f"{source}: not a redis URL ({exc})") from None
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise CoordinatorError(f"{source} {_shown(raw)}: expected a redis:// or rediss:// URL")
    host = parts.hostname or ("/" + parts.path.lstrip("/") if parts.scheme == "unix" else "")
    if not host:
        raise CoordinatorError(f"{source} {_shown(raw)}: the URL names no host")
    return CoordinatorURL(
        raw=raw.strip(),
        host=host,
        port=port,
        tls=parts.scheme == "rediss",
        has_password=bool(parts.password),
        shown=_shown(raw),
    )


def _shown(raw: str) -> str:
    """``raw`` with its password (if any) replaced by the mask."""
    try:
        parts = urlsplit(raw.strip())
        password = parts.password
    except ValueError:
        return "<unparsable URL>"
    if not password:
        return raw.strip()
    return raw.strip().replace(f":{password}@", f":{MASK}@", 1)


def key(*parts: str) -> str:
    """A namespaced key: ``runset:<part>:<part>...``."""
    return ":".join((PREFIX, *parts))


def heartbeat_ttl() -> float:
    raw = os.environ.get(TTL_ENV, "")
    try:
        value = float(raw) if raw else DEFAULT_TTL_S
    except ValueError:
        raise CoordinatorError(f"{TTL_ENV}={raw!r}: expected seconds") from None
    if not 0.5 <= value <= KEY_TTL_S:
        raise CoordinatorError(f"{TTL_ENV}={raw!r}: expected 0.5 to {KEY_TTL_S} seconds")
    return value


@dataclass
class Coordinator:
    """A connection to the coordinator and this session's identity on it.

    ``client`` is a redis-py client (thread-safe: the heartbeat thread shares it). The
    heartbeat renews whatever registered a renewer; a renewal that fails leaves ``problem``
    set for the main loop, which decides what to do (the heartbeat thread never raises).
    """

    url: CoordinatorURL
    client: Any
    ttl: float
    host: str = field(default_factory=socket.gethostname)
    session: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    problem: str | None = None
    _renewers: list[Callable[[], None]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _password: str = ""

    @property
    def ttl_ms(self) -> int:
        return max(1, int(self.ttl * 1000))

    def describe(self, exc: BaseException) -> str:
        """One line for a Redis failure, the password masked."""
        text = " ".join(str(exc).split()) or type(exc).__name__
        if self._password:
            text = mask_text(text, [self._password])
        return f"coordinator {self.url.shown} unreachable ({text})"

    def add_renewer(self, renew: Callable[[], None]) -> None:
        """Call ``renew`` at every heartbeat (on the heartbeat thread)."""
        self._renewers.append(renew)
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._beat, name="runset-coordinator-heartbeat", daemon=True
            )
            self._thread.start()

    def _beat(self) -> None:
        # A third of the TTL: two renewals may fail (a blip) before anything expires.
        while not self._stop.wait(self.ttl / 3):
            for renew in list(self._renewers):
                try:
                    renew()
                except Exception as exc:  # the thread must not die: the loop hears of it
                    self.problem = self.describe(exc)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=SOCKET_TIMEOUT_S + 1)
        try:
            self.client.close()
        except Exception:  # closing a dead connection must not mask the real outcome
            pass


def connect(url: CoordinatorURL, ttl: float | None = None) -> Coordinator:
    """A checked connection (it answered PING); :class:`CoordinatorError` otherwise."""
    try:
        import redis
    except ImportError:
        raise CoordinatorError(
            f"coordinator {url.shown}: redis-py is not installed "
            "(pip install redis, or the redis extra: pip install -e '.[redis]')"
        ) from None
    password = "" if url.has_password else os.environ.get(PASSWORD_ENV, "")
    coordinator = Coordinator(url=url, client=None, ttl=heartbeat_ttl() if ttl is None else ttl)
    coordinator._password = password or unquote(urlsplit(url.raw).password or "")
    try:
        client: redis.Redis = redis.Redis.from_url(
            url.raw,
            password=password or None,
            socket_timeout=SOCKET_TIMEOUT_S,
            socket_connect_timeout=SOCKET_TIMEOUT_S,
            decode_responses=True,
        )
        client.ping()
    except (redis.RedisError, OSError, ValueError) as exc:
        raise CoordinatorError(coordinator.describe(exc)) from None
    coordinator.client = client
    return coordinator


def redis_errors() -> tuple[type[BaseException], ...]:
    """The exceptions a lost coordinator raises (redis-py's, and the socket's)."""
    import redis

    return (redis.RedisError, OSError)
