"""Leases held across machines: personas, pools and tag-limit slots on the coordinator.

With a coordinator, :class:`ClusterLeaser` takes the leases a flow needs that other machines
must respect (its persona or a pool member, one slot of each limited tag) as Redis keys
instead of lock files; ports stay per host (a port is a local thing), leased by the file locks
of :class:`~.leases.Leaser` as before.

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

from pytest_runset.resources.coordinator import KEY_TTL_S, Coordinator, key, redis_errors
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
