"""One attempt on an xdist worker's own gateway, supervised as the run loop supervises its
pool (:mod:`pytest_runset.engine.supervision`): backstop, global deadline, a dead service,
a lost gateway; and paused like the pool (``pytest-runset pause``, Ctrl-Z on the terminal),
the flow frozen and every clock stopped."""

from __future__ import annotations

import json
import queue
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pytest_runset.engine.attempt import Attempt
from pytest_runset.engine.lifecycle import record_attempt
from pytest_runset.engine.pool import Pool
from pytest_runset.engine.recovery import abandon_slot, crashed_result
from pytest_runset.engine.state import FlowState, RunsetRun
from pytest_runset.engine.supervision import (
    SERVICE_FAILED_NAME,
    Supervision,
    unresponsive_message,
)
from pytest_runset.gateway.protocol import AttemptResult, finished_result
from pytest_runset.session.live_control import RunControl, requested_pause
from pytest_runset.session.pausing import PauseDriver

# How often a waiting worker looks for a dead service (the controller's note) and for a pause.
SERVICE_POLL_S = 0.5
_PAUSE_POLL_S = 0.1


def wait_while_paused(run_dir: Path) -> None:
    """A paused run starts no new flow on this worker either."""
    while requested_pause(run_dir):
        time.sleep(_PAUSE_POLL_S)


def supervise_attempt(
    state: FlowState,
    built: Attempt,
    attempt: int,
    pool: Pool,
    supervision: Supervision,
    *,
    generation: int,
    worker_id: str,
    run_id: str,
    lock_dir: Callable[[], Path],
    sweep_browser: Callable[[], None],
    group: str | None = None,
) -> AttemptResult:
    """Wait for the attempt sent to ``pool``'s gateway; return its recorded result."""
    watch = state.watch = supervision.watch(
        state.dispatched_at, built.timeout_s, state.flow.kill_grace_s
    )
    ended_by: Literal["global_timeout", "service"] | None = None
    run = state.run
    pausing = PauseDriver(
        RunControl([run.directory.path], run_id),
        pool,
        supervision,
        lambda: [(0, watch)],
        lambda paused_s: None,
    )
    with pausing.signals():
        while True:
            pausing.apply()
            wait = min(watch.left(time.monotonic()), SERVICE_POLL_S)
            if supervision.deadline is not None and not watch.cancelled:
                wait = min(wait, supervision.deadline.left())
            if supervision.paused:
                wait = _PAUSE_POLL_S
            try:
                event = pool.events.get(timeout=max(0.0, wait))
            except queue.Empty:
                now = time.monotonic()
                pausing.forgive_own_stall(now)
                if not watch.cancelled and service_failed(run):
                    # A service the flow relies on died: the flow ends as error, as in the pool.
                    ended_by = "service"
                    reason = run.service_error or "a service of the run failed"
                    pool.send(0, "cancel", watch.cancel(now, reason, "error"))
                elif not watch.cancelled and supervision.global_due():
                    # The run's global deadline: the flow stops as a timeout, as in the pool.
                    ended_by = "global_timeout"
                    reason = supervision.global_timeout_reason(not_run=False)
                    pool.send(0, "cancel", watch.cancel(now, reason, "timeout"))
                elif not supervision.paused and watch.overdue(now):
                    # The gateway did not answer in time: stop trusting it.
                    result = abandon_slot(
                        pool,
                        0,
                        attempt=attempt,
                        cookie=built.cookie,
                        status="timeout",
                        message=unresponsive_message(built.timeout_s, worker_id),
                        sweep_browser=sweep_browser,
                        group=group,
                        memory_max=state.flow.memory_max,
                    )
                    replace_gateway(pool, supervision)
                    return _recorded(state, result, ended_by, lock_dir)
                continue
            if event.generation != generation:
                continue
            if event.kind == "finished":
                if event.data.get("retire"):
                    # A flow's code is stuck inside the worker for good: give it a new one.
                    pool.kill(0)
                    sweep_browser()
                    replace_gateway(pool, supervision)
                return _recorded(state, finished_result(event.data), ended_by, lock_dir)
            if event.kind in ("died", "spawn_failed"):
                result = crashed_result(
                    attempt,
                    built.cookie,
                    worker_id,
                    sweep_browser,
                    group=group,
                    memory_max=state.flow.memory_max,
                )
                replace_gateway(pool, supervision)
                return _recorded(state, result, ended_by, lock_dir)


def replace_gateway(pool: Pool, supervision: Supervision) -> None:
    if supervision.restarts.take():
        pool.spawn(0)


def _recorded(
    state: FlowState,
    result: AttemptResult,
    ended_by: Literal["global_timeout", "service"] | None,
    lock_dir: Callable[[], Path],
) -> AttemptResult:
    if ended_by is not None:
        result["ended_by"] = ended_by
    return record_attempt(state, result, lock_dir)


def service_failed(run: RunsetRun) -> bool:
    """Whether a service of the run failed (at start, or since: the controller's note)."""
    if run.service_error:
        return True
    try:
        note = json.loads((run.directory.path / SERVICE_FAILED_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    run.service_tail = str(note.get("tail") or "")
    run.service_log = str(note.get("log") or "")
    run.service_error = str(note.get("message") or "a service of the run failed")
    return True
