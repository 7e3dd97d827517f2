"""Supervision of flow attempts: deadlines, the backstop, the run's global timeout, dead
services, lost and stuck workers, and the words every one of them ends a flow with.

One implementation for every way flows run: the plugin's own pool (``session/runloop.py``,
many slots, one loop) and a pytest-xdist worker (``xdist/worker.py``, one slot, waiting for
its own flow). Both ask the same questions of the same objects:

- :class:`AttemptWatch`: when does the controller stop trusting the worker of one attempt in
  flight (its *backstop*: timeout + kill grace + margin), and how a cancel shortens it;
- :class:`GlobalDeadline`: when the run's ``--runset-global-timeout`` is due (wall clock, so
  it crosses processes);
- :class:`Restarts`: how often a lost worker may be replaced;
- the messages, defined once, so that a flow ends with the same words on every path.

The decisions here are pure (the clock is passed in); acting on them (killing a gateway,
sweeping a flow's processes) is :mod:`pytest_runset.engine.recovery`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

from pytest_runset.gateway.protocol import CancelRequest

# How long past a flow's own timeout + kill grace the controller waits before it stops trusting
# the worker, kills the gateway and moves on (the ini ``runset_backstop_margin``).
BACKSTOP_MARGIN_S = 10.0
# Where the xdist controller notes that a service died mid-run: xdist workers read it before
# each attempt and while a flow runs (workerinput cannot change once workers started).
SERVICE_FAILED_NAME = "services/failed.json"
UNREACHABLE = "worker unreachable"


def unresponsive_message(timeout_s: float, worker_id: str) -> str:
    """A flow whose worker did not answer by the backstop: killed and reported as timeout."""
    return f"timeout after {timeout_s:g}s (worker {worker_id} unresponsive; killed)"


def crashed_message(worker_id: str) -> str:
    """A flow whose worker exited (or lost its channel) while running it."""
    return f"worker crashed ({worker_id} exited while running the flow)"


def global_timeout_message(timeout_s: float, *, not_run: bool) -> str:
    """A flow the run's global timeout stopped (``not_run``: never started)."""
    reason = f"the run's global timeout of {timeout_s:g}s expired"
    return f"not run: {reason}" if not_run else reason


def restarts_exhausted_message(restarts: int) -> str:
    return (
        f"not run: no worker left (workers were replaced {restarts} times, "
        "the limit; see runset_max_restarts)"
    )


@dataclass(frozen=True)
class Ready:
    """A flow may start: its leases (if any) are held."""


@dataclass(frozen=True)
class Busy:
    """A flow cannot start: what it waits for (a persona, ports, a tag limit, …)."""

    reason: str


@dataclass(frozen=True)
class DeadlinePassed:
    """The run's global deadline came before the flow could start."""


WaitOutcome = Ready | Busy | DeadlinePassed


@dataclass(frozen=True)
class GlobalDeadline:
    """``--runset-global-timeout``: the run's deadline, on the wall clock so that every
    process of the run on this host (xdist workers included) shares it."""

    at: float
    timeout_s: float

    @classmethod
    def starting(cls, started_at: float, timeout_s: float | None) -> GlobalDeadline | None:
        return None if timeout_s is None else cls(started_at + timeout_s, timeout_s)

    def left(self, now: float | None = None) -> float:
        return self.at - (time.time() if now is None else now)

    def message(self, *, not_run: bool) -> str:
        return global_timeout_message(self.timeout_s, not_run=not_run)


@dataclass
class AttemptWatch:
    """One attempt in flight: when the controller stops trusting its worker.

    The worker enforces the flow's own timeout and kill grace; the controller waits a margin
    longer (the *backstop*), then kills the gateway. A cancel (global timeout, dead service,
    interrupt) gives the worker its kill grace from now before the backstop takes over.
    Times are ``time.monotonic()`` values.
    """

    dispatched_at: float
    timeout_s: float
    kill_grace_s: float
    margin: float
    backstop: float = field(init=False)
    cancelled: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self.backstop = self.dispatched_at + self.timeout_s + self.kill_grace_s + self.margin

    def cancel(
        self, now: float, reason: str, status: Literal["timeout", "error"] | None
    ) -> CancelRequest:
        """What to send the worker to stop the flow; the backstop moves closer."""
        self.cancelled = True
        self.backstop = min(self.backstop, now + self.kill_grace_s + self.margin)
        request: CancelRequest = {"reason": reason}
        if status is not None:
            request["status"] = status
        return request

    def overdue(self, now: float) -> bool:
        return now >= self.backstop

    def left(self, now: float) -> float:
        return self.backstop - now


@dataclass
class Restarts:
    """How often lost or stuck workers may be replaced (``None``: always)."""

    limit: int | None
    used: int = 0
    exhausted: bool = False

    def take(self) -> bool:
        """Whether one more replacement is allowed (and count it)."""
        if self.limit is not None and self.used >= self.limit:
            self.exhausted = True
            return False
        self.used += 1
        return True


@dataclass
class Supervision:
    """The run-wide part: the backstop margin, the global deadline, the restart budget."""

    margin: float = BACKSTOP_MARGIN_S
    deadline: GlobalDeadline | None = None
    restarts: Restarts = field(default_factory=lambda: Restarts(None))
    global_expired: bool = False
    # While the run is paused no clock runs: not the backstops, not the global deadline.
    paused_since: float | None = None

    @property
    def paused(self) -> bool:
        return self.paused_since is not None

    def pause(self, now: float) -> None:
        if self.paused_since is None:
            self.paused_since = now

    def unpause(self, now: float, watches: list[AttemptWatch]) -> float:
        """Every deadline moves by the time spent paused; returns that time."""
        since, self.paused_since = self.paused_since, None
        if since is None:
            return 0.0
        paused = max(0.0, now - since)
        self.forgive(paused, watches)
        if self.deadline is not None:
            self.deadline = GlobalDeadline(self.deadline.at + paused, self.deadline.timeout_s)
        return paused

    def forgive(self, gap: float, watches: list[AttemptWatch]) -> None:
        """The controller itself was stopped for ``gap`` seconds (SIGSTOP, a debugger, a
        suspended VM): its workers were not late, it was. Backstops move by the gap."""
        for watch in watches:
            watch.backstop += gap

    def watch(self, dispatched_at: float, timeout_s: float, kill_grace_s: float) -> AttemptWatch:
        return AttemptWatch(dispatched_at, timeout_s, kill_grace_s, self.margin)

    def global_due(self, now: float | None = None) -> bool:
        """``True`` once, when the global deadline has passed: stop everything now."""
        if self.paused or self.deadline is None or self.global_expired:
            return False
        if self.deadline.left(now) > 0:
            return False
        self.global_expired = True
        return True

    def global_timeout_reason(self, *, not_run: bool) -> str:
        assert self.deadline is not None
        return self.deadline.message(not_run=not_run)

    def next_wakeup(self, watches: list[AttemptWatch], now: float, longest: float) -> float:
        """How long a loop may block: until the nearest backstop or deadline, ``longest`` at
        most (a held-back Ctrl-C waits that long)."""
        if self.paused:
            return longest
        waits = [watch.left(now) for watch in watches]
        if self.deadline is not None and not self.global_expired:
            waits.append(self.deadline.left())
        return max(0.0, min([*waits, longest]))
