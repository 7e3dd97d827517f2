"""The decisions of a session that takes its flows from a shared queue. Pure: no Redis, no I/O.

A :class:`QueueScheduler` is a :class:`~.scheduler.Scheduler` whose pending tasks come from a
shared queue, a few at a time, instead of from the session's own list:

- the keys it is built with are the *seed*: the order the first session writes into the queue
  (longest first with duration history, file order without). :meth:`QueueScheduler.seed` hands
  them out once; from then on tasks arrive by :meth:`QueueScheduler.add`;
- :meth:`QueueScheduler.wants` says how many flows to pull now: one per idle slot that no
  pulled task can use, never more than the pool has slots (a session must not hoard flows
  another session's idle worker could run);
- a retry is not queued here: :meth:`QueueScheduler.finished` returns it for the caller to put
  back in the shared queue, where the first free worker of any session takes it;
- it is done when nothing runs here, nothing pulled waits here, and the shared queue has ended
  (nothing waits or runs in any session: a lost session's flows may still come back).

:func:`disposition` decides what a pulled flow is: an attempt to run, or, past
:data:`MAX_REQUEUES` losses of its session, an ``error`` without running.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from pytest_runset.engine.scheduler import RetryDelay, Scheduler, Task

# How often a flow may go back to the queue because the session running it was lost.
MAX_REQUEUES = 2


def queue_digest(runsets: Iterable[tuple[str, str]], keys: Iterable[str]) -> str:
    """What sessions of one queue must agree on: the run-sets (name, sha256 of the file) and
    the selected flows (node ids), whatever their order on the command line."""
    text = json.dumps({"runsets": sorted(runsets), "flows": sorted(keys)}, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class RunIt:
    """The pulled flow runs here, as attempt ``attempt``."""

    attempt: int


@dataclass(frozen=True)
class LostTooOften:
    """The pulled flow ends as ``error`` without running: its sessions kept dying."""

    message: str


def disposition(
    attempt: int, requeues: int, lost_host: str, max_requeues: int = MAX_REQUEUES
) -> RunIt | LostTooOften:
    """What to do with a flow pulled from the queue."""
    if requeues > max_requeues:
        return LostTooOften(
            f"session on {lost_host or 'an unknown host'} lost "
            f"(the flow went back to the queue {requeues} times)"
        )
    return RunIt(attempt)


class QueueScheduler(Scheduler):
    """A scheduler fed from a shared queue (see the module's docstring)."""

    def __init__(
        self,
        keys: Sequence[str],
        slots: int,
        retries: Mapping[str, int] | None = None,
        exclusive: Iterable[str] = (),
        retry_delay: RetryDelay | None = None,
    ) -> None:
        super().__init__(keys, slots, retries, exclusive, retry_delay)
        self._seeded = False
        # Set by the caller once the shared queue has nothing waiting or running anywhere.
        self.queue_ended = False

    @property
    def seeded(self) -> bool:
        return self._seeded

    def seed(self) -> list[str]:
        """The keys to seed the queue with, in dispatch order; from now on the scheduler's
        tasks come from :meth:`add`."""
        if self._seeded:
            raise ValueError("the queue was seeded already")
        self._seeded = True
        keys = self.unstarted()
        self.drop(keys)
        return keys

    def wants(self) -> int:
        """How many flows to pull from the queue now."""
        if not self._seeded or self.stopped:
            return 0
        usable = [task for task in self._pending if task.key not in self._blocked]
        free = len(self._idle) - len(usable)
        return max(0, min(free, self.slots - len(self._pending)))

    def add(self, key: str, attempt: int = 1) -> None:
        """A flow pulled from the queue, due for ``attempt``."""
        if any(task.key == key for task in self._pending) or any(
            task.key == key for task in self._running.values()
        ):
            raise ValueError(f"flow {key!r} is already pulled")
        self._pending.append(Task(key, attempt))

    def finished(self, slot: int, status: str, now: float = 0.0) -> Task | None:
        """As :meth:`Scheduler.finished`, but a retry is returned, not queued here."""
        retry = super().finished(slot, status, now)
        if retry is not None:
            self._pending.remove(retry)
        return retry

    def done(self) -> bool:
        if self._running:
            return False
        if self.stopped or not (self._idle or self._down):
            return True
        return self._seeded and self.queue_ended and not self._pending

    def pulled(self) -> Iterable[Task]:
        """The pulled tasks that have not started (to give back when the session stops)."""
        return list(self._pending)
