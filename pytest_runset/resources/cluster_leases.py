"""Leases held across machines: personas, pools and tag-limit slots on the coordinator.

With a coordinator, :class:`ClusterLeaser` takes the leases a flow needs that other machines
must respect (its persona or a pool member, one slot of each limited tag) as Redis keys
instead of lock files; ports stay per host (a port is a local thing), leased by the file locks
of :class:`~.leases.Leaser` as before. :class:`ClusterGate` makes ``exclusive`` flows
exclusive across sessions: every flow holds a share of one gate, an exclusive flow all of it.

The invariants, and where each is kept:

- *A lease dies with its holder.* Each key carries a TTL; the session's heartbeat thread
  renews every key it holds (:meth:`ClusterLeaser.renew`). A SIGKILLed session stops renewing
  and its leases expire within one TTL.
- *Released when the flow's processes are gone.* The run loop releases a lease when the
  attempt's result arrives, which the worker sends only after it swept the flow's processes.
- *Fenced.* Each take increments a counter of that lease; the key's value is
  ``<session>#<token>``. Renewal and release are compare-and-act scripts on that value, so a
  holder whose lease expired (and was taken by another session meanwhile) cannot renew or
  release someone else's lease; it finds out, and its flow is reported with a warning.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from pathlib import Path

from pytest_runset.resources.coordinator import (
    KEY_TTL_S,
    SERVER_NOW,
    Coordinator,
    key,
    redis_errors,
)
from pytest_runset.resources.leases import Lease, Leaser

# KEYS[1] the lease, KEYS[2] its fencing counter; ARGV: holder, TTL (ms), counter TTL (s).
_TAKE = """
if redis.call('exists', KEYS[1]) == 1 then return 0 end
local token = redis.call('incr', KEYS[2])
redis.call('expire', KEYS[2], ARGV[3])
redis.call('set', KEYS[1], ARGV[1] .. '#' .. token, 'PX', ARGV[2])
return token
"""
# KEYS[1] the lease; ARGV: the value it must still have, TTL (ms).
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


def lease_key(name: str) -> str:
    """The coordinator's key of lease ``name`` (``persona-alice``, ``limit-browser-0``)."""
    return key("lease", name)


@dataclass
class ClusterLock:
    """One lease held on the coordinator, as a :class:`~.leases.Lease` holds a file lock."""

    leaser: ClusterLeaser
    name: str
    value: str
    # Set once the holder found out it lost the lease (renewal refused, or release).
    lost: str | None = None

    @property
    def lock_file(self) -> str:
        # names_of() shows a lock by its file's stem: the lease's name.
        return f"{self.name}.cluster"

    @property
    def token(self) -> int:
        return int(self.value.rsplit("#", 1)[1])

    def release(self, force: bool = False) -> str | None:
        """Give the lease back; the warning to report when it had been lost, else ``None``."""
        return self.leaser.release(self)


def _describe(name: str) -> str:
    kind, _, rest = name.partition("-")
    if kind == "persona":
        return f"persona {rest!r}"
    tag, _, slot = rest.rpartition("-")
    return f"a slot of limit {tag!r} (#{slot})"


