"""The run loop of a session with a coordinator: its queue's flows, and a coordinator lost.

:class:`CoordinatedRunLoop` is the plugin's own run loop (:class:`~.runloop.FlowRunLoop`)
with four seams used:

- *dispatch*: before each round, the loop seeds or joins the shared queue, gives the flows of
  dead sessions back to it (every :data:`POLL_S`), and pulls as many flows as
  :meth:`~pytest_runset.engine.queue_scheduler.QueueScheduler.wants` (the decisions are the
  pure scheduler's; this module only talks to Redis);
- *ready*: every flow holds the coordinator's cluster-wide gate while it runs, an exclusive
  flow alone (:class:`~pytest_runset.resources.cluster_leases.ClusterGate`): it runs with no
  flow of any session next to it, and waits for the running ones;
- *attempt done*: a retry goes back to the queue, after its delay (``--reruns-delay``) and
  with the attempts it had, so the session that ends the flow reports them all (a pass on a
  retry is flaky wherever it ran); a flow that ended is marked done there, fenced by its
  token (a session whose flow was reclaimed meanwhile is told, and the flow's entry carries
  the warning);
- *reports*: the report lists the flows this session ran, plus a ``queue`` object. The flows
  other sessions ran are reported to pytest as *deselected* once the run is over: this
  session neither passed nor failed them, and ``pytest-runset merge`` of all the sessions'
  reports is the whole run.

A coordinator that stops answering ends the session as a full disk does: nothing new starts,
running flows finish and are journaled, the report is written, and one line says how to go
on (``--runset-resume`` once the coordinator is back).
"""

from __future__ import annotations

import math
import time
from typing import Any, cast

import pytest

from pytest_runset.engine.lifecycle import conclude, record_attempt
from pytest_runset.engine.queue_scheduler import LostTooOften, QueueScheduler, disposition
from pytest_runset.engine.scheduler import Task
from pytest_runset.engine.state import FlowState
from pytest_runset.gateway.protocol import AttemptResult, AttemptStatus
from pytest_runset.resources.cluster_leases import ClusterGate
from pytest_runset.resources.coordinator import redis_errors
from pytest_runset.resources.leases import Lease
from pytest_runset.resources.shared_queue import EarlierAttempt, HeldTask, QueueMismatch
from pytest_runset.results.formats import QueueInfo
from pytest_runset.session.coordination import COORDINATION, QUEUE_INFO, Coordination
from pytest_runset.session.runloop import FlowRunLoop

# How often the loop looks for lost sessions and for the end of the queue.
POLL_S = 0.5
# How often an idle session (nothing running or pulled here) asks whether the queue ended:
# the last session to notice the end is the pipeline's makespan, so it asks at every round of
# the loop (at most 4 a second) rather than every POLL_S.
IDLE_POLL_S = 0.1
# How long the gate's refusal of a share stands for the other flows of this session: one
# dispatch round asks the coordinator once, not once per waiting flow.
GATE_REFUSAL_S = 0.1


