"""The session's flows on pytest-runset's own pool: from collected items to reports and exit.

``pytest_runtestloop`` hands over here when the session has flows and pytest-xdist does not
distribute them. However the loop ends (done, Ctrl-C, SIGTERM, an error), every run's
``report.json`` is written and every run directory closed before control returns to pytest.
"""

from __future__ import annotations

import pytest

from pytest_runset.engine.interrupts import deferred_interrupts
from pytest_runset.engine.state import RunsetRun
from pytest_runset.resources.cluster_leases import ClusterLeaser
from pytest_runset.resources.leases import LeaseError, Leaser, lock_directory
from pytest_runset.resources.requirements import needs_leases
from pytest_runset.session.collect import RunsetItem
from pytest_runset.session.containment import RunContainment, start_containment
from pytest_runset.session.coordination import Coordination, open_coordination
from pytest_runset.session.debugging import TerminalPool, terminal_flow
from pytest_runset.session.queue_loop import CoordinatedRunLoop
from pytest_runset.session.resume import resolve_resume
from pytest_runset.session.runloop import FlowRunLoop
from pytest_runset.session.runs import open_runs, storage_stop_line
from pytest_runset.session.scaleout import check_workers, resolve
from pytest_runset.session.settings import (
    OWN_N,
    RUN_ID,
    RUNS,
    output_root,
    resolve_workers,
    session_run_id,
    settings,
)


def run_flows(session: pytest.Session, flows: list[RunsetItem], others: list[pytest.Item]) -> None:
    """Run ``flows`` on the pool (``others``, ordinary tests, here in between), then report.

    Raises ``session.Failed`` when the run failed for a reason no flow's status shows (no
    usable gateway, the global timeout), as pytest's own ``-x`` does.
    """
    config = session.config
    runsets = {str(item.runset.path): item.runset for item in flows}
    resume = config.option.runset_resume
    if resume is not None:
        first = next(iter(runsets.values()))
        config.stash[RUN_ID] = resolve_resume(config, resume, output_root(config, first))
    run_id = session_run_id(config)
    debugged = terminal_flow(config, flows)
    # A flow under the debugger runs here, on the terminal, whatever gateways were asked for.
    scaleout = resolve(config, list(runsets.values())) if debugged is None else None
    if scaleout is not None:
        check_workers(config, scaleout, config.stash.get(OWN_N, False))
    workers = (
        len(scaleout.gateways)
        if scaleout is not None
        else resolve_workers(config, list(runsets.values()))
    )
    runs: dict[str, RunsetRun] = {}
    loop: FlowRunLoop | None = None
    containment: RunContainment | None = None
    # Before any run directory: an unreachable coordinator or a foreign queue is exit 4.
    coordination = open_coordination(config, flows)
    try:
        # From the first run directory on, an interrupt must still end in a written report.
        with deferred_interrupts():
            open_runs(config, runsets, run_id, resume, runs)
            # After the run directories: a run id in use by a live session was refused there.
            containment = start_containment(
                config,
                run_id,
                list(runsets.values()),
                [run.directory.path for run in runs.values()],
            )
            loop = (FlowRunLoop if coordination is None else CoordinatedRunLoop)(
                session,
                items=flows,
                runs=runs,
                workers=workers,
                run_id=run_id,
                settings=settings(config),
                leaser=leaser_for(flows, coordination),
                scaleout=scaleout,
                pool=TerminalPool(config, debugged) if debugged is not None else None,
            )
            config.stash[RUNS] = runs
        loop.run(others)
    except KeyboardInterrupt:
        if loop is not None:
            loop.interrupted = True
        raise
    finally:
        try:
            if loop is not None:
                loop.write_reports()
        finally:
            for run in runs.values():
                run.directory.close()
            if containment is not None:
                containment.close()
            if coordination is not None:
                coordination.close()
    if loop.drained:
        pytest.exit("runset: stopped by pytest-runset stop --drain", returncode=2)
    if loop.storage_error is not None:
        raise session.Interrupted(storage_stop_line(loop.storage_error, run_id))
    if coordination is not None and coordination.stopped_by is not None:
        raise session.Interrupted(coordination.stopped_by)
    if session.testsfailed and config.option.maxfail and session.shouldfail:
        raise session.Failed(session.shouldfail)
    if loop.no_usable_gateway:
        reason = f"runset: no gateway can run flows ({loop.last_spawn_error})"
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(reason, red=True, bold=True)
        raise session.Failed(reason)
    unrun = loop.left_without_workers()
    if unrun is not None:
        # Flows that never ran are not pytest results: without this, "no tests ran" exits 0.
        reason = f"runset: flows left unrun: {unrun.removeprefix('not run: ')}"
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(reason, red=True, bold=True)
        raise session.Failed(reason)
    if loop.supervision.global_expired:
        # Unstarted flows are a failure of the run even when nothing that ran failed.
        raise session.Failed(loop.supervision.global_timeout_reason(not_run=False))


def leaser_for(flows: list[RunsetItem], coordination: Coordination | None = None) -> Leaser | None:
    """A leaser on the per-user lock directory, when some flow or service needs one; with a
    coordinator, one whose personas and tag limits hold across machines."""
    needed = any(
        needs_leases(item.flow, item.runset) or item.flow.workspace != "none" for item in flows
    ) or any(item.runset.settings.services for item in flows)
    if not needed:
        return None
    try:
        if coordination is not None:
            return ClusterLeaser(lock_directory(), coordination.coordinator)
        return Leaser(lock_directory())
    except LeaseError as exc:
        raise pytest.UsageError(str(exc)) from None
