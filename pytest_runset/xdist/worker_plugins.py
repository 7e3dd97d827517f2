"""Inside a pytest-xdist worker: what pytest-html, pytest-rerunfailures and allure-pytest get
of a flow, as the plugin's own pool gives it to them (session/report_plugins.py).

Here the flow goes through pytest's own protocol (it runs during its setup), so these plugins
are active in the worker itself: the reports of the flow's earlier attempts are logged from the
worker before its setup report (xdist forwards every logged report to the controller, where
pytest-html and pytest-rerunfailures count them), its call report carries pytest-html's
extras (serialized with the report), and allure's result, written by the worker's own allure
listener at logfinish, is completed at teardown.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import pytest

from pytest_runset.session.replay import failure_text, flow_report
from pytest_runset.session.report_plugins import ReportPlugins

if TYPE_CHECKING:
    from pytest_runset.session.collect import RunsetItem
    from pytest_runset.xdist.worker import FinishedFlow

_PLUGINS = pytest.StashKey[ReportPlugins]()


def report_to_plugins(item: RunsetItem, report: pytest.TestReport, finished: FinishedFlow) -> None:
    """Add to the flow's ``report`` (or log beside it) what the reporting plugins of this
    session read; nothing for plugins that are not active."""
    config = item.config
    plugins = config.stash.get(_PLUGINS, None)
    if plugins is None:
        plugins = config.stash[_PLUGINS] = ReportPlugins(config)
    entry = finished.outcome.entry
    run_dir = finished.run.run_dir
    if report.when == "setup":
        make = functools.partial(flow_report, item, node=None)
        for rerun in plugins.rerun_reports(item, entry, run_dir, make):
            item.ihook.pytest_runtest_logreport(report=rerun)
    if report.when == "call":
        extras = plugins.extras(run_dir, entry)
        if extras:
            report.extras = extras  # type: ignore[attr-defined]
    plugins.mark_attempts(item, entry, [report])
    if report.when == "teardown":
        last = finished.outcome.last
        workerinput: dict[str, Any] = getattr(config, "workerinput", {})
        plugins.allure_result(
            item,
            entry,
            text=failure_text(entry, last),
            started_at=float(last.get("started_at") or report.start),
            worker_id=str(workerinput.get("workerid", "")),
            run_dir=run_dir,
        )
