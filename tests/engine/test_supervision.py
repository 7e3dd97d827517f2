"""Supervision's decisions, clock passed in: backstops, cancels, the global deadline, the
restart budget and the words a flow ends with (one implementation for the pool and xdist)."""

from __future__ import annotations

import pytest

from pytest_runset.engine.supervision import (
    AttemptWatch,
    GlobalDeadline,
    Restarts,
    Supervision,
    crashed_message,
    global_timeout_message,
    restarts_exhausted_message,
    unresponsive_message,
)


def test_the_backstop_is_timeout_plus_kill_grace_plus_margin() -> None:
    watch = AttemptWatch(dispatched_at=100.0, timeout_s=30.0, kill_grace_s=5.0, margin=10.0)
    assert watch.backstop == 145.0
    assert not watch.overdue(144.9)
    assert watch.overdue(145.0)
    assert watch.left(140.0) == pytest.approx(5.0)


def test_a_cancel_leaves_the_worker_its_kill_grace_and_the_margin() -> None:
    watch = AttemptWatch(dispatched_at=0.0, timeout_s=600.0, kill_grace_s=5.0, margin=10.0)
    request = watch.cancel(100.0, "the run's global timeout of 100s expired", "timeout")
    assert request == {"reason": "the run's global timeout of 100s expired", "status": "timeout"}
    assert watch.cancelled
    assert watch.backstop == 115.0


def test_a_cancel_never_moves_the_backstop_later() -> None:
    watch = AttemptWatch(dispatched_at=0.0, timeout_s=1.0, kill_grace_s=5.0, margin=10.0)
    watch.cancel(10.0, "service died", "error")
    assert watch.backstop == 16.0


def test_an_interrupt_cancel_carries_no_status() -> None:
    watch = AttemptWatch(dispatched_at=0.0, timeout_s=1.0, kill_grace_s=1.0, margin=1.0)
    assert watch.cancel(0.0, "interrupted", None) == {"reason": "interrupted"}


def test_the_global_deadline_is_due_once() -> None:
    supervision = Supervision(deadline=GlobalDeadline(at=1000.0, timeout_s=60.0))
    assert not supervision.global_due(999.0)
    assert not supervision.global_expired
    assert supervision.global_due(1000.0)
    assert supervision.global_expired
    assert not supervision.global_due(2000.0)


def test_without_a_global_timeout_nothing_is_ever_due() -> None:
    supervision = Supervision()
    assert GlobalDeadline.starting(5.0, None) is None
    assert not supervision.global_due(1e12)


def test_a_global_deadline_starts_from_the_run_start() -> None:
    deadline = GlobalDeadline.starting(100.0, 30.0)
    assert deadline == GlobalDeadline(at=130.0, timeout_s=30.0)
    assert deadline.left(120.0) == pytest.approx(10.0)


def test_the_loop_wakes_at_the_nearest_backstop_and_never_sleeps_longer_than_asked() -> None:
    supervision = Supervision(margin=1.0)
    near = supervision.watch(0.0, 2.0, 0.0)  # backstop 3.0
    far = supervision.watch(0.0, 60.0, 0.0)  # backstop 61.0
    assert supervision.next_wakeup([near, far], 2.5, longest=0.25) == pytest.approx(0.25)
    assert supervision.next_wakeup([near, far], 2.9, longest=0.25) == pytest.approx(0.1)
    assert supervision.next_wakeup([near], 5.0, longest=0.25) == 0.0
    assert supervision.next_wakeup([], 5.0, longest=0.25) == 0.25


def test_restarts_are_counted_until_the_limit() -> None:
    restarts = Restarts(2)
    assert restarts.take()
    assert restarts.take()
    assert not restarts.take()
    assert restarts.exhausted
    assert restarts.used == 2


def test_an_unlimited_budget_always_replaces() -> None:
    restarts = Restarts(None)
    assert all(restarts.take() for _ in range(100))
    assert not restarts.exhausted


def test_the_words_a_flow_ends_with_are_the_same_on_every_path() -> None:
    assert unresponsive_message(30, "gw1") == "timeout after 30s (worker gw1 unresponsive; killed)"
    assert crashed_message("gw2") == "worker crashed (gw2 exited while running the flow)"
    assert global_timeout_message(5, not_run=False) == "the run's global timeout of 5s expired"
    assert (
        global_timeout_message(5, not_run=True) == "not run: the run's global timeout of 5s expired"
    )
    assert restarts_exhausted_message(8) == (
        "not run: no worker left (workers were replaced 8 times, the limit; "
        "see runset_max_restarts)"
    )
