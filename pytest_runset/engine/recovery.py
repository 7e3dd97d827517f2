"""Ending an attempt whose worker cannot finish it: a stuck worker killed at its backstop, a
worker that died. Both paths (the plugin's pool and a pytest-xdist worker) end such attempts
here, so that the same processes are swept and the same result recorded."""

from __future__ import annotations

from collections.abc import Callable

from pytest_runset.engine.entries import local_result
from pytest_runset.engine.pool import Pool
from pytest_runset.engine.supervision import crashed_message
from pytest_runset.gateway import containment, proctree
from pytest_runset.gateway.protocol import AttemptResult, AttemptStatus


def abandon_slot(
    pool: Pool,
    slot: int,
    *,
    attempt: int,
    cookie: str,
    status: AttemptStatus,
    message: str,
    sweep_browser: Callable[[], None],
    group: str | None = None,
    memory_max: int | None = None,
) -> AttemptResult:
    """End the attempt on ``slot`` without its worker: sweep a remote host's processes
    through its gateway, kill the gateway, sweep the worker's warm browser and the flow's
    processes by cookie. The gateway is *not* replaced here: see :class:`Restarts`."""
    remote = pool.workers[slot].remote
    leftovers = pool.sweep(slot, cookie) if remote else 0
    pool.kill(slot)
    sweep_browser()
    result = local_result(attempt, status, message)
    result["leftover_processes"] = leftovers or proctree.sweep_cookie(cookie)
    if not remote:
        _end_group(result, group, cookie, memory_max)
    return result


def _end_group(
    result: AttemptResult, group: str | None, cookie: str, memory_max: int | None
) -> None:
    """The attempt's cgroup (under the run's ``group``) outlived its worker: what is in it
    dies, what it used counts."""
    if group is None:
        return
    usage = containment.end_orphaned_attempt(group, cookie)
    if usage is not None:
        containment.orphaned_result(result, usage, memory_max)


def crashed_result(
    attempt: int,
    cookie: str,
    worker_id: str,
    sweep_browser: Callable[[], None],
    group: str | None = None,
    memory_max: int | None = None,
) -> AttemptResult:
    """The attempt of a worker that died: whatever of the flow survived it is killed (its
    cgroup, its cookie); a worker the kernel killed for the flow's memory limit makes the
    flow ``failed`` saying so."""
    sweep_browser()
    result = local_result(attempt, "error", crashed_message(worker_id))
    result["leftover_processes"] = proctree.sweep_cookie(cookie)
    _end_group(result, group, cookie, memory_max)
    return result
