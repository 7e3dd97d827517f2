"""What a flow in a pytest-xdist worker waits for before it starts, each wait bounded.

Its leases (persona, ports, tag limits: the same file locks as the pool's), the run's exclusive
flows (``exclusive = true``), and through all of them the run's global deadline. In the pool the
scheduler simply does not start a flow whose resources are busy; an xdist worker has been handed
the flow already, so it waits here, polling, at most the flow's timeout.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable

from pytest_runset.engine.state import FlowState
from pytest_runset.engine.supervision import (
    Busy,
    DeadlinePassed,
    GlobalDeadline,
    Ready,
    WaitOutcome,
)
from pytest_runset.resources.leases import Leaser
from pytest_runset.resources.requirements import acquire, needs_leases

# How often a flow waiting for a busy lease or lock tries again.
LEASE_POLL_S = 0.1


def take_leases(
    state: FlowState, leaser: Callable[[], Leaser], limit: float, deadline: GlobalDeadline | None
) -> WaitOutcome:
    """Wait (at most ``limit`` seconds) for the flow's leases: :class:`Ready` once held
    (``state.lease``), :class:`Busy` with what it waited for, or :class:`DeadlinePassed`."""
    flow, runset = state.flow, state.run.runset
    if not needs_leases(flow, runset):
        return Ready()
    started = time.monotonic()
    while True:
        lease, reason = acquire(leaser(), runset, flow)
        if lease is not None:
            state.lease = lease
            return Ready()
        waited = time.monotonic() - started
        if waited >= limit:
            return Busy(f"{reason} for {waited:.0f}s")
        if deadline is not None and deadline.left() <= 0:
            return DeadlinePassed()
        time.sleep(min(LEASE_POLL_S, max(0.0, limit - waited)))


class Exclusion:
    """``exclusive = true`` across xdist workers: a flow of a run-set that has exclusive flows
    holds a shared lock on the run's ``exclusive.lock`` while it runs, an exclusive flow the
    exclusive one. An exclusive flow that waits first takes ``exclusive-gate.lock``, which
    every flow passes on its way in: flows queued after it wait, the running ones drain, it runs
    alone (as in the pool). The locks are per run directory: this session only."""

    def __init__(self, state: FlowState) -> None:
        self.state = state
        self.fds: list[int] = []

    def enter(self, limit: float, deadline: GlobalDeadline | None) -> WaitOutcome:
        """:class:`Ready` once the flow may start; else :class:`Busy` (why) or
        :class:`DeadlinePassed`."""
        run = self.state.run
        if not any(flow.exclusive for flow in run.runset.flows):
            return Ready()
        exclusive = self.state.flow.exclusive
        started = time.monotonic()
        steps = [("exclusive-gate.lock", fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)]
        steps.append(("exclusive.lock", fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH))
        for name, mode in steps:
            fd = os.open(run.directory.path / name, os.O_RDWR | os.O_CREAT, 0o644)
            self.fds.append(fd)
            while True:
                try:
                    fcntl.flock(fd, mode | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    pass
                waited = time.monotonic() - started
                if waited >= limit:
                    self.leave()
                    if exclusive:
                        return Busy(f"other flows of the session still running for {waited:.0f}s")
                    return Busy(f"an exclusive flow of the session running for {waited:.0f}s")
                if deadline is not None and deadline.left() <= 0:
                    self.leave()
                    return DeadlinePassed()
                time.sleep(LEASE_POLL_S)
        if not exclusive:
            # Through the gate: an exclusive flow that comes later may close it behind us.
            os.close(self.fds.pop(0))
        return Ready()

    def leave(self) -> None:
        while self.fds:
            os.close(self.fds.pop())
