"""The pure side of a shared queue: seeding, how much to pull, retries handed back, the end."""

from __future__ import annotations

import pytest

from pytest_runset.engine.queue_scheduler import (
    MAX_REQUEUES,
    LostTooOften,
    QueueScheduler,
    RunIt,
    disposition,
    queue_digest,
)
from pytest_runset.engine.scheduler import Task


def test_the_keys_it_is_built_with_are_the_seed_handed_out_once() -> None:
    scheduler = QueueScheduler(["b", "a", "c"], slots=2)
    assert scheduler.seed() == ["b", "a", "c"]
    assert scheduler.pending_count == 0
    with pytest.raises(ValueError, match="seeded already"):
        scheduler.seed()


def test_nothing_is_pulled_before_the_queue_is_seeded() -> None:
    assert QueueScheduler(["a"], slots=2).wants() == 0


def test_it_pulls_one_flow_per_idle_slot_and_no_more() -> None:
    scheduler = QueueScheduler(["a", "b", "c"], slots=2)
    scheduler.seed()
    assert scheduler.wants() == 2
    scheduler.add("a")
    assert scheduler.wants() == 1
    scheduler.add("b")
    assert scheduler.wants() == 0
    assert scheduler.assignments() == [(0, Task("a")), (1, Task("b"))]
    # Both slots busy: a session does not hoard flows another session's worker could run.
    assert scheduler.wants() == 0


def test_a_flow_waiting_for_a_lease_lets_another_be_pulled_within_the_pool_size() -> None:
    scheduler = QueueScheduler(["a", "b", "c"], slots=2)
    scheduler.seed()
    scheduler.add("a")
    scheduler.assignments(ready=lambda task: "persona 'alice' busy")
    assert scheduler.wants() == 1
    scheduler.add("b")
    assert scheduler.wants() == 0


def test_a_retry_is_handed_back_not_queued_here() -> None:
    scheduler = QueueScheduler(["a"], slots=1, retries={"a": 1})
    scheduler.seed()
    scheduler.add("a")
    scheduler.assignments()
    retry = scheduler.finished(0, "failed")
    assert retry == Task("a", 2)
    assert scheduler.pending_count == 0
    # Its next attempt may come back from the queue, to this session or another.
    scheduler.add("a", 2)
    assert scheduler.assignments() == [(0, Task("a", 2))]
    assert scheduler.finished(0, "failed") is None


def test_done_only_when_the_shared_queue_ended_and_nothing_runs_or_waits_here() -> None:
    scheduler = QueueScheduler(["a"], slots=1)
    assert not scheduler.done()
    scheduler.seed()
    scheduler.add("a")
    scheduler.assignments()
    scheduler.queue_ended = True
    assert not scheduler.done()
    scheduler.finished(0, "passed")
    assert scheduler.done()


def test_an_empty_local_queue_is_not_the_end_while_other_sessions_run_flows() -> None:
    scheduler = QueueScheduler(["a"], slots=1)
    scheduler.seed()
    # A lost session's flow may still come back: wait for the shared queue's end.
    assert not scheduler.done()
    scheduler.queue_ended = True
    assert scheduler.done()


def test_a_stopped_session_pulls_nothing_and_is_done_when_its_flows_end() -> None:
    scheduler = QueueScheduler(["a", "b"], slots=2)
    scheduler.seed()
    scheduler.add("a")
    scheduler.assignments()
    scheduler.stop()
    assert scheduler.wants() == 0
    assert not scheduler.done()
    scheduler.finished(0, "passed")
    assert scheduler.done()


def test_pulling_a_flow_twice_is_refused() -> None:
    scheduler = QueueScheduler(["a"], slots=2)
    scheduler.seed()
    scheduler.add("a")
    with pytest.raises(ValueError, match="already pulled"):
        scheduler.add("a")


def test_a_flow_lost_with_its_sessions_too_often_ends_as_an_error() -> None:
    assert disposition(1, 0, "") == RunIt(1)
    assert disposition(2, MAX_REQUEUES, "ci-7") == RunIt(2)
    lost = disposition(1, MAX_REQUEUES + 1, "ci-7")
    assert isinstance(lost, LostTooOften)
    assert lost.message.startswith("session on ci-7 lost")


def test_the_digest_ignores_order_and_sees_selection_and_file() -> None:
    base = queue_digest([("s", "sha1")], ["x::a", "x::b"])
    assert base == queue_digest([("s", "sha1")], ["x::b", "x::a"])
    assert base != queue_digest([("s", "sha1")], ["x::a"])
    assert base != queue_digest([("s", "sha2")], ["x::a", "x::b"])
