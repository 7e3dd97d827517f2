"""pytest-xdist's side of pytest-runset: hooks of the xdist controller and of its workers.

The controller (see :mod:`pytest_runset.xdist.controller`) opens the run before xdist starts its
workers, hands the run to them through ``workerinput``, hears of every finished flow through the
reports xdist relays, and writes the report at the end. A worker (see
:mod:`pytest_runset.xdist.worker`) puts each flow's report entry on its teardown report.
Registered by the plugin's ``pytest_configure``; light to import (the controller's and the
workers' modules are imported when they are needed).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import pytest

from pytest_runset.session.settings import (
    FLOW_EXECUTOR,
    RUN_ID,
    RUNS,
    output_root,
    session_run_id,
    settings,
    xdist_controller_session,
)

if TYPE_CHECKING:
    from pytest_runset.xdist.controller import XdistRun

XDIST_RUN = pytest.StashKey["XdistRun"]()


class XdistFlowExecutor:
    """Runs a flow item through pytest's protocol inside an xdist worker: the flow runs in
    its setup (a flow that could not run is a setup error, as in the run loop's reports) and
    its call passes, fails or skips as the flow did. Imported on first use only."""

    def setup(self, item: pytest.Item) -> None:
        from pytest_runset.xdist.worker import setup_flow

        setup_flow(item)

    def call(self, item: pytest.Item) -> None:
        from pytest_runset.xdist.worker import call_flow

        call_flow(item)


def pytest_configure(config: pytest.Config) -> None:
    config.stash[FLOW_EXECUTOR] = XdistFlowExecutor()


def shutdown_worker_pool(config: pytest.Config) -> None:
    """At the session's end: stop an xdist worker's gateway (if flows ever started one)."""
    worker = sys.modules.get("pytest_runset.xdist.worker")
    if worker is not None:
        worker.shutdown(config)


def xdist_run(config: pytest.Config) -> XdistRun | None:
    """The xdist controller's run of this session (``None`` elsewhere)."""
    return config.stash.get(XDIST_RUN, None)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    """xdist controller: open the run and start services before xdist starts its workers."""
    config = session.config
    if not xdist_controller_session(config) or config.option.collectonly:
        return
    from pytest_runset.xdist import controller as xdist_controller

    runsets = xdist_controller.controller_runsets(config)
    if not runsets:
        return
    resume = config.option.runset_resume
    if resume is not None:
        from pytest_runset.session.resume import resolve_resume

        root = output_root(config, next(iter(runsets.values())))
        config.stash[RUN_ID] = resolve_resume(config, resume, root)
    xrun = xdist_controller.XdistRun(config, runsets, session_run_id(config), resume=resume)
    xrun.workers = xdist_controller.xdist_worker_count(config)
    xrun.global_timeout = settings(config).global_timeout
    config.stash[XDIST_RUN] = xrun
    config.stash[RUNS] = xrun.runs
    # Its hooks hear of the flows' starts and reports (on the main thread, from xdist's loop).
    config.pluginmanager.register(xrun, "runset-xdist-controller")
    xrun.open()


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """pytest-xdist: every worker uses the controller's run id, run directories and services."""
    from pytest_runset.xdist.controller import WORKERINPUT_KEY

    node.workerinput["runset_run_id"] = session_run_id(node.config)
    xrun = xdist_run(node.config)
    node.workerinput[WORKERINPUT_KEY] = xrun.workerinput() if xrun is not None else {}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if hasattr(item, "flow") and hasattr(item.config, "workerinput"):
        from pytest_runset.session.collect import RunsetItem
        from pytest_runset.xdist.worker import FLOW_OUTCOME, attach_entry
        from pytest_runset.xdist.worker_plugins import report_to_plugins

        if not isinstance(item, RunsetItem):
            return report

        attach_entry(item, call, report)
        finished = item.stash.get(FLOW_OUTCOME, None)
        if finished is not None:
            report_to_plugins(item, report, finished)
    return report


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> Any:
    # Inside every other wrapper and after xdist has torn its workers down, before the
    # terminal summary: the report then holds every flow that reported.
    try:
        return (yield)
    finally:
        xrun = xdist_run(session.config)
        if xrun is not None:
            dsession = session.config.pluginmanager.get_plugin("dsession")
            stop = getattr(dsession, "shouldstop", False)
            stopped = bool(stop) and "keyboard-interrupt" not in str(stop)
            interrupted = session.exitstatus == pytest.ExitCode.INTERRUPTED and not stopped
            refused = xrun.finish(interrupted=interrupted, stopped=stopped)
            if refused is not None:
                # The disk refused a report: one line, and the session ends as interrupted.
                reporter = session.config.pluginmanager.get_plugin("terminalreporter")
                if reporter is not None:
                    reporter.write_line(refused, red=True, bold=True)
                session.exitstatus = pytest.ExitCode.INTERRUPTED
            if xrun.global_expired and session.exitstatus == pytest.ExitCode.OK:
                # Unstarted flows are a failure of the run even when nothing that ran failed.
                session.exitstatus = pytest.ExitCode.TESTS_FAILED
