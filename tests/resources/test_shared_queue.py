"""The shared queue on a real redis-server: seeding, exactly-once pulls, fencing, reclaims."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from redis_support import RedisServer, redis_server

from pytest_runset.resources.coordinator import (
    KEY_TTL_S,
    Coordinator,
    CoordinatorError,
    connect,
    parse_url,
)
from pytest_runset.resources.shared_queue import (
    EarlierAttempt,
    QueueMismatch,
    SharedQueue,
    check_name,
)

__all__ = ["redis_server"]


@pytest.fixture
def pair(redis_server: RedisServer) -> Iterator[tuple[SharedQueue, SharedQueue]]:
    coordinators: list[Coordinator] = [
        connect(parse_url(redis_server.url), ttl=1.0) for _ in range(2)
    ]
    yield SharedQueue(coordinators[0], "ci-42"), SharedQueue(coordinators[1], "ci-42")
    for coordinator in coordinators:
        coordinator.close()


def test_the_first_session_seeds_and_the_next_joins_the_same_digest(
    pair: tuple[SharedQueue, SharedQueue],
) -> None:
    first, second = pair
    assert first.seed("d1", ["a", "b", "c"], "suite") == ("seeded", 3)
    assert second.seed("d1", ["c", "b", "a"], "suite") == ("joined", 3)
    # The joiner's order does not matter: the queue keeps the seed's.
    assert first.pull() is not None
    assert second.pull() is not None
    assert first.progress()["running"] == 2


def test_another_digest_is_refused(pair: tuple[SharedQueue, SharedQueue]) -> None:
    first, second = pair
    first.seed("d1", ["a"], "suite")
    with pytest.raises(QueueMismatch, match="holds another run-set or selection"):
        second.seed("d2", ["a"], "suite")


def test_each_flow_is_pulled_by_exactly_one_session(
    pair: tuple[SharedQueue, SharedQueue],
) -> None:
    first, second = pair
    keys = [f"k{i}" for i in range(50)]
    first.seed("d", keys, "suite")
    second.seed("d", keys, "suite")
    pulled: list[str] = []
    while True:
        got = [queue.pull() for queue in pair]
        if not any(got):
            break
        pulled += [held["key"] for held in got if held]
    assert sorted(pulled) == sorted(keys)
    assert first.progress()["running"] == 50


def test_only_the_holder_with_its_token_ends_a_flow(
    pair: tuple[SharedQueue, SharedQueue],
) -> None:
    first, second = pair
    first.seed("d", ["a"], "suite")
    held = first.pull()
    assert held is not None
    assert held["session"] == first.coordinator.session
    forged = {**held, "token": held["token"] + 1}
    assert not second.finish(forged, "passed", 1)  # type: ignore[arg-type]
    assert first.finish(held, "passed", 1)
    assert not first.finish(held, "passed", 1)  # once
    progress = first.progress()
    assert (progress["done"], progress["statuses"], progress["ended"]) == (1, {"passed": 1}, True)


def test_a_retry_goes_back_to_the_front(pair: tuple[SharedQueue, SharedQueue]) -> None:
    first, second = pair
    first.seed("d", ["a", "b"], "suite")
    held = first.pull()
    assert held is not None
    assert first.put_back(held, 2)
    again = second.pull()
    assert again is not None
    assert (again["key"], again["attempt"]) == ("a", 2)


def test_a_delayed_retry_is_not_pulled_before_its_delay(
    pair: tuple[SharedQueue, SharedQueue],
) -> None:
    first, second = pair
    first.seed("d", ["a", "b"], "suite")
    held = first.pull()
    assert held is not None
    put_at = time.monotonic()
    assert first.put_back(held, 2, delay_s=1.0)
    # Waiting, not ended: a retry sitting out its delay keeps the queue open.
    assert (first.progress()["pending"], first.ended()) == (2, False)
    other = second.pull()
    assert other is not None
    assert other["key"] == "b"
    assert second.pull() is None  # the retry is not due yet
    deadline = time.monotonic() + 10
    retry = second.pull()
    while retry is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
        retry = second.pull()
    assert time.monotonic() - put_at >= 0.95
    assert (retry["key"], retry["attempt"]) == ("a", 2)


def test_a_retry_carries_its_earlier_attempts_through_losses(
    pair: tuple[SharedQueue, SharedQueue],
) -> None:
    """The attempts a retry had travel with it, also when its next holder is lost."""
    first, second = pair
    first.seed("d", ["a"], "suite")
    first.beat()
    second.beat()
    held = first.pull()
    assert held is not None
    assert "earlier" not in held
    earlier = [
        EarlierAttempt(
            attempt=1, status="failed", duration_s=0.5, exit_code=1, started_at=1.5,
            dir="a", host="h1", session="s1",
        )
    ]  # fmt: skip
    assert first.put_back(held, 2, earlier=earlier)
    again = second.pull()
    assert again is not None
    assert again["earlier"] == earlier
    second.leave()  # lost while it holds the retry
    assert first.reclaim() == 1
    back = first.pull()
    assert back is not None
    assert (back["attempt"], back["requeues"], back["earlier"]) == (2, 1, earlier)


def test_a_lost_session_gives_its_flows_back_with_a_count(
    pair: tuple[SharedQueue, SharedQueue],
) -> None:
    first, second = pair
    first.seed("d", ["a", "b"], "suite")
    first.beat()
    second.beat()
    held = first.pull()
    assert held is not None
    assert second.reclaim() == 0  # alive
    first.leave()  # its heartbeat key is gone, as after a SIGKILL and one TTL
    assert second.reclaim() == 1
    back = second.pull()
    assert back is not None
    assert (back["key"], back["requeues"], back["lost_host"]) == ("a", 1, held["host"])
    # The lost holder finds out when it tries to end the flow.
    assert not first.finish(held, "passed", 1)


def test_a_session_that_stops_beating_expires(
    redis_server: RedisServer, pair: tuple[SharedQueue, SharedQueue]
) -> None:
    first, second = pair
    first.seed("d", ["a"], "suite")
    assert first.pull() is not None
    deadline = time.monotonic() + 5
    while not second.reclaim():
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_keys_are_namespaced_expire_within_a_day_and_hold_no_text(
    redis_server: RedisServer, pair: tuple[SharedQueue, SharedQueue]
) -> None:
    first, _ = pair
    first.seed("d", ["tests/run-set.toml::login"], "suite")
    held = first.pull()
    assert held is not None
    first.finish(held, "failed", 2)
    client = redis_server.client()
    for name in client.keys("*"):
        assert name.startswith("runset:queue:ci-42:")
        assert 0 < client.ttl(name) <= KEY_TTL_S
    done = json.loads(client.hget("runset:queue:ci-42:done", "tests/run-set.toml::login"))
    assert set(done) == {"status", "attempts", "session", "host"}


@pytest.mark.parametrize("name", ["", "a b", "x" * 200, "../etc"])
def test_a_queue_name_is_checked(name: str) -> None:
    with pytest.raises(CoordinatorError, match="--runset-queue"):
        check_name(name)
