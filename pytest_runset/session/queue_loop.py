"""The run loop of a session with a coordinator: its queue's flows, and a coordinator lost.

:class:`CoordinatedRunLoop` is the plugin's own run loop (:class:`~.runloop.FlowRunLoop`)
with three seams used:

- *dispatch*: before each round, the loop seeds or joins the shared queue, gives the flows of
  dead sessions back to it (every :data:`POLL_S`), and pulls as many flows as
  :meth:`~pytest_runset.engine.queue_scheduler.QueueScheduler.wants` (the decisions are the
  pure scheduler's; this module only talks to Redis);
- *attempt done*: a retry goes back to the queue; a flow that ended is marked done there,
  fenced by its token (a session whose flow was reclaimed meanwhile is told, and the flow's
  entry carries the warning);
- *reports*: the report lists the flows this session ran, plus a ``queue`` object. The flows
  other sessions ran are reported to pytest as *deselected* once the run is over: this
  session neither passed nor failed them, and ``pytest-runset merge`` of all the sessions'
  reports is the whole run.

A coordinator that stops answering ends the session as a full disk does: nothing new starts,
running flows finish and are journaled, the report is written, and one line says how to go
on (``--runset-resume`` once the coordinator is back).
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from pytest_runset.engine.lifecycle import conclude, record_attempt
from pytest_runset.engine.queue_scheduler import LostTooOften, QueueScheduler, disposition
from pytest_runset.engine.scheduler import Task
from pytest_runset.engine.state import FlowState
from pytest_runset.gateway.protocol import AttemptResult
from pytest_runset.resources.coordinator import redis_errors
from pytest_runset.resources.shared_queue import HeldTask, QueueMismatch
from pytest_runset.results.formats import QueueInfo
from pytest_runset.session.coordination import COORDINATION, QUEUE_INFO, Coordination
from pytest_runset.session.runloop import FlowRunLoop

# How often the loop looks for lost sessions and for the end of the queue.
POLL_S = 0.5


class CoordinatedRunLoop(FlowRunLoop):
    """The run loop of a session with a coordinator (see the module's docstring)."""

    def __init__(self, session: pytest.Session, **kwargs: Any) -> None:
        super().__init__(session, **kwargs)
        self.coordination: Coordination = self.config.stash[COORDINATION]
        self.queue = self.coordination.queue
        if self.queue is not None:
            self.scheduling = QueueScheduler
            self.coordination.coordinator.add_renewer(self.queue.beat)
        # The flows this session holds in the queue (pulled, not yet done or put back).
        self.held: dict[str, HeldTask] = {}
        # Flows whose attempt ran here and whose next attempt went back to the queue.
        self.handed_off: set[str] = set()
        self.role: str | None = None
        self.pulled = 0
        self.handed_back = 0
        self.total = 0
        self._next_poll = 0.0

    # -- dispatch ----------------------------------------------------------------------------
    def _dispatch(self) -> None:
        if self.coordination.stopped_by is None:
            try:
                self._coordinate()
            except redis_errors() as exc:
                self._lose(self.coordination.coordinator.describe(exc))
            problem = self.coordination.coordinator.problem
            if problem is not None and self.coordination.stopped_by is None:
                self._lose(problem)
        super()._dispatch()

    def _coordinate(self) -> None:
        scheduler = self.scheduler
        if self.queue is None or not isinstance(scheduler, QueueScheduler):
            return
        if not scheduler.seeded:
            keys = scheduler.seed()
            try:
                self.role, self.total = self.queue.seed(
                    self.coordination.digest, keys, self._runset_names()
                )
            except QueueMismatch as exc:
                raise pytest.UsageError(str(exc)) from None
        now = time.monotonic()
        if now >= self._next_poll:
            self._next_poll = now + POLL_S
            self.queue.reclaim()
            scheduler.queue_ended = self.queue.ended()
        for _ in range(scheduler.wants()):
            held = self.queue.pull()
            if held is None:
                break
            self._take(held, scheduler)

    def _take(self, held: HeldTask, scheduler: QueueScheduler) -> None:
        assert self.queue is not None
        key = held["key"]
        self.pulled += 1
        state = self.states.get(key)
        entry = state.entry if state is not None else None
        if state is None or entry is not None:
            # Ended here already (a resumed run's flow): the queue learns its status.
            self.queue.finish(
                held,
                str(entry["status"]) if entry else "not_run",
                int(entry["attempts"]) if entry else 0,
            )
            return
        self.held[key] = held
        self.handed_off.discard(key)
        verdict = disposition(held["attempt"], held["requeues"], held["lost_host"])
        if isinstance(verdict, LostTooOften):
            self._end_unstarted(Task(key, held["attempt"]), verdict.message)
        else:
            scheduler.add(key, verdict.attempt)

    def _runset_names(self) -> str:
        return ", ".join(sorted({run.runset.name for run in self.runs.values()}))

    def _lose(self, problem: str) -> None:
        """The coordinator went away: start nothing more, let running flows finish."""
        self.coordination.stopped_by = (
            f"runset: {problem}; running flows finished and were journaled, the rest did not "
            f"start: once it is back, run again with --runset-resume {self.run_id}"
        )
        self._say(f"runset: {problem}: starting no more flows")
        self.scheduler.stop()

    @property
    def _talking(self) -> bool:
        return self.queue is not None and self.coordination.stopped_by is None

    # -- results -----------------------------------------------------------------------------
    def _attempt_done(self, state: FlowState, slot: int, result: AttemptResult) -> None:
        if not isinstance(self.scheduler, QueueScheduler):
            super()._attempt_done(state, slot, result)
            return
        result = record_attempt(state, result, self._lock_dir)
        # A flow whose service died is not retried against the dead service.
        ended = "aborted" if state.run.service_error else str(result["status"])
        retry = self.scheduler.finished(slot, ended, time.monotonic())
        if retry is None:
            self._finalize(state)
            return
        key = state.item.nodeid
        held = self.held.pop(key, None)
        self.handed_off.add(key)
        self.handed_back += 1
        if held is not None and self._talking:
            self._call(lambda: self.queue.put_back(held, retry.attempt))  # type: ignore[union-attr]

    def _finalize(self, state: FlowState) -> None:
        held = self.held.pop(state.item.nodeid, None)
        if held is not None and self._talking and state.attempts:
            assert self.queue is not None
            queue = self.queue
            if self.interrupted:
                # Stopped here, not finished: whichever session is free runs it again.
                self._call(lambda: queue.put_back(held, held["attempt"]))
            else:
                status = conclude(
                    state, fail_on_flaky=self.announcer.fail_on_flaky, session_started=0.0
                ).status
                kept = self._call(lambda: queue.finish(held, status, len(state.attempts)))
                if kept is False:
                    last = state.attempts[-1]
                    last["warnings"] = [
                        *last.get("warnings", []),
                        "the queue had given this flow to another session (this session's "
                        "heartbeat lapsed): it may have run twice",
                    ]
        super()._finalize(state)

    def _call(self, action: Any) -> bool | None:
        """One Redis call from the loop; a failure stops the session (``None``)."""
        try:
            return bool(action())
        except redis_errors() as exc:
            self._lose(self.coordination.coordinator.describe(exc))
            return None

    # -- the end ---------------------------------------------------------------------------
    def _write_reports(self) -> None:
        if self.queue is not None:
            self._leave_queue()
        super()._write_reports()

    def _leave_queue(self) -> None:
        """Give back what this session pulled and never started, and keep only the flows it
        ran in its report; the others are deselected (another session ran them)."""
        assert self.queue is not None
        queue = self.queue
        scheduler = self.scheduler
        if isinstance(scheduler, QueueScheduler) and self._talking:
            for task in scheduler.pulled():
                held = self.held.pop(task.key, None)
                if held is not None:
                    self.handed_back += 1
                    self._call(lambda held=held, task=task: queue.put_back(held, task.attempt))
            scheduler.drop([task.key for task in scheduler.pulled()])
        elsewhere = [
            key
            for key, state in self.states.items()
            if state.entry is None and (not state.attempts or key in self.handed_off)
        ]
        items = [self.states.pop(key).item for key in elsewhere]
        if items:
            self.config.hook.pytest_deselected(items=items)
        if self._talking:
            self._call(queue.leave)
        coordinator = self.coordination.coordinator
        info: QueueInfo = {
            "name": queue.name,
            "session": coordinator.session,
            "host": coordinator.host,
            "role": "seeded" if self.role == "seeded" else "joined",
            "coordinator": coordinator.url.shown,
            "digest": self.coordination.digest,
            "total": self.total,
            "ran": len(self.states),
            "pulled": self.pulled,
            "handed_back": self.handed_back,
        }
        self.config.stash[QUEUE_INFO] = info
