"""Running flows inside pytest-xdist workers, one at a time, through pytest's own protocol.

Each xdist worker runs its flows through one local gateway of its own (started at the first flow
and kept warm), with the same runner, timeouts and process-tree kills as the run loop's pool.
A flow takes the same leases as in the pool (persona, ports, tag limits: file locks shared by
every process on the host), waiting for them at most its own timeout; it runs in its slug
directory inside the run directory the xdist controller opened, and its finished report entry
travels back to the controller on the flow's teardown report (see
:mod:`pytest_runset.xdist.controller`).

The flow runs during the item's setup, so that a flow that could not run (``error``) is a pytest
error exactly like in the run loop; the call phase then passes, fails or skips accordingly.
"""

from __future__ import annotations

import functools
import json
import queue
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from pytest_runset.engine.attempt import ContainmentPlan
from pytest_runset.engine.entries import local_result, unstarted_entry, unstarted_result
from pytest_runset.engine.lifecycle import (
    CANNOT_START,
    Outcome,
    conclude,
    prepare_attempt,
    record_attempt,
)
from pytest_runset.engine.marks import skip_reason
from pytest_runset.engine.pool import Pool
from pytest_runset.engine.scheduler import RETRYABLE
from pytest_runset.engine.state import FlowState, RunsetRun
from pytest_runset.engine.supervision import (
    UNREACHABLE,
    Busy,
    GlobalDeadline,
    Ready,
    Restarts,
    Supervision,
)
from pytest_runset.gateway import proctree
from pytest_runset.gateway.protocol import AttemptResult, AttemptStatus
from pytest_runset.model.flows import RunSet
from pytest_runset.resources.leases import LeaseError, Leaser, lock_directory
from pytest_runset.results.formats import FlowEntry, FlowStatus
from pytest_runset.results.report import RunDirectory
from pytest_runset.session.collect import FlowFailed, RunsetItem
from pytest_runset.session.flow_fixtures import fixture_failure
from pytest_runset.session.replay import flow_failure_text, properties, sections, skip_repr
from pytest_runset.session.settings import session_run_id, settings
from pytest_runset.xdist.controller import (
    ENTRY_ATTRIBUTE,
    WORKERINPUT_KEY,
    EntryPayload,
    RunInput,
)
from pytest_runset.xdist.supervised import service_failed, supervise_attempt, wait_while_paused
from pytest_runset.xdist.waits import Exclusion, take_leases

SINGLE_POOL = pytest.StashKey[Pool]()
WORKER_RUNS = pytest.StashKey[dict[str, RunsetRun]]()
WORKER_LEASER = pytest.StashKey[Leaser]()
FLOW_OUTCOME = pytest.StashKey["FinishedFlow"]()
READY_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class FinishedFlow:
    run: RunsetRun
    outcome: Outcome
    # Finished by an earlier session of this run (--runset-resume): not run again.
    resumed: bool = False
    # Stopped (or never started) by the run's global timeout: the controller's exit status.
    ended_by_global_timeout: bool = False


def _resumed_raw(status: FlowStatus) -> AttemptStatus:
    """What pytest is told again for a flow a resumed run already finished (as the run loop
    does): ``xpassed`` as passed, ``xfailed`` as failed, any other status as it is."""
    if status == "xpassed":
        return "passed"
    if status == "xfailed":
        return "failed"
    return status


def worker_slot(config: pytest.Config) -> tuple[int, str]:
    """``(N, "gwN")`` of this xdist worker: its ``RUNSET_SLOT`` and ``RUNSET_WORKER``."""
    workerinput = getattr(config, "workerinput", None)
    worker_id = str(workerinput.get("workerid", "gw0")) if workerinput else "gw0"
    digits = "".join(ch for ch in worker_id if ch.isdigit())
    return (int(digits) if digits else 0), worker_id


def _pool(config: pytest.Config) -> Pool:
    pool = config.stash.get(SINGLE_POOL, None)
    if pool is None:
        pool = Pool(1)
        pool.start()
        config.stash[SINGLE_POOL] = pool
    return pool


def shutdown(config: pytest.Config) -> None:
    pool = config.stash.get(SINGLE_POOL, None)
    if pool is not None:
        pool.shutdown()
        _sweep_browser(config)


