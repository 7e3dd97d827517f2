"""Which flow attempt runs next, and on which worker slot. Pure: no processes, no I/O.

The pool tells the scheduler what happened (a slot freed up, an attempt finished, a worker
went down or came back, dispatch must stop) and asks it what to start now. Keeping every
decision here makes ordering, retries and stop rules testable in microseconds.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

RETRYABLE = frozenset({"failed", "timeout", "error"})


@dataclass(frozen=True)
class RetryDelay:
    """How long a retry waits after the attempt before it ended (pytest-rerunfailures'
    ``--reruns-delay`` and ``--reruns-delay-backoff-factor``)."""

    seconds: float = 0.0
    backoff: float = 1.0

    def __post_init__(self) -> None:
        if self.seconds < 0 or self.backoff <= 0:
            raise ValueError("a retry delay must not be negative, its backoff above 0")

    def before(self, retry: int) -> float:
        """Seconds before retry number ``retry`` (1 for a flow's second attempt)."""
        return self.seconds * self.backoff ** (retry - 1)


@dataclass(frozen=True)
class Task:
    """One attempt of one flow (``attempt`` counts from 1)."""

    key: str
    attempt: int = 1
    # A retry waits until then (the clock of ``assignments``): pytest-rerunfailures'
    # ``--reruns-delay``. Not part of the task's identity.
    not_before: float = field(default=0.0, compare=False)


class Scheduler:
    """Dispatch order, one task per slot, retries, and stopping.

    ``keys`` are flow keys in dispatch order (the caller sorts them, e.g. longest first);
    ``retries`` maps a key to how many extra attempts it may have, each after
    ``retry_delay``.
    """

    def __init__(
        self,
        keys: Sequence[str],
        slots: int,
        retries: Mapping[str, int] | None = None,
        exclusive: Iterable[str] = (),
        retry_delay: RetryDelay | None = None,
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
        self._exclusive = frozenset(exclusive)
        # Why a task could not start, and since when it has been waiting for that.
        self._blocked: dict[str, tuple[str, float]] = {}
        self.slots = slots
        self._retry_delay = retry_delay or RetryDelay()

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
    def assignments(
        self, ready: Callable[[Task], str | None] | None = None, now: float = 0.0
    ) -> list[tuple[int, Task]]:
        """Start pending tasks on idle slots (lowest slot first), in queue order.

        ``ready(task)`` returns ``None`` when the task can start now (it has taken its leases)
        or says what it waits for; a waiting task keeps its place and the next ready one
        starts instead, so nothing starves behind a busy persona. An exclusive task starts
        only on an empty pool, and nothing queued after it starts before it did.
        """
        started: list[tuple[int, Task]] = []
        if self._stopped or not self._pending:
            return started
        if not self._idle or any(task.key in self._exclusive for task in self._running.values()):
            # Everything waits for a worker now, not for a lease: no lease clock runs.
            self._blocked.clear()
            return started
        idle = sorted(self._idle)
        keep: deque[Task] = deque()
        while self._pending:
            if not idle and not self._blocked:
                # The rest keeps its place untouched: a round costs what it starts, not the
                # length of the queue (10,000 flows would make every round slow).
                break
            task = self._pending.popleft()
            if not idle:
                # Not asked this round: it waits for a worker now, not for a lease.
                self._blocked.pop(task.key, None)
                keep.append(task)
                continue
            if task.not_before > now:
                # A retry sitting out its delay keeps its place; the ones behind it may start.
                keep.append(task)
                continue
            if task.key in self._exclusive and self._running:
                # Let the pool drain; starting more would postpone the exclusive task.
                keep.append(task)
                keep.extend(self._pending)
                self._pending.clear()
                break
            reason = ready(task) if ready is not None else None
            if reason is not None:
                since = self._blocked.get(task.key, (reason, now))[1]
                self._blocked[task.key] = (reason, since)
                keep.append(task)
                continue
            self._blocked.pop(task.key, None)
            slot = idle.pop(0)
            self._idle.discard(slot)
            self._running[slot] = task
            started.append((slot, task))
            if task.key in self._exclusive:
                keep.extend(self._pending)
                self._pending.clear()
                break
        # What was looked at goes back in front of what was not, in its order.
        self._pending.extendleft(reversed(keep))
        return started

    def expired_waits(
        self, now: float, limit: Callable[[str], float]
    ) -> list[tuple[Task, str, float]]:
        """Remove and return tasks that waited for a lease longer than ``limit(key)`` seconds,
        with what they waited for and how long."""
        expired: list[tuple[Task, str, float]] = []
        if not self._blocked:
            return expired
        keep: deque[Task] = deque()
        for task in self._pending:
            blocked = self._blocked.get(task.key)
            if blocked is not None and now - blocked[1] >= limit(task.key):
                expired.append((task, blocked[0], now - blocked[1]))
                del self._blocked[task.key]
            else:
                keep.append(task)
        self._pending = keep
        return expired

    def drop(self, keys: Iterable[str]) -> list[Task]:
        """Remove the pending tasks of ``keys`` (their flows end without running)."""
        wanted = set(keys)
        dropped = [task for task in self._pending if task.key in wanted]
        self._pending = deque(task for task in self._pending if task.key not in wanted)
        for task in dropped:
            self._blocked.pop(task.key, None)
        return dropped

    @property
    def waiting(self) -> bool:
        """Some pending task is waiting for a lease (the caller should poll again soon)."""
        return bool(self._blocked) and any(task.key in self._blocked for task in self._pending)

    def finished(self, slot: int, status: str, now: float = 0.0) -> Task | None:
        """Record the end of the task on ``slot`` at ``now``; return the retry queued for it,
        if any.

        A retry goes to the front of the queue (its flow was already due), to start once its
        delay is over.
        """
        task = self._running.pop(slot)
        if slot not in self._down and slot not in self._lost:
            self._idle.add(slot)
        if status in RETRYABLE and task.attempt <= self._retries.get(task.key, 0):
            delay = self._retry_delay.before(task.attempt)
            retry = Task(task.key, task.attempt + 1, not_before=now + delay if delay else 0.0)
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


def order_keys(
    keys: Iterable[str],
    durations: Mapping[str, float] | None = None,
    first: Collection[str] = (),
) -> list[str]:
    """Dispatch order: longest known duration first, then unknown ones in file order.

    Unknown flows go first of all: with no history they might be the longest, and running them
    early teaches the next run the most. Keys in ``first`` (pytest's ``--ff``: the flows that
    failed last time) go before every other key, longest first among themselves.
    """
    listed = list(keys)
    if not durations and not first:
        return listed
    known = durations or {}
    position = {key: index for index, key in enumerate(listed)}
    return sorted(
        listed,
        key=lambda key: (
            key not in first,
            key in known,
            -known.get(key, 0.0),
            position[key],
        ),
    )