class ClusterLeaser(Leaser):
    """A :class:`~.leases.Leaser` whose personas and tag limits hold across machines."""

    def __init__(
        self, lock_dir: Path, coordinator: Coordinator, rng: random.Random | None = None
    ) -> None:
        super().__init__(lock_dir, rng)
        self.coordinator = coordinator
        client = coordinator.client
        self._take = client.register_script(_TAKE)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        # What this session holds, by name: the heartbeat thread renews it.
        self._held: dict[str, ClusterLock] = {}
        self._guard = threading.Lock()
        coordinator.add_renewer(self.renew)

    @property
    def holder(self) -> str:
        return f"{self.coordinator.host}/{self.coordinator.session}"

    def take(self, name: str, lease: Lease) -> bool:
        """Lease ``name`` on the coordinator if no session holds it.

        A coordinator that does not answer leases nothing: the flow waits, and the run loop
        hears of the problem through ``coordinator.problem``.
        """
        coordinator = self.coordinator
        try:
            token = int(
                self._take(
                    keys=[lease_key(name), lease_key(name) + ":fence"],
                    args=[self.holder, coordinator.ttl_ms, KEY_TTL_S],
                )
            )
        except redis_errors() as exc:
            coordinator.problem = coordinator.describe(exc)
            return False
        if not token:
            return False
        held = ClusterLock(self, name, f"{self.holder}#{token}")
        with self._guard:
            self._held[name] = held
        lease.locks.append(held)
        return True

    def renew(self) -> None:
        """Extend every lease this session holds (the heartbeat thread); a lease found gone
        or taken by someone else is marked lost. Raises what redis-py raises."""
        with self._guard:
            held = list(self._held.values())
        for lock in held:
            if lock.lost is not None:
                continue
            renewed = self._renew(
                keys=[lease_key(lock.name)], args=[lock.value, self.coordinator.ttl_ms]
            )
            if not int(renewed):
                lock.lost = _lost_message(lock, "its heartbeat lapsed")

    def release(self, lock: ClusterLock) -> str | None:
        with self._guard:
            self._held.pop(lock.name, None)
        if lock.lost is not None:
            return lock.lost
        try:
            released = int(self._release(keys=[lease_key(lock.name)], args=[lock.value]))
        except redis_errors() as exc:
            self.coordinator.problem = self.coordinator.describe(exc)
            # Unreachable: the key expires with the TTL; nothing says it was lost.
            return None
        if not released:
            lock.lost = _lost_message(lock, "it had expired")
        return lock.lost

    def held(self) -> list[str]:
        with self._guard:
            return sorted(self._held)


def _lost_message(lock: ClusterLock, why: str) -> str:
    return (
        f"lease on {_describe(lock.name)} lost on the coordinator ({why}, fencing token "
        f"{lock.token}): another session may have used it while this flow ran"
    )


# -- exclusive flows across machines ---------------------------------------------------------
# A readers-writer lock on the coordinator. Every flow of every session holds a member of the
# ``shared`` sorted set while it runs (scored by its expiry on the server's clock, so a dead
# holder's member lapses without a clock of any other machine being trusted); an exclusive
# flow holds the ``exclusive`` key, taken only when no member is live. While an exclusive flow
# waits, its ``intent`` key refuses new members, so the running flows drain and it cannot
# starve behind a busy cluster.
# KEYS: shared, exclusive, intent; ARGV: member, TTL (ms), key TTL (s).
_GATE_SHARED = (
    SERVER_NOW
    + """
if redis.call('exists', KEYS[2]) == 1 then return 'exclusive' end
if redis.call('exists', KEYS[3]) == 1 then return 'intent' end
redis.call('zadd', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('expire', KEYS[1], ARGV[3])
return 'ok'
"""
)
# KEYS: shared, exclusive, intent, fence; ARGV: holder, TTL (ms), key TTL (s).
_GATE_EXCLUSIVE = (
    SERVER_NOW
    + """
if redis.call('exists', KEYS[2]) == 1 then return {0, 'exclusive'} end
local intent = redis.call('get', KEYS[3])
if intent and intent ~= ARGV[1] then return {0, 'intent'} end
redis.call('zremrangebyscore', KEYS[1], '-inf', now)
if redis.call('zcard', KEYS[1]) > 0 then
  redis.call('set', KEYS[3], ARGV[1], 'PX', ARGV[2])
  return {0, 'running'}
end
redis.call('del', KEYS[3])
local token = redis.call('incr', KEYS[4])
redis.call('expire', KEYS[4], ARGV[3])
redis.call('set', KEYS[2], ARGV[1] .. '#' .. token, 'PX', ARGV[2])
return {token, ''}
"""
)
# KEYS: shared; ARGV: TTL (ms), then the members to renew. Returns the members found gone.
_GATE_RENEW = (
    SERVER_NOW
    + """
local gone = {}
for i = 2, #ARGV do
  if redis.call('zscore', KEYS[1], ARGV[i]) then
    redis.call('zadd', KEYS[1], 'XX', now + tonumber(ARGV[1]), ARGV[i])
  else
    table.insert(gone, ARGV[i])
  end
end
return gone
"""
)

