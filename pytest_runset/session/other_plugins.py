"""Hook implementations that let flows live next to other pytest plugins.

Registered by ``pytest_configure`` (:mod:`.configure`) as ``runset-other-plugins``:

- options of pytest-timeout, pytest-rerunfailures, pytest-repeat and pytest-playwright that
  flows cannot honour are refused once the session is known to have flows
  (:mod:`.familiar_options`);
- pytest-timeout's and pytest-rerunfailures' own machinery is kept off flows, which have their
  own timeout and retries (under pytest-xdist a flow item runs through pytest's protocol,
  where those plugins would otherwise time it or run it again);
- a retried attempt's ``rerun`` report reads ``R``/``RERUN`` also without
  pytest-rerunfailures (pytest-html alone asks for them, see :mod:`.report_plugins`).
"""

from __future__ import annotations

import pytest

from pytest_runset.session.familiar_options import check_for_flows
from pytest_runset.session.settings import LOADED

NAME = "runset-other-plugins"


class OtherPlugins:
    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        if not config.stash.get(LOADED, None):
            return
        manager = config.pluginmanager
        marks = []
        if manager.hasplugin("timeout") or manager.hasplugin("pytest_timeout"):
            # A flow's timeout is its own (--timeout maps onto it); 0 turns pytest-timeout's
            # timer off for the item.
            marks.append(pytest.mark.timeout(0))
        if manager.hasplugin("rerunfailures") or manager.hasplugin("pytest_rerunfailures"):
            # A flow's retries are its own (--reruns maps onto them).
            marks.append(pytest.mark.flaky(reruns=0))
        if not marks:
            return
        for item in items:
            if hasattr(item, "flow") and hasattr(item, "runset"):
                for mark in marks:
                    item.add_marker(mark)

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        if not session.config.stash.get(LOADED, None):
            return
        if any(hasattr(item, "flow") and hasattr(item, "runset") for item in session.items):
            check_for_flows(session.config)

    @pytest.hookimpl(tryfirst=True)
    def pytest_report_teststatus(
        self, report: pytest.TestReport
    ) -> tuple[str, str, tuple[str, dict[str, bool]]] | None:
        if report.outcome == "rerun":  # type: ignore[comparison-overlap]
            # pytest-rerunfailures' words for the same reports.
            return "rerun", "R", ("RERUN", {"yellow": True})
        return None


def register(config: pytest.Config) -> None:
    if not config.pluginmanager.has_plugin(NAME):
        config.pluginmanager.register(OtherPlugins(), NAME)