def _sweep_browser(config: pytest.Config) -> None:
    """This xdist worker's warm browser runs in a process group of its own: find it by cookie."""
    proctree.sweep_cookie(proctree.browser_cookie(session_run_id(config), worker_slot(config)[1]))


def _wait_ready(pool: Pool) -> str | None:
    """``None`` once the gateway is up, else why it is not."""
    handle = pool.workers[0]
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not handle.ready:
        try:
            event = pool.events.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return "the flow's worker did not start in time"
        if event.kind == "spawn_failed":
            return f"the flow's worker could not start: {event.data['error']}"
        handle = pool.workers[0]
    return None


def _worker_run(item: RunsetItem) -> RunsetRun:
    """The controller's run of the item's run-set, as seen from this worker."""
    config = item.config
    runs = config.stash.setdefault(WORKER_RUNS, {})
    key = str(item.runset.path)
    run = runs.get(key)
    if run is not None:
        return run
    workerinput = getattr(config, "workerinput", None) or {}
    # What the controller gave (XdistRun.workerinput), through xdist's execnet channel.
    data: RunInput | None = (workerinput.get(WORKERINPUT_KEY) or {}).get(key)
    if data is None:
        raise FlowFailed(
            f"error: the xdist controller did not load {item.runset.path}; "
            "name run-set files with --runset or as paths on the command line"
        )
    directory = RunDirectory(Path(data["output_root"]), str(data["run_name"]))
    run = RunsetRun(
        item.runset,
        directory,
        data.get("base_url"),
        previous=dict(data.get("previous") or {}),
        started_at=data["started_at"],
    )
    run.service_values = dict(data.get("service_values") or {})
    run.service_error = data.get("service_error")
    run.service_tail = str(data.get("service_tail") or "")
    run.service_log = str(data.get("service_log") or "")
    runs[key] = run
    return run


def _containment_plan(config: pytest.Config, runset: RunSet) -> ContainmentPlan | None:
    """The controller's containment of the run (its group and cookie file), as the own
    pool's attempts carry it."""
    workerinput = getattr(config, "workerinput", None) or {}
    data: RunInput | None = (workerinput.get(WORKERINPUT_KEY) or {}).get(str(runset.path))
    if data is None or not data.get("containment_group"):
        return None
    return {
        "tier": settings(config).containment_override,
        "group": data["containment_group"],
        "cookie_file": data.get("cookie_file"),
    }


def _global_deadline(item: RunsetItem) -> GlobalDeadline | None:
    workerinput = getattr(item.config, "workerinput", None) or {}
    data = (workerinput.get(WORKERINPUT_KEY) or {}).get(str(item.runset.path)) or {}
    if data.get("global_deadline") is None:
        return None
    return GlobalDeadline(float(data["global_deadline"]), float(data["global_timeout"]))


def _leaser(config: pytest.Config) -> Leaser:
    leaser = config.stash.get(WORKER_LEASER, None)
    if leaser is None:
        try:
            leaser = Leaser(lock_directory())
        except LeaseError as exc:
            raise FlowFailed(f"error: {exc}") from None
        config.stash[WORKER_LEASER] = leaser
    return leaser


def _end_unstarted(state: FlowState, attempt: int, message: str, **tail: str) -> None:
    """An attempt that ends as ``error`` before it reached the gateway (as in the run loop)."""
    state.attempts.append(unstarted_result(attempt, message, **tail))


