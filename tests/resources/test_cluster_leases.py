"""Leases across machines: personas and tag limits on a real redis-server, fenced."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis_support import RedisServer, redis_server

from pytest_runset.resources.cluster_leases import ClusterLeaser, lease_key
from pytest_runset.resources.coordinator import KEY_TTL_S, Coordinator, connect, parse_url
from pytest_runset.resources.leases import Lease, names_of

__all__ = ["redis_server"]


@pytest.fixture
def sessions(redis_server: RedisServer, tmp_path: Path) -> Iterator[list[ClusterLeaser]]:
    """Two sessions (as on two machines: lock directories of their own) and their leasers."""
    coordinators: list[Coordinator] = []
    leasers = []
    for name in ("a", "b"):
        lock_dir = tmp_path / name
        lock_dir.mkdir(mode=0o700)
        coordinator = connect(parse_url(redis_server.url), ttl=1.0)
        coordinators.append(coordinator)
        leasers.append(ClusterLeaser(lock_dir, coordinator))
    yield leasers
    for coordinator in coordinators:
        coordinator.close()


def test_a_persona_leased_by_one_session_is_busy_for_another(
    sessions: list[ClusterLeaser],
) -> None:
    first, second = sessions
    mine, theirs = Lease(), Lease()
    assert first.take_persona(["alice"], mine)
    assert mine.persona == "alice"
    assert names_of(mine) == ["persona-alice"]
    assert not second.take_persona(["alice"], theirs)
    # A pool spreads over its free members.
    assert second.take_persona(["alice", "bob"], theirs)
    assert theirs.persona == "bob"
    mine.release()
    assert mine.lost == []
    assert second.take_persona(["alice"], Lease())


def test_tag_limits_count_flows_of_every_session(sessions: list[ClusterLeaser]) -> None:
    first, second = sessions
    assert first.take_limit("browser", 2, Lease())
    assert second.take_limit("browser", 2, Lease())
    assert not first.take_limit("browser", 2, Lease())
    assert not second.take_limit("browser", 2, Lease())


def test_a_held_lease_outlives_its_ttl_through_the_heartbeat(
    sessions: list[ClusterLeaser],
) -> None:
    first, second = sessions
    lease = Lease()
    assert first.take_persona(["alice"], lease)
    time.sleep(2.5)  # the TTL is 1 s: only the renewals keep it
    assert not second.take_persona(["alice"], Lease())
    lease.release()
    assert lease.lost == []


def test_a_lease_dies_with_its_holder(redis_server: RedisServer, tmp_path: Path) -> None:
    coordinator = connect(parse_url(redis_server.url), ttl=0.5)
    leaser = ClusterLeaser(tmp_path, coordinator)
    lease = Lease()
    assert leaser.take_persona(["alice"], lease)
    coordinator.close()  # the holder stops beating, as a SIGKILLed session does
    other = connect(parse_url(redis_server.url), ttl=0.5)
    try:
        taker = ClusterLeaser(tmp_path, other)
        deadline = time.monotonic() + 5
        while not taker.take_persona(["alice"], Lease()):
            assert time.monotonic() < deadline, "the dead holder's lease never expired"
            time.sleep(0.05)
    finally:
        other.close()


def test_a_holder_that_lost_its_lease_finds_out_and_cannot_release_the_new_one(
    sessions: list[ClusterLeaser], redis_server: RedisServer
) -> None:
    first, second = sessions
    lease = Lease()
    assert first.take_persona(["alice"], lease)
    held = lease.locks[0]
    client = redis_server.client()
    client.delete(lease_key("persona-alice"))  # expired (a stalled machine)
    taken = Lease()
    assert second.take_persona(["alice"], taken)
    lease.release()
    assert len(lease.lost) == 1
    assert "lease on persona 'alice' lost" in lease.lost[0]
    assert f"fencing token {held.token}" in lease.lost[0]  # type: ignore[attr-defined]
    # The late release left the new holder's lease alone.
    assert client.get(lease_key("persona-alice")).startswith(second.holder)
    taken.release()
    assert taken.lost == []


def test_every_key_expires_within_a_day_and_holds_no_secret(
    sessions: list[ClusterLeaser], redis_server: RedisServer
) -> None:
    first, _ = sessions
    assert first.take_persona(["alice"], Lease())
    client = redis_server.client()
    for name in client.keys("*"):
        assert name.startswith("runset:lease:")
        assert 0 < client.ttl(name) <= KEY_TTL_S
    assert client.get(lease_key("persona-alice")).startswith(first.holder + "#")
