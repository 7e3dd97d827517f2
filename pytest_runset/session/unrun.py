"""Why flows of the own pool's run never started, and whether that must fail the run."""

from __future__ import annotations

from collections.abc import Iterable

from pytest_runset.engine.pool_supervision import PoolSupervisor
from pytest_runset.engine.scheduler import Scheduler
from pytest_runset.engine.state import FlowState
from pytest_runset.engine.supervision import Supervision, restarts_exhausted_message


def not_run_reason(
    supervision: Supervision, pool: PoolSupervisor, scheduler: Scheduler, drained: bool
) -> str:
    """Why the flows that never started did not (journaled as ``not_run``)."""
    if supervision.global_expired:
        return supervision.global_timeout_reason(not_run=True)
    if drained:
        return "not run: the run was stopped (pytest-runset stop --drain)"
    if pool.last_spawn_error and not scheduler.stopped:
        return f"not run: no worker could be started ({pool.last_spawn_error})"
    if supervision.restarts.exhausted and not scheduler.stopped:
        return restarts_exhausted_message(supervision.restarts.used)
    return "not run: run interrupted" if pool.stopping else "not run: dispatch stopped"


def left_without_workers(
    supervision: Supervision,
    pool: PoolSupervisor,
    scheduler: Scheduler,
    drained: bool,
    states: Iterable[FlowState],
) -> str | None:
    """Why flows were left ``not_run`` for want of a worker (none could start, or the
    restart budget ran out), or ``None``: such a run must not end green."""
    if supervision.global_expired or scheduler.stopped or pool.stopping:
        return None
    if not (pool.last_spawn_error or supervision.restarts.exhausted):
        return None
    unrun = [s for s in states if s.entry and s.entry["status"] == "not_run"]
    return not_run_reason(supervision, pool, scheduler, drained) if unrun else None
