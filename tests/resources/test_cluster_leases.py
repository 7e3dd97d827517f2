"""Leases across machines: personas and tag limits on a real redis-server, fenced."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis_support import RedisServer, redis_server

from pytest_runset.resources.cluster_leases import (
    GATE_WAITS,
    ClusterGate,
    ClusterLeaser,
    gate_key,
    lease_key,
)
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


@pytest.fixture
def gates(redis_server: RedisServer) -> Iterator[list[ClusterGate]]:
    """The cluster-wide gate as two sessions see it."""
    coordinators = [connect(parse_url(redis_server.url), ttl=1.0) for _ in range(2)]
    yield [ClusterGate(coordinator) for coordinator in coordinators]
    for coordinator in coordinators:
        coordinator.close()


def test_an_exclusive_flow_waits_for_every_session_and_then_runs_alone(
    gates: list[ClusterGate],
) -> None:
    first, second = gates
    running, _ = first.take(exclusive=False)
    assert running is not None
    # The exclusive flow waits for the other session's flow, and while it waits no new
    # flow starts anywhere (its own session's included): the cluster drains.
    assert second.take(exclusive=True) == (None, GATE_WAITS["running"])
    assert first.take(exclusive=False) == (None, GATE_WAITS["intent"])
    assert second.take(exclusive=False) == (None, GATE_WAITS["intent"])
    assert running.release() is None
    alone, _ = second.take(exclusive=True)
    assert alone is not None
    assert alone.token
    assert first.take(exclusive=False) == (None, GATE_WAITS["exclusive"])
    assert first.take(exclusive=True) == (None, GATE_WAITS["exclusive"])
    time.sleep(2.5)  # the TTL is 1 s: only the heartbeat keeps it
    assert first.take(exclusive=False) == (None, GATE_WAITS["exclusive"])
    assert alone.release() is None
    after, _ = first.take(exclusive=False)
    assert after is not None
    assert after.release() is None


def test_a_dead_sessions_flows_stop_holding_the_gate(
    redis_server: RedisServer, gates: list[ClusterGate]
) -> None:
    _, survivor = gates
    doomed = connect(parse_url(redis_server.url), ttl=0.5)
    held, _ = ClusterGate(doomed).take(exclusive=False)
    assert held is not None
    doomed.close()  # stops beating, as a SIGKILLed session does
    deadline = time.monotonic() + 5
    while survivor.take(exclusive=True)[0] is None:
        assert time.monotonic() < deadline, "the dead session's hold never lapsed"
        time.sleep(0.05)


def test_a_flow_whose_hold_lapsed_finds_out(
    redis_server: RedisServer, gates: list[ClusterGate]
) -> None:
    first, second = gates
    held, _ = first.take(exclusive=False)
    assert held is not None
    redis_server.client().delete(gate_key("shared"))  # lapsed (a stalled machine)
    alone, _ = second.take(exclusive=True)
    assert alone is not None
    warning = held.release()
    assert warning is not None
    assert "exclusive flow of another session" in warning
    assert alone.release() is None