class CoordinatedRunLoop(FlowRunLoop):
    """The run loop of a session with a coordinator (see the module's docstring)."""

    def __init__(self, session: pytest.Session, **kwargs: Any) -> None:
        super().__init__(session, **kwargs)
        self.coordination: Coordination = self.config.stash[COORDINATION]
        self.queue = self.coordination.queue
        self.cluster_gate = ClusterGate(self.coordination.coordinator)
        # Flows that wait for the gate now: no lease clock runs for them (see _ready).
        self.gate_waits: set[str] = set()
        # The gate's last refusal of a share, and when: a dispatch round may ask for
        # thousands of flows, and the answer holds for all of them (see _ready).
        self._refused: tuple[float, str] = (-math.inf, "")
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
        self._next_idle_poll = 0.0

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
        idle = not scheduler.running and not list(scheduler.pulled())
        if idle and not scheduler.queue_ended and now >= self._next_idle_poll:
            self._next_idle_poll = now + IDLE_POLL_S
            scheduler.queue_ended = self.queue.ended()

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
        _carry_in(state, held.get("earlier", []))
        verdict = disposition(held["attempt"], held["requeues"], held["lost_host"])
        if isinstance(verdict, LostTooOften):
            self._end_unstarted(Task(key, held["attempt"]), verdict.message)
        else:
            scheduler.add(key, verdict.attempt)

    def _ready(self, task: Task) -> str | None:
        """The cluster-wide gate first (shared, or alone for an exclusive flow), then the
        flow's own leases; a flow that cannot have both holds neither."""
        state = self.states[task.key]
        exclusive = state.flow.exclusive
        now = time.monotonic()
        if not exclusive and now - self._refused[0] < GATE_REFUSAL_S:
            self.gate_waits.add(task.key)
            return self._refused[1]
        try:
            hold, reason = self.cluster_gate.take(exclusive)
        except redis_errors() as exc:
            # The next dispatch round stops the session (see _dispatch).
            self.coordination.coordinator.problem = self.coordination.coordinator.describe(exc)
            return "the coordinator does not answer"
        if hold is None:
            self.gate_waits.add(task.key)
            if not exclusive:
                self._refused = (now, str(reason))
            return reason
        self.gate_waits.discard(task.key)
        reason = super()._ready(task)
        if reason is not None:
            hold.release()
            return reason
        # Released with the flow's other leases once the attempt's processes are gone.
        state.lease = state.lease or Lease()
        state.lease.locks.append(hold)
        return None

    def _lease_wait_limit(self, key: str) -> float:
        # Waiting for an exclusive flow (or, for one, for the cluster to drain) is waiting
        # for a worker, as it is within a session: it never ends the flow.
        return math.inf if key in self.gate_waits else super()._lease_wait_limit(key)

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
        now = time.monotonic()
        retry = self.scheduler.finished(slot, ended, now)
        if retry is None:
            self._finalize(state)
            return
        key = state.item.nodeid
        held = self.held.pop(key, None)
        self.handed_off.add(key)
        self.handed_back += 1
        if held is not None and self._talking:
            queue = self.queue
            assert queue is not None
            earlier = self._earlier(state, held, retry.attempt)
            # The scheduler set the retry's delay on this session's clock; the queue keeps it
            # on the server's, so no session pulls the retry before it is due.
            delay = max(0.0, retry.not_before - now) if retry.not_before else 0.0
            self._call(lambda: queue.put_back(held, retry.attempt, earlier=earlier, delay_s=delay))

    def _earlier(self, state: FlowState, held: HeldTask, before: int) -> list[EarlierAttempt]:
        """The flow's attempts before attempt ``before``, as the queue carries them: those
        it came with, then this session's own."""
        carried = {entry["attempt"]: entry for entry in held.get("earlier", [])}
        coordinator = self.coordination.coordinator
        for attempt in state.attempts:
            number = int(attempt.get("attempt") or 0)
            if number in carried or number >= before:
                continue
            carried[number] = EarlierAttempt(
                attempt=number,
                status=str(attempt.get("status")),
                duration_s=attempt.get("duration_s"),
                exit_code=attempt.get("exit_code"),
                started_at=attempt.get("started_at"),
                dir=attempt.get("dir"),
                host=coordinator.host,
                session=coordinator.session,
            )
        return [carried[number] for number in sorted(carried) if number < before]

    def _finalize(self, state: FlowState) -> None:
        held = self.held.pop(state.item.nodeid, None)
        if held is not None and self._talking and state.attempts:
            assert self.queue is not None
            queue = self.queue
            if self.interrupted:
                # Stopped here, not finished: whichever session is free runs it again.
                earlier = self._earlier(state, held, held["attempt"])
                self._call(lambda: queue.put_back(held, held["attempt"], earlier=earlier))
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


def _carry_in(state: FlowState, earlier: list[EarlierAttempt]) -> None:
    """Put the attempts a pulled retry carries before this session's own, so the flow's
    entry counts them (``attempts``, ``history``, ``flaky``). Their logs stay in the run
    directory of the session that ran them, which the message names."""
    known = {int(attempt.get("attempt") or 0) for attempt in state.attempts}
    for entry in earlier:
        if entry["attempt"] in known:
            continue
        where = f"session {entry['session']} on {entry['host']}"
        state.attempts.append(
            AttemptResult(
                attempt=entry["attempt"],
                status=cast(AttemptStatus, entry["status"]),
                exit_code=entry["exit_code"],
                message=f"ran in {where} (its run directory holds {entry['dir'] or 'nothing'})",
                metrics={},
                artifacts=[],
                warnings=[],
                started_at=entry["started_at"] or 0.0,
                duration_s=entry["duration_s"] or 0.0,
                dir=None,
                worker=where,
            )
        )
    state.attempts.sort(key=lambda attempt: int(attempt.get("attempt") or 0))