def _run_on_gateway(state: FlowState, attempt: int, supervision: Supervision) -> AttemptResult:
    """One attempt: prepared here, run by this worker's gateway, supervised as the run loop
    supervises its pool (:mod:`pytest_runset.engine.supervision`), recorded in ``state``."""
    config = state.item.config
    slot, worker_id = worker_slot(config)
    pool = _pool(config)
    problem = _wait_ready(pool)
    wait_while_paused(state.run.directory.path)
    lock_dir = lambda: _leaser(config).lock_dir  # noqa: E731
    try:
        built = prepare_attempt(
            config,
            state,
            slot=slot,
            worker_id=worker_id,
            attempt=attempt,
            run_id=session_run_id(config),
            timeout_override=settings(config).timeout_override,
            lock_dir=lock_dir,
            containment=_containment_plan(config, state.run.runset),
        )
    except CANNOT_START as exc:
        return record_attempt(state, local_result(attempt, "error", str(exc)), lock_dir)
    if problem is not None:
        return record_attempt(state, local_result(attempt, "error", problem), lock_dir)
    generation = pool.workers[0].generation
    if not pool.send(0, "run", built.spec):
        return record_attempt(state, local_result(attempt, "error", UNREACHABLE), lock_dir)
    return supervise_attempt(
        state,
        built,
        attempt,
        pool,
        supervision,
        generation=generation,
        worker_id=worker_id,
        run_id=session_run_id(config),
        lock_dir=lock_dir,
        sweep_browser=functools.partial(_sweep_browser, config),
        group=str(built.spec["containment"]["group"]),
    )


def _supervision(item: RunsetItem) -> Supervision:
    """This worker's supervision of the item's attempts: the ini's backstop margin, the
    controller's global deadline; a lost gateway is always replaced (one slot, no pool)."""
    return Supervision(
        margin=settings(item.config).backstop_margin,
        deadline=_global_deadline(item),
        restarts=Restarts(None),
    )


def run_flow(item: RunsetItem) -> FinishedFlow:
    """Run the flow with its retries, as the run loop would; the result is kept on the item."""
    config = item.config
    run = _worker_run(item)
    previous = run.previous.get(item.flow.slug)
    if previous is not None:
        return _resumed(item, run, previous)
    state = FlowState(item=item, flow=item.flow, run=run)
    resolved = settings(config)
    retries = resolved.retries_override
    allowed = (retries if retries is not None else item.flow.retries) + 1
    lease_limit = resolved.timeout_override or item.flow.timeout_s
    supervision = _supervision(item)
    deadline = supervision.deadline
    for attempt in range(1, allowed + 1):
        if attempt > 1:
            # --reruns-delay: the same wait the run loop's scheduler keeps before a retry.
            pause = resolved.retry_delay.before(attempt - 1)
            time.sleep(max(0.0, min(pause, deadline.left())) if deadline is not None else pause)
        if deadline is not None and deadline.left() <= 0:
            break
        if service_failed(run):
            _end_unstarted(
                state,
                attempt,
                run.service_error or "a service of the run failed",
                stderr_tail=run.service_tail,
                tail_source=run.service_log,
            )
            break
        exclusion = Exclusion(state)
        wait = exclusion.enter(lease_limit, deadline)
        if isinstance(wait, Ready):
            wait = take_leases(state, lambda: _leaser(config), lease_limit, deadline)
        if not isinstance(wait, Ready):
            exclusion.leave()
            if isinstance(wait, Busy):
                _end_unstarted(state, attempt, wait.reason)
            break
        try:
            result = _run_on_gateway(state, attempt, supervision)
        finally:
            exclusion.leave()
        if result.get("status") not in RETRYABLE or service_failed(run):
            # A flow whose service died is not retried against the dead service.
            break
    if not state.attempts:
        # The run's global deadline passed before the flow could start.
        assert deadline is not None
        reason = deadline.message(not_run=True)
        entry = unstarted_entry(item.flow, item.nodeid, "not_run", reason)
        last: AttemptResult = {"status": "not_run", "message": reason}
        outcome = Outcome(entry=entry, status="not_run", last=last, xfail_reason="")
        finished = FinishedFlow(run, outcome, ended_by_global_timeout=True)
        item.stash[FLOW_OUTCOME] = finished
        return finished
    outcome = conclude(
        state,
        fail_on_flaky=resolved.fail_on_flaky,
        session_started=run.started_at or time.time(),
    )
    ended = state.attempts[-1].get("ended_by") == "global_timeout"
    finished = FinishedFlow(run=run, outcome=outcome, ended_by_global_timeout=ended)
    item.stash[FLOW_OUTCOME] = finished
    return finished


def _resumed(item: RunsetItem, run: RunsetRun, entry: FlowEntry) -> FinishedFlow:
    status = entry["status"]
    last: AttemptResult = {
        "status": _resumed_raw(status),
        "message": entry.get("message", ""),
    }
    outcome = Outcome(entry=entry, status=status, last=last, xfail_reason="")
    finished = FinishedFlow(run=run, outcome=outcome, resumed=True)
    item.stash[FLOW_OUTCOME] = finished
    return finished


