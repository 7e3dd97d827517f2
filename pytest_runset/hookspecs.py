"""Hooks that pytest-runset calls; implement them in a ``conftest.py`` or a plugin.

Every hook is called on the main thread of the controlling pytest process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pytest_runset.model.flows import Flow
    from pytest_runset.results.formats import FlowEntry, RunReport


@pytest.hookspec(firstresult=True)
def pytest_runset_modify_flows(config: pytest.Config, flows: list[Flow]) -> list[Flow] | None:
    """Called once per run-set file at collection, with its flows in file order.

    Return a new list to drop, reorder or replace flows (``dataclasses.replace`` on a
    :class:`pytest_runset.model.Flow`); return ``None`` to keep them. The first non-``None``
    result wins.
    """


def pytest_runset_flow_env(config: pytest.Config, flow: Flow, env: dict[str, str]) -> None:
    """Called before a flow attempt is dispatched; edit ``env`` in place.

    ``env`` holds the variables pytest-runset adds on top of the inherited environment
    (``[runset] env``, the flow's ``env`` and every ``RUNSET_*`` variable).
    """


def pytest_runset_flow_finished(config: pytest.Config, result: FlowEntry) -> None:
    """Called once per flow when its final attempt is over and journaled.

    ``result`` is the flow's entry of ``report.json`` (plain data: name, slug, nodeid, kind,
    status, attempts, flaky, duration_s, started_s, worker, exit_code, message, dir, logs,
    artifacts, persona, ports, tags, ...; typed as :class:`pytest_runset.results.formats.FlowEntry`,
    a plain ``dict`` at runtime). Treat it as read-only.
    """


def pytest_runset_report(config: pytest.Config, report: RunReport) -> None:
    """Called once per run-set after its ``report.json`` has been written.

    ``report`` is the content of that file (schema ``pytest-runset/report@1``; typed as
    :class:`pytest_runset.results.formats.RunReport`, a plain ``dict`` at runtime); paths in it
    are relative to the run directory. :func:`pytest_runset.session.settings.report_paths` gives
    the paths of the report files written in this session.
    """
