"""The pure scheduler: slots, order, retries, stopping, workers going down and coming back."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_runset.engine.scheduler import Scheduler, Task, order_keys

# -- assignments ---------------------------------------------------------------------------------


def test_assignments_fill_idle_slots_lowest_first_in_file_order() -> None:
    scheduler = Scheduler(["a", "b", "c", "d", "e"], slots=3)
    assert scheduler.assignments() == [(0, Task("a")), (1, Task("b")), (2, Task("c"))]
    assert scheduler.running == {0: Task("a"), 1: Task("b"), 2: Task("c")}
    # Every slot is busy: nothing more starts, one task per slot.
    assert scheduler.assignments() == []
    assert scheduler.pending_count == 2


def test_a_freed_slot_gets_the_next_task_and_only_that_slot() -> None:
    scheduler = Scheduler(["a", "b", "c", "d", "e"], slots=3)
    scheduler.assignments()
    assert scheduler.finished(1, "passed") is None
    assert scheduler.assignments() == [(1, Task("d"))]
    assert scheduler.finished(2, "failed") is None
    assert scheduler.finished(0, "passed") is None
    # Two slots free: lowest first, file order kept.
    assert scheduler.assignments() == [(0, Task("e"))]
    assert scheduler.assignments() == []
    assert not scheduler.done()
    scheduler.finished(1, "passed")
    scheduler.finished(0, "passed")
    assert scheduler.done()


def test_more_slots_than_tasks() -> None:
    scheduler = Scheduler(["only"], slots=4)
    assert scheduler.assignments() == [(0, Task("only"))]
    assert scheduler.assignments() == []
    assert not scheduler.done()
    scheduler.finished(0, "passed")
    assert scheduler.done()
    assert scheduler.unstarted() == []


def test_empty_scheduler_is_done_at_once() -> None:
    scheduler = Scheduler([], slots=2)
    assert scheduler.done()
    assert scheduler.assignments() == []


@pytest.mark.parametrize("slots", [0, -1])
def test_at_least_one_slot(slots: int) -> None:
    with pytest.raises(ValueError, match="slot"):
        Scheduler(["a"], slots=slots)


def test_duplicate_keys_are_rejected() -> None:
    with pytest.raises(ValueError, match="unique"):
        Scheduler(["a", "b", "a"], slots=1)


def test_running_is_a_copy() -> None:
    scheduler = Scheduler(["a"], slots=1)
    scheduler.assignments()
    snapshot = scheduler.running
    snapshot.clear()  # type: ignore[attr-defined]
    assert scheduler.running == {0: Task("a")}


# -- retries ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["failed", "timeout", "error"])
def test_retryable_statuses_are_retried_at_the_front(status: str) -> None:
    scheduler = Scheduler(["a", "b", "c"], slots=1, retries={"a": 1})
    assert scheduler.assignments() == [(0, Task("a"))]
    retry = scheduler.finished(0, status)
    assert retry == Task("a", attempt=2)
    assert scheduler.retry_pending("a")
    # The retry jumps the queue: its flow was already due.
    assert scheduler.assignments() == [(0, Task("a", attempt=2))]
    assert not scheduler.retry_pending("a")
    # Retries spent: the second failure is final.
    assert scheduler.finished(0, status) is None
    assert scheduler.assignments() == [(0, Task("b"))]


@pytest.mark.parametrize("status", ["passed", "skipped", "interrupted", "xfailed"])
def test_other_statuses_are_not_retried(status: str) -> None:
    scheduler = Scheduler(["a", "b"], slots=1, retries={"a": 3})
    scheduler.assignments()
    assert scheduler.finished(0, status) is None
    assert not scheduler.retry_pending("a")
    assert scheduler.assignments() == [(0, Task("b"))]


def test_attempts_never_exceed_retries_plus_one() -> None:
    scheduler = Scheduler(["a"], slots=1, retries={"a": 3})
    attempts = []
    while not scheduler.done():
        for slot, task in scheduler.assignments():
            attempts.append(task.attempt)
            scheduler.finished(slot, "failed")
    assert attempts == [1, 2, 3, 4]


def test_no_retries_by_default() -> None:
    scheduler = Scheduler(["a"], slots=1)
    scheduler.assignments()
    assert scheduler.finished(0, "failed") is None
    assert scheduler.done()


def test_finishing_an_idle_slot_is_an_error() -> None:
    scheduler = Scheduler(["a"], slots=2)
    with pytest.raises(KeyError):
        scheduler.finished(1, "passed")


# -- stopping --------------------------------------------------------------------------------------


def test_stop_prevents_new_assignments_and_lists_unstarted() -> None:
    scheduler = Scheduler(["a", "b", "c", "d"], slots=2)
    scheduler.assignments()
    scheduler.stop()
    assert scheduler.stopped
    assert scheduler.pending_count == 0
    # Running tasks still finish, but nothing new starts on the freed slot.
    assert not scheduler.done()
    assert scheduler.finished(0, "passed") is None
    assert scheduler.assignments() == []
    assert not scheduler.done()
    scheduler.finished(1, "passed")
    assert scheduler.done()
    assert scheduler.unstarted() == ["c", "d"]


def test_stop_prevents_retries() -> None:
    scheduler = Scheduler(["a", "b"], slots=1, retries={"a": 2})
    scheduler.assignments()
    scheduler.stop()
    assert scheduler.finished(0, "failed") is None
    assert not scheduler.retry_pending("a")
    assert scheduler.assignments() == []
    assert scheduler.done()
    assert scheduler.unstarted() == ["b"]


def test_a_retry_queued_before_stop_is_unstarted() -> None:
    scheduler = Scheduler(["a", "b"], slots=1, retries={"a": 1})
    scheduler.assignments()
    assert scheduler.finished(0, "error") == Task("a", 2)
    scheduler.stop()
    assert scheduler.assignments() == []
    assert scheduler.done()
    assert scheduler.unstarted() == ["a", "b"]


def test_unstarted_excludes_running_and_keeps_queue_order() -> None:
    scheduler = Scheduler(["a", "b", "c"], slots=1, retries={"b": 1})
    assert scheduler.unstarted() == ["a", "b", "c"]
    scheduler.assignments()
    assert scheduler.unstarted() == ["b", "c"]
    scheduler.finished(0, "passed")
    scheduler.assignments()  # b
    scheduler.finished(0, "failed")  # b's retry goes to the front
    assert scheduler.unstarted() == ["b", "c"]


# -- slots going down, up, or away -----------------------------------------------------------------


def test_a_down_slot_gets_nothing_until_it_is_up() -> None:
    scheduler = Scheduler(["a", "b", "c"], slots=2)
    scheduler.slot_down(0)
    assert scheduler.assignments() == [(1, Task("a"))]
    scheduler.finished(1, "passed")
    assert scheduler.assignments() == [(1, Task("b"))]
    assert not scheduler.done()
    scheduler.slot_up(0)
    assert scheduler.assignments() == [(0, Task("c"))]


def test_all_slots_down_with_pending_is_not_done() -> None:
    scheduler = Scheduler(["a"], slots=2)
    scheduler.slot_down(0)
    scheduler.slot_down(1)
    assert scheduler.assignments() == []
    assert not scheduler.done()  # the workers are being replaced
    scheduler.slot_up(1)
    assert scheduler.assignments() == [(1, Task("a"))]


def test_a_running_task_on_a_downed_slot_can_still_finish() -> None:
    scheduler = Scheduler(["a", "b", "c"], slots=2, retries={"a": 1})
    scheduler.assignments()
    scheduler.slot_down(0)
    assert scheduler.running[0] == Task("a")
    assert scheduler.finished(0, "error") == Task("a", 2)
    # The retry waits for a live slot; the downed slot stays out of rotation.
    assert scheduler.assignments() == []
    scheduler.finished(1, "passed")
    assert scheduler.assignments() == [(1, Task("a", 2))]
    scheduler.slot_up(0)
    assert scheduler.assignments() == [(0, Task("c"))]


def test_slot_up_while_its_task_still_runs_does_not_double_book() -> None:
    scheduler = Scheduler(["a", "b"], slots=1)
    scheduler.assignments()
    scheduler.slot_down(0)
    scheduler.slot_up(0)
    assert scheduler.assignments() == []
    scheduler.finished(0, "passed")
    assert scheduler.assignments() == [(0, Task("b"))]


def test_all_slots_lost_with_pending_is_done() -> None:
    scheduler = Scheduler(["a", "b", "c"], slots=2)
    scheduler.slot_down(0)
    scheduler.slot_lost(0)
    scheduler.slot_down(1)
    assert not scheduler.done()
    scheduler.slot_lost(1)
    assert scheduler.done()
    assert scheduler.assignments() == []
    assert scheduler.unstarted() == ["a", "b", "c"]


def test_a_lost_slot_stays_lost_after_its_running_task_finishes() -> None:
    """``slot_lost`` means the slot never comes back, even if it was busy when it was lost."""
    scheduler = Scheduler(["a", "b", "c"], slots=2)
    scheduler.assignments()
    scheduler.slot_lost(0)
    scheduler.finished(0, "passed")
    assert scheduler.assignments() == []
    scheduler.finished(1, "passed")
    assert scheduler.assignments() == [(1, Task("c"))]


def test_a_late_slot_down_does_not_revive_a_lost_slot() -> None:
    """A second 'died' report for a lost slot must not make the run wait for it forever."""
    scheduler = Scheduler(["a", "b"], slots=1)
    scheduler.slot_down(0)
    scheduler.slot_lost(0)
    scheduler.slot_down(0)
    assert scheduler.done()
    assert scheduler.unstarted() == ["a", "b"]


def test_slot_up_does_not_revive_a_lost_slot() -> None:
    scheduler = Scheduler(["a", "b"], slots=2)
    scheduler.slot_down(0)
    scheduler.slot_lost(0)
    scheduler.slot_up(0)
    assert scheduler.assignments() == [(1, Task("a"))]
    scheduler.finished(1, "passed")
    scheduler.slot_lost(1)
    scheduler.slot_up(1)
    assert scheduler.done()
    assert scheduler.assignments() == []
    assert scheduler.unstarted() == ["b"]


# -- ordering --------------------------------------------------------------------------------------


def test_order_without_history_is_file_order() -> None:
    keys = ["c", "a", "b"]
    assert order_keys(keys) == keys
    assert order_keys(keys, {}) == keys
    assert order_keys(iter(keys), None) == keys


def test_order_unknown_first_in_file_order_then_longest_known() -> None:
    keys = ["short", "new1", "long", "mid", "new2"]
    durations = {"short": 1.0, "long": 30.0, "mid": 5.0, "gone": 99.0}
    assert order_keys(keys, durations) == ["new1", "new2", "long", "mid", "short"]


def test_order_ties_keep_file_order() -> None:
    keys = ["b", "a", "c", "d"]
    durations = {"a": 2.0, "b": 2.0, "c": 2.0, "d": 3.0}
    assert order_keys(keys, durations) == ["d", "b", "a", "c"]


def test_order_puts_last_failed_first_then_longest_first() -> None:
    keys = ["short", "failed-short", "long", "failed-long", "new"]
    durations = {"short": 1.0, "failed-short": 2.0, "long": 30.0, "failed-long": 9.0}
    ordered = order_keys(keys, durations, first={"failed-short", "failed-long"})
    assert ordered == ["failed-long", "failed-short", "new", "long", "short"]
    assert order_keys(["a", "b"], None, first={"b"}) == ["b", "a"]


@given(
    st.lists(st.text(min_size=1, max_size=4), unique=True, max_size=12),
    st.dictionaries(st.text(min_size=1, max_size=4), st.floats(0, 1e6), max_size=12),
)
def test_order_is_a_permutation_with_the_documented_shape(
    keys: list[str], durations: dict[str, float]
) -> None:
    ordered = order_keys(keys, durations)
    assert sorted(ordered) == sorted(keys)
    if not durations:
        assert ordered == keys
        return
    unknown = [key for key in keys if key not in durations]
    assert ordered[: len(unknown)] == unknown
    known = ordered[len(unknown) :]
    assert [durations[key] for key in known] == sorted(
        (durations[key] for key in known), reverse=True
    )


# -- randomized invariants -------------------------------------------------------------------------

EVENTS = st.lists(
    st.tuples(
        st.sampled_from(["assign", "finish", "down", "up", "lost", "stop"]),
        st.integers(0, 3),
        st.sampled_from(["passed", "failed", "timeout", "error", "skipped", "interrupted"]),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(
    n_keys=st.integers(0, 8),
    slots=st.integers(1, 4),
    retries=st.lists(st.integers(0, 3), min_size=8, max_size=8),
    events=EVENTS,
)
def test_random_event_sequences_keep_the_invariants(
    n_keys: int, slots: int, retries: list[int], events: list[tuple[str, int, str]]
) -> None:
    keys = [f"k{index}" for index in range(n_keys)]
    budget = {key: retries[index] for index, key in enumerate(keys)}
    scheduler = Scheduler(keys, slots, budget)
    down: set[int] = set()
    lost: set[int] = set()
    stopped = False
    attempts: dict[str, int] = dict.fromkeys(keys, 0)
    final: set[str] = set()
    running: dict[int, Task] = {}

    def assign() -> None:
        for slot, task in scheduler.assignments():
            assert not stopped, "assignment after stop"
            assert 0 <= slot < slots
            assert slot not in running, "two tasks on one slot"
            assert slot not in down, "task on a down slot"
            assert slot not in lost, "task on a lost slot"
            assert task.key not in final, "a finished flow started again"
            assert task.key not in {t.key for t in running.values()}, "a flow runs twice"
            attempts[task.key] += 1
            assert task.attempt == attempts[task.key]
            assert task.attempt <= budget[task.key] + 1
            running[slot] = task
        assert scheduler.running == running

    def finish(slot: int, status: str) -> None:
        task = running.pop(slot)
        retry = scheduler.finished(slot, status)
        if retry is None:
            final.add(task.key)
        else:
            assert not stopped
            assert status in ("failed", "timeout", "error")
            assert retry == Task(task.key, task.attempt + 1)
            assert retry.attempt <= budget[task.key] + 1
            assert scheduler.unstarted()[0] == task.key  # at the front

    for kind, raw_slot, status in events:
        slot = raw_slot % slots
        if kind == "assign":
            assign()
        elif kind == "finish":
            if slot in running:
                finish(slot, status)
        elif kind == "down":
            scheduler.slot_down(slot)  # a late report about a lost slot changes nothing
            if slot not in lost:
                down.add(slot)
        elif kind == "up":
            scheduler.slot_up(slot)  # a no-op for a lost slot
            down.discard(slot)
        elif kind == "lost":
            scheduler.slot_lost(slot)
            down.discard(slot)
            lost.add(slot)
        elif kind == "stop":
            scheduler.stop()
            stopped = True
        if running:
            assert not scheduler.done()

    # Drain: every replaceable worker comes back, every running task ends (failing, to exercise
    # retries), until the scheduler says it is done.
    for slot in sorted(down | lost):
        scheduler.slot_up(slot)
    down.clear()
    for _ in range(10 * (n_keys + 1) * 5):
        if scheduler.done():
            break
        assign()
        for slot in sorted(running):
            finish(slot, "failed")
    assert scheduler.done()
    assert not running
    assert scheduler.assignments() == []
    unstarted = scheduler.unstarted()
    assert len(unstarted) == len(set(unstarted))
    assert set(unstarted).isdisjoint(final)
    assert set(unstarted) | final == set(keys)
    if unstarted:
        assert stopped or len(lost) == slots
    for key in keys:
        assert attempts[key] <= budget[key] + 1


# -- leases, exclusive flows, lease waits (the resource side of the scheduler) ----------------


def test_a_flow_waiting_for_a_lease_keeps_its_place_and_others_start() -> None:
    scheduler = Scheduler(["a", "b", "c"], 2)
    busy = {"a"}
    started = scheduler.assignments(ready=lambda t: "persona busy" if t.key in busy else None)
    assert [task.key for _, task in started] == ["b", "c"]
    assert scheduler.waiting
    scheduler.finished(0, "passed")
    busy.clear()
    again = scheduler.assignments(ready=lambda t: None)
    assert [task.key for _, task in again] == ["a"]
    assert not scheduler.waiting


def test_ready_is_not_asked_when_no_slot_is_free() -> None:
    scheduler = Scheduler(["a", "b"], 1)
    asked: list[str] = []

    def ready(task: Task) -> str | None:
        asked.append(task.key)
        return None

    scheduler.assignments(ready=ready)
    assert asked == ["a"]


def test_lease_waits_expire_after_their_limit() -> None:
    scheduler = Scheduler(["a", "b"], 2)
    scheduler.assignments(
        ready=lambda t: "persona 'alice' busy" if t.key == "a" else None, now=10.0
    )
    assert scheduler.expired_waits(15.0, limit=lambda key: 10.0) == []
    scheduler.assignments(ready=lambda t: "persona 'alice' busy", now=15.0)
    expired = scheduler.expired_waits(20.5, limit=lambda key: 10.0)
    assert [(task.key, reason) for task, reason, _ in expired] == [("a", "persona 'alice' busy")]
    assert expired[0][2] == pytest.approx(10.5)
    assert scheduler.unstarted() == []


def test_waiting_for_a_worker_is_not_waiting_for_a_lease() -> None:
    scheduler = Scheduler(["a", "b"], 1)
    scheduler.assignments(ready=lambda t: "busy" if t.key == "a" else None, now=0.0)
    # "b" runs; "a" is now only waiting for the one worker, so its lease clock stops.
    scheduler.assignments(ready=lambda t: None, now=50.0)
    assert scheduler.expired_waits(100.0, limit=lambda key: 10.0) == []


def test_an_exclusive_flow_waits_for_an_empty_pool_and_runs_alone() -> None:
    scheduler = Scheduler(["a", "x", "b"], 3, exclusive=["x"])
    started = scheduler.assignments()
    assert [task.key for _, task in started] == ["a"]  # x must wait for a; b waits behind x
    assert scheduler.assignments() == []
    scheduler.finished(0, "passed")
    started = scheduler.assignments()
    assert [task.key for _, task in started] == ["x"]
    assert scheduler.assignments() == []  # nothing next to an exclusive flow
    slot = started[0][0]
    scheduler.finished(slot, "passed")
    assert [task.key for _, task in scheduler.assignments()] == ["b"]


def test_drop_removes_pending_tasks() -> None:
    scheduler = Scheduler(["a", "b", "c"], 1)
    scheduler.assignments()
    dropped = scheduler.drop(["b", "c", "a"])
    assert [task.key for task in dropped] == ["b", "c"]
    assert scheduler.unstarted() == []
    scheduler.finished(0, "failed")
    assert scheduler.done()


@given(
    st.lists(st.booleans(), min_size=1, max_size=8),
    st.lists(st.booleans(), min_size=1, max_size=8),
    st.integers(min_value=1, max_value=4),
)
def test_exclusive_and_busy_flows_never_break_the_invariants(
    exclusive_flags: list[bool], busy_flags: list[bool], slots: int
) -> None:
    keys = [f"k{i}" for i in range(len(exclusive_flags))]
    exclusive = {key for key, flag in zip(keys, exclusive_flags, strict=True) if flag}
    busy = {key for key, flag in zip(keys, busy_flags * len(keys), strict=False) if flag}
    scheduler = Scheduler(keys, slots, exclusive=exclusive)
    finished: list[str] = []
    for round_number in range(4 * len(keys) + 4):
        if round_number == 2 * len(keys):
            busy.clear()  # leases free up eventually
        scheduler.assignments(ready=lambda t: "busy" if t.key in busy else None)
        running = scheduler.running
        assert len(running) <= slots
        if any(task.key in exclusive for task in running.values()):
            assert len(running) == 1
        for slot in list(running)[:1]:
            finished.append(running[slot].key)
            scheduler.finished(slot, "passed")
    assert sorted(finished) == sorted(keys)
    assert scheduler.done()


def simulate_makespan(order: list[str], durations: dict[str, float], slots: int) -> float:
    """Run a scheduler to its end on a virtual clock: each task takes its duration."""
    scheduler = Scheduler(order, slots)
    clock = 0.0
    ends: dict[int, float] = {}
    while not scheduler.done():
        for slot, task in scheduler.assignments(now=clock):
            ends[slot] = clock + durations[task.key]
        slot = min(ends, key=lambda s: (ends[s], s))
        clock = ends.pop(slot)
        scheduler.finished(slot, "passed")
    return clock


def test_longest_first_shortens_the_makespan_of_a_skewed_run() -> None:
    # Many short flows listed before a few long ones: file order leaves the long ones to run
    # alone at the end; longest first starts them at once and fills in with short ones.
    durations = {f"short{i:02d}": 1.0 for i in range(12)}
    durations.update({"long1": 8.0, "long2": 7.0})
    keys = list(durations)
    lower_bound = max(*durations.values(), sum(durations.values()) / 3)
    fifo = simulate_makespan(order_keys(keys), durations, slots=3)
    lpt = simulate_makespan(order_keys(keys, durations), durations, slots=3)
    assert fifo == 12.0
    assert lpt == lower_bound == 9.0


def test_a_retry_still_goes_before_longer_flows_that_have_not_started() -> None:
    durations = {"a": 1.0, "b": 9.0, "c": 5.0}
    scheduler = Scheduler(order_keys(["a", "b", "c"], durations), 1, retries={"b": 1})
    assert scheduler.assignments() == [(0, Task("b"))]
    assert scheduler.finished(0, "failed") == Task("b", 2)
    assert scheduler.assignments() == [(0, Task("b", 2))]
    scheduler.finished(0, "passed")
    assert [task.key for _, task in scheduler.assignments()] == ["c"]
