"""pytest's entry point for pytest-runset: hook implementations, and nothing else.

Each hook hands over to the session layer. Importing this module costs only pytest and the
session's settings: heavy modules (pydantic, execnet, filelock, playwright) are imported inside
the hooks, once a run-set is collected or a runset option is used, so that a pytest session
without run-sets pays almost nothing for the plugin being installed.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_runset.session.settings import (
    EXPLICIT,
    LOADED,
    RUNS,
    is_runset_path,
    xdist_distributing,
)

if TYPE_CHECKING:
    from pytest_runset.results.formats import RunReport


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from pytest_runset import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    from pytest_runset.session.options import register

    register(parser, pluginmanager)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    from pytest_runset.session import history
    from pytest_runset.session.configure import configure_session
    from pytest_runset.xdist import hooks as xdist_hooks

    config.addinivalue_line("markers", "runset: a flow of a pytest-runset run-set file")
    configure_session(config)
    if not config.pluginmanager.has_plugin("runset-history"):
        # Records durations from each run's report (its pytest_runset_report).
        config.pluginmanager.register(history, "runset-history")
    # pytest-xdist's side: the controller keeps the run, its workers run the flows.
    if not config.pluginmanager.is_registered(xdist_hooks):
        config.pluginmanager.register(xdist_hooks, "runset-xdist")


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    explicit = parent.config.stash.get(EXPLICIT, set())
    if is_runset_path(file_path) or file_path.resolve() in explicit:
        from pytest_runset.session.collect import RunsetFile

        return RunsetFile.from_parent(parent, path=file_path)
    return None


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Last, so that -k, -m and --lf have chosen first: shards split what is selected.
    if config.option.runset_shard is not None:
        from pytest_runset.session.shards import select_shard

        select_shard(config, items)


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> bool | None:
    config = session.config
    if config.option.collectonly or xdist_distributing(config):
        return None
    if not config.stash.get(LOADED, None):
        return None  # no run-set was collected: not a session of ours
    from pytest_runset.session.collect import RunsetItem

    flows = [item for item in session.items if isinstance(item, RunsetItem)]
    if not flows:
        return None
    if session.testsfailed and not config.option.continue_on_collection_errors:
        raise session.Interrupted(
            f"{session.testsfailed} error{'s' if session.testsfailed != 1 else ''} "
            "during collection"
        )
    from pytest_runset.session.driver import run_flows
    from pytest_runset.session.headed import prepare_debugging

    prepare_debugging(config, flows)
    others = [item for item in session.items if not isinstance(item, RunsetItem)]
    run_flows(session, flows, others)
    return True


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> bool | None:
    """A flow's results arrive here from the run loop (see ``replay.through_protocol``)."""
    if not hasattr(item, "flow"):
        return None
    from pytest_runset.session.collect import RunsetItem
    from pytest_runset.session.replay import deliver_pending

    return deliver_pending(item) if isinstance(item, RunsetItem) else None


@pytest.hookimpl(tryfirst=True)
def pytest_report_teststatus(
    report: pytest.CollectReport | pytest.TestReport, config: pytest.Config
) -> Any:
    """``-v`` says ``TIMEOUT`` and ``FLAKY`` for flows (counted as failed and passed)."""
    if not isinstance(report, pytest.TestReport) or report.when != "call":
        return None
    from pytest_runset.session.teststatus import flow_teststatus

    return flow_teststatus(report, config)


def pytest_unconfigure(config: pytest.Config) -> None:
    from pytest_runset.xdist.hooks import shutdown_worker_pool

    shutdown_worker_pool(config)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if config.stash.get(RUNS, None) is None:
        return
    from pytest_runset.session.summary import write_summary

    write_summary(terminalreporter, config)


def pytest_runset_report(config: pytest.Config, report: RunReport) -> None:
    """``--runset-html PATH``: a copy of the run's HTML page, its links relative to PATH."""
    if not config.option.runset_html:
        return
    from pytest_runset.session.html_copy import write_html_copy

    write_html_copy(config, report, Path(config.option.runset_html))
