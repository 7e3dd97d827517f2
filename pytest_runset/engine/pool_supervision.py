"""Supervision of the attempts running on a pool's slots: the run loop's side of
:mod:`pytest_runset.engine.supervision`.

The loop hands every gateway event here and asks, once per round, for the global timeout and
the backstops to be checked. What ends an attempt here (a lost worker, a stuck one, the
global deadline) ends it with the same words and the same sweeps as in a pytest-xdist worker;
a lost or stuck gateway is replaced within the run's restart budget.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator, Mapping

from pytest_runset.engine.pool import Event, Pool
from pytest_runset.engine.recovery import abandon_slot, crashed_result
from pytest_runset.engine.scheduler import Scheduler, Task
from pytest_runset.engine.state import FlowState
from pytest_runset.engine.supervision import AttemptWatch, Supervision, unresponsive_message
from pytest_runset.gateway import proctree
from pytest_runset.gateway.protocol import AttemptResult, AttemptStatus, finished_result


class PoolSupervisor:
    """Watches a pool's running attempts for one run; every decision comes from
    :class:`~pytest_runset.engine.supervision.Supervision`, every result goes to
    ``attempt_done`` (on the loop's thread)."""

    def __init__(
        self,
        pool: Pool,
        supervision: Supervision,
        states: Mapping[str, FlowState],
        *,
        scheduler: Callable[[], Scheduler],
        run_id: str,
        timeout_override: float | None,
        browser_workers: set[str],
        attempt_done: Callable[[FlowState, int, AttemptResult], None],
        say: Callable[[str], None],
        group: str | None = None,
    ) -> None:
        # The run's containment group (cgroup tier): an attempt whose worker is lost is
        # ended through it.
        self.group = group
        self.pool = pool
        self.supervision = supervision
        self.states = states
        self._scheduler = scheduler
        self.run_id = run_id
        self.timeout_override = timeout_override
        self.browser_workers = browser_workers
        self.attempt_done = attempt_done
        self.say = say
        # Set when the run is interrupted: lost gateways are not replaced any more.
        self.stopping = False
        self.last_spawn_error = ""
        # Slots whose gateway was refused (another release or Python): never replaced.
        self.refused: set[int] = set()

    @property
    def scheduler(self) -> Scheduler:
        return self._scheduler()

    def no_usable_gateway(self, workers: int) -> bool:
        return bool(self.refused) and len(self.refused) >= workers

    # -- gateway events ----------------------------------------------------------------------
    def handle(self, event: Event) -> None:
        """A gateway's event (a replaced gateway's last words are ignored)."""
        if not self.pool.current(event.slot, event.generation):
            return
        scheduler = self.scheduler
        if event.kind == "ready":
            scheduler.slot_up(event.slot)
        elif event.kind == "refused":
            # A gateway of another release or Python: never used, the others go on.
            self.last_spawn_error = str(event.data.get("error"))
            scheduler.slot_lost(event.slot)
            self.refused.add(event.slot)
            self.say(f"runset: gateway refused: {self.last_spawn_error}")
        elif event.kind == "finished":
            task = scheduler.running.get(event.slot)
            if task is not None:
                self.attempt_done(self.states[task.key], event.slot, finished_result(event.data))
            if event.data.get("retire"):
                # A flow's code is stuck inside the worker for good: give the slot a new one.
                scheduler.slot_down(event.slot)
                self.pool.kill(event.slot)
                self.sweep_browser(self.pool.workers[event.slot].worker_id)
                self.replace(event.slot)
        elif event.kind in ("died", "spawn_failed"):
            self._worker_lost(event)

    def sweep_browser(self, worker_id: str) -> None:
        """Kill a killed or lost worker's warm browser: it runs in a process group of its own,
        so only its cookie finds it (see docs/reliability.md)."""
        if worker_id in self.browser_workers:
            proctree.sweep_cookie(proctree.browser_cookie(self.run_id, worker_id))

    def _worker_lost(self, event: Event) -> None:
        if event.kind == "spawn_failed":
            self.last_spawn_error = event.data.get("error", "")
        task = self.scheduler.running.get(event.slot)
        self.scheduler.slot_down(event.slot)
        lost = self.pool.workers.get(event.slot)
        if lost is not None:
            self.sweep_browser(lost.worker_id)
        if task is not None:
            state = self.states[task.key]
            # The lost worker's browser was swept above.
            result = crashed_result(
                task.attempt,
                state.cookie,
                state.worker_id,
                lambda: None,
                group=None if lost is not None and lost.remote else self.group,
                memory_max=state.flow.memory_max,
            )
            self.attempt_done(state, event.slot, result)
        self.replace(event.slot)

    def replace(self, slot: int) -> None:
        """A new gateway for ``slot``, while the restart budget lasts."""
        if self.stopping or self.scheduler.stopped:
            return
        if not self.supervision.restarts.take():
            self.scheduler.slot_lost(slot)
            return
        self.pool.kill(slot)
        self.pool.spawn(slot)

    # -- deadlines ---------------------------------------------------------------------------
    def running_watches(self) -> Iterator[tuple[int, AttemptWatch]]:
        for slot, task in self.scheduler.running.items():
            watch = self.states[task.key].watch
            if watch is not None:
                yield slot, watch

    def next_wakeup(self, longest: float) -> float:
        watches = [watch for _, watch in self.running_watches()]
        return self.supervision.next_wakeup(watches, time.monotonic(), longest)

    def check_global_timeout(self) -> None:
        """At the run's deadline: start nothing more and stop what runs, as ``timeout``."""
        if not self.supervision.global_due():
            return
        self.scheduler.stop()
        reason = self.supervision.global_timeout_reason(not_run=False)
        now = time.monotonic()
        for slot, watch in self.running_watches():
            self.pool.send(slot, "cancel", watch.cancel(now, reason, "timeout"))

    def check_backstops(self) -> None:
        """Attempts whose worker did not answer by the backstop: killed, swept, replaced."""
        if self.supervision.paused:
            return
        now = time.monotonic()
        for slot, task in list(self.scheduler.running.items()):
            state = self.states[task.key]
            watch = state.watch
            if watch is None or not watch.overdue(now) or self._receiving(slot, now):
                continue
            timeout = self.timeout_override or state.flow.timeout_s
            self.abandon(slot, task, "timeout", unresponsive_message(timeout, state.worker_id))
            self.replace(slot)

    def _receiving(self, slot: int, now: float) -> bool:
        """A remote flow's files still arriving (a large transfer may outlast the backstop)."""
        receiver = self.pool.workers[slot].receiver
        last = receiver.last_chunk_at if receiver is not None else None
        return last is not None and now - last < self.supervision.margin

    def abandon(self, slot: int, task: Task, status: AttemptStatus, message: str) -> None:
        """End the attempt on ``slot`` without its worker and record ``status``."""
        state = self.states[task.key]
        result = abandon_slot(
            self.pool,
            slot,
            attempt=task.attempt,
            cookie=state.cookie,
            status=status,
            message=message,
            sweep_browser=functools.partial(self.sweep_browser, state.worker_id),
            group=self.group,
            memory_max=state.flow.memory_max,
        )
        self.scheduler.slot_down(slot)
        self.attempt_done(state, slot, result)
