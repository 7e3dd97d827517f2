"""Which flow attempt runs next, and on which worker slot. Pure: no processes, no I/O.

The pool tells the scheduler what happened (a slot freed up, an attempt finished, a worker
went down or came back, dispatch must stop) and asks it what to start now. Keeping every
decision here makes ordering, retries and stop rules testable in microseconds.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

RETRYABLE = frozenset({"failed", "timeout", "error"})


@dataclass(frozen=True)
class Task:
    """One attempt of one flow (``attempt`` counts from 1)."""

    key: str
    attempt: int = 1


class Scheduler:
    """Dispatch order, one task per slot, retries, and stopping.

    ``keys`` are flow keys in dispatch order (the caller sorts them, e.g. longest first);
    ``retries`` maps a key to how many extra attempts it may have.
    """

    def __init__(
        self, keys: Sequence[str], slots: int, retries: Mapping[str, int] | None = None
    ) -> None:
        if slots < 1:
            raise ValueError("a scheduler needs at least one slot")
        if len(set(keys)) != len(keys):
            raise ValueError("flow keys must be unique")
        self._pending: deque[Task] = deque(Task(key) for key in keys)
        self._retries = dict(retries or {})
        self._idle: set[int] = set(range(slots))
        self._down: set[int] = set()
        self._lost: set[int] = set()
        self._running: dict[int, Task] = {}
        self._stopped = False
        self.slots = slots

    # -- questions ---------------------------------------------------------------------------
    @property
    def stopped(self) -> bool:
        return self._stopped

    @property
    def running(self) -> Mapping[int, Task]:
        return dict(self._running)

    @property
    def pending_count(self) -> int:
        return 0 if self._stopped else len(self._pending)

    def done(self) -> bool:
        """Nothing runs and nothing more will be started."""
        if self._running:
            return False
        return self._stopped or not self._pending or not (self._idle or self._down)

    # -- decisions ---------------------------------------------------------------------------
    def assignments(self) -> list[tuple[int, Task]]:
        """Start as many pending tasks as there are idle slots (lowest slot first)."""
        started: list[tuple[int, Task]] = []
        if self._stopped:
            return started
        for slot in sorted(self._idle):
            if not self._pending:
                break
            task = self._pending.popleft()
            self._idle.discard(slot)
            self._running[slot] = task
            started.append((slot, task))
        return started

    def finished(self, slot: int, status: str) -> Task | None:
        """Record the end of the task on ``slot``; return the retry queued for it, if any.

        A retry goes to the front of the queue: its flow was already due.
        """
        task = self._running.pop(slot)
        if slot not in self._down and slot not in self._lost:
            self._idle.add(slot)
        if status in RETRYABLE and task.attempt <= self._retries.get(task.key, 0):
            retry = Task(task.key, task.attempt + 1)
            if not self._stopped:
                self._pending.appendleft(retry)
                return retry
        return None

    def slot_down(self, slot: int) -> None:
        """The slot's worker is gone (being replaced); start nothing there until it is up."""
        self._idle.discard(slot)
        if slot not in self._lost:
            self._down.add(slot)

    def slot_up(self, slot: int) -> None:
        if slot in self._lost:
            return
        self._down.discard(slot)
        if slot not in self._running:
            self._idle.add(slot)

    def slot_lost(self, slot: int) -> None:
        """The slot will never come back (restart budget spent)."""
        self._lost.add(slot)
        self._idle.discard(slot)
        self._down.discard(slot)

    def stop(self) -> None:
        """Start nothing more; running tasks finish (or are cancelled by the caller)."""
        self._stopped = True

    def unstarted(self) -> list[str]:
        """Keys of flows that have a pending task and no running one, in queue order."""
        running = {task.key for task in self._running.values()}
        seen: dict[str, None] = {}
        for task in self._pending:
            if task.key not in running:
                seen.setdefault(task.key)
        return list(seen)

    def retry_pending(self, key: str) -> bool:
        return any(task.key == key for task in self._pending)


def order_keys(keys: Iterable[str], durations: Mapping[str, float] | None = None) -> list[str]:
    """Dispatch order: longest known duration first, then unknown ones in file order.

    Unknown flows go first of all: with no history they might be the longest, and running them
    early teaches the next run the most.
    """
    listed = list(keys)
    if not durations:
        return listed
    position = {key: index for index, key in enumerate(listed)}
    return sorted(
        listed,
        key=lambda key: (
            key in durations,
            -durations.get(key, 0.0),
            position[key],
        ),
    )