GATE_WAITS = {
    "exclusive": "an exclusive flow runs in another session",
    "intent": "an exclusive flow of another session waits for the cluster to drain",
    "running": "flows of other sessions still run (this exclusive flow waits for them)",
}


def gate_key(part: str) -> str:
    return key("gate", part)


@dataclass
class GateLock:
    """This flow's hold on the cluster-wide gate (shared, or exclusive when ``token``)."""

    gate: ClusterGate
    member: str
    token: int = 0
    lost: str | None = None

    @property
    def lock_file(self) -> str:
        return "exclusive.cluster" if self.token else "shared.cluster"

    def release(self, force: bool = False) -> str | None:
        return self.gate.release(self)


class ClusterGate:
    """Exclusive flows across every session of a coordinator (see the scripts above).

    :meth:`take` never waits: it holds the gate or says what the flow waits for. The
    heartbeat renews what is held; a hold found gone is a warning on the flow's entry, as for
    a lost lease.
    """

    def __init__(self, coordinator: Coordinator) -> None:
        self.coordinator = coordinator
        client = coordinator.client
        self._shared = client.register_script(_GATE_SHARED)
        self._exclusive = client.register_script(_GATE_EXCLUSIVE)
        self._renew_shared = client.register_script(_GATE_RENEW)
        self._renew_exclusive = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._held: dict[str, GateLock] = {}
        self._guard = threading.Lock()
        self._count = 0
        coordinator.add_renewer(self.renew)

    @property
    def holder(self) -> str:
        return f"{self.coordinator.host}/{self.coordinator.session}"

    def take(self, exclusive: bool) -> tuple[GateLock | None, str | None]:
        """``(lock, None)`` when the flow may start, else ``(None, what it waits for)``.
        Raises what redis-py raises."""
        ttl = self.coordinator.ttl_ms
        keys = [gate_key("shared"), gate_key("exclusive"), gate_key("intent")]
        if exclusive:
            token, why = self._exclusive(
                keys=[*keys, gate_key("fence")], args=[self.holder, ttl, KEY_TTL_S]
            )
            if not int(token):
                return None, GATE_WAITS[str(why)]
            lock = GateLock(self, f"{self.holder}#{int(token)}", int(token))
        else:
            with self._guard:
                self._count += 1
                member = f"{self.holder}#{self._count}"
            why = str(self._shared(keys=keys, args=[member, ttl, KEY_TTL_S]))
            if why != "ok":
                return None, GATE_WAITS[why]
            lock = GateLock(self, member)
        with self._guard:
            self._held[lock.member] = lock
        return lock, None

    def renew(self) -> None:
        """Extend every hold of this session (the heartbeat thread); raises what redis-py
        raises."""
        with self._guard:
            held = [lock for lock in self._held.values() if lock.lost is None]
        shared = [lock.member for lock in held if not lock.token]
        if shared:
            gone = self._renew_shared(
                keys=[gate_key("shared")], args=[self.coordinator.ttl_ms, *shared]
            )
            for lock in held:
                if lock.member in gone:
                    lock.lost = _gate_lost(lock)
        for lock in held:
            if lock.token and not int(
                self._renew_exclusive(
                    keys=[gate_key("exclusive")], args=[lock.member, self.coordinator.ttl_ms]
                )
            ):
                lock.lost = _gate_lost(lock)

    def release(self, lock: GateLock) -> str | None:
        with self._guard:
            self._held.pop(lock.member, None)
        if lock.lost is not None:
            return lock.lost
        try:
            if lock.token:
                gone = not int(self._release(keys=[gate_key("exclusive")], args=[lock.member]))
            else:
                gone = not int(self.coordinator.client.zrem(gate_key("shared"), lock.member))
        except redis_errors() as exc:
            self.coordinator.problem = self.coordinator.describe(exc)
            return None
        if gone:
            lock.lost = _gate_lost(lock)
        return lock.lost


def _gate_lost(lock: GateLock) -> str:
    if lock.token:
        return (
            "the cluster-wide exclusive lease lapsed on the coordinator (fencing token "
            f"{lock.token}): flows of other sessions may have run next to this exclusive flow"
        )
    return (
        "this flow's hold on the cluster-wide gate lapsed on the coordinator: an exclusive "
        "flow of another session may have run next to it"
    )