def setup_flow(item: pytest.Item) -> None:
    """``RunsetItem.setup`` inside an xdist worker: run the flow; a flow that could not run
    is a setup error, as in the run loop's reports."""
    assert isinstance(item, RunsetItem)
    finished = run_flow(item)
    outcome = finished.outcome
    if outcome.status == "error":
        raise FlowFailed(flow_failure_text(item, outcome.entry, outcome.last))


def call_flow(item: pytest.Item) -> None:
    """``RunsetItem.runtest``: pass, fail or skip as the flow did.

    pytest's own xfail handling sees the raw result, as the run loop's replay does.
    """
    assert isinstance(item, RunsetItem)
    finished = item.stash.get(FLOW_OUTCOME, None)
    if finished is None:
        raise FlowFailed("error: the flow did not run (its setup did not complete)")
    outcome = finished.outcome
    raw = str(outcome.last.get("status"))
    message = str(outcome.last.get("message") or "")
    if outcome.failed_as_flaky:
        raise FlowFailed(flow_failure_text(item, outcome.entry, outcome.last))
    if raw == "passed":
        return
    if raw == "skipped":
        pytest.skip(message or "skipped")
    if raw == "xfailed":
        pytest.xfail(message or "xfailed")
    if raw == "not_run":
        # pytest has no "not run": the flow shows as skipped, the report says not_run.
        pytest.skip(message)
    raise FlowFailed(flow_failure_text(item, outcome.entry, outcome.last))


def attach_entry(item: RunsetItem, call: pytest.CallInfo[None], report: pytest.TestReport) -> None:
    """Put what the controller needs on the flow's reports (they travel to it serialized)."""
    if report.failed and call.excinfo is not None and isinstance(call.excinfo.value, FlowFailed):
        # The flow's own failure text, never a traceback of this module (setup included).
        report.longrepr = str(call.excinfo.value)
    finished = item.stash.get(FLOW_OUTCOME, None)
    if report.when == "setup" and (report.skipped or report.failed) and finished is None:
        # Skipped by a mark (the flow's ``skip`` key, -m/-k are deselection, not this), or
        # its fixtures failed or skipped before it ran (session/flow_fixtures.py).
        status: FlowStatus = "error" if report.failed else "skipped"
        if report.failed:
            error = call.excinfo.value if call.excinfo is not None else None
            reason = fixture_failure(item, error) if error else report.longreprtext
        else:
            reason = skip_reason(item) or _skip_reason(report)
        try:
            run = _worker_run(item)
        except FlowFailed:
            return  # a run-set the controller does not know: nothing to report to it
        previous = run.previous.get(item.flow.slug)
        if previous is not None:
            _resumed(item, run, previous)
            return
        entry = unstarted_entry(item.flow, item.nodeid, status, reason)
        item.stash[FLOW_OUTCOME] = FinishedFlow(
            run=run, outcome=Outcome(entry=entry, status=status, last={}, xfail_reason="")
        )
        return
    if finished is None:
        return
    entry = finished.outcome.entry
    if report.skipped and not hasattr(report, "wasxfail") and report.when in ("setup", "call"):
        # Where the flow is, as in the run loop's reports, not where this module skipped it.
        report.longrepr = skip_repr(item, str(entry.get("message") or "skipped"))
    if report.when == "call":
        report.sections.extend(sections(finished.run.run_dir, entry))
        # For the controller's -v words (TIMEOUT, FLAKY): see session/teststatus.py.
        report.runset_status = entry["status"]  # type: ignore[attr-defined]
        report.runset_flaky = bool(entry.get("flaky", False))  # type: ignore[attr-defined]
    elif report.when == "teardown":
        report.user_properties.extend(properties(finished.run.run_dir, entry))
        payload: EntryPayload = {
            "runset": str(item.runset.path),
            "entry": entry,
            "resumed": finished.resumed,
            "ended_by_global_timeout": finished.ended_by_global_timeout,
        }
        setattr(report, ENTRY_ATTRIBUTE, json.dumps(payload, ensure_ascii=False, default=str))


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return "skipped"
