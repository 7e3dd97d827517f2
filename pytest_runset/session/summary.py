"""The terminal summary of pytest-runset: one line per run-set, and its flaky flows."""

from __future__ import annotations

import contextlib
import os
from typing import Any

import pytest

from pytest_runset.results.statuses import STATUSES
from pytest_runset.session.settings import RUNS


def write_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """One line per run-set (counts, wall, workers, efficiency, report path), flaky flows."""
    runs = config.stash.get(RUNS, None)
    if runs is None:
        return
    for run in runs.values():
        report = run.report
        if report is None:
            continue
        summary = report["summary"]
        parts = [
            f"{summary[status]} {status.replace('_', ' ')}"
            for status in STATUSES
            if summary.get(status)
        ]
        if summary.get("flaky"):
            parts.append(f"{summary['flaky']} flaky")
        shown = run.report_path or ""
        with contextlib.suppress(ValueError):
            shown = os.path.relpath(shown, config.invocation_params.dir)
        line = (
            f"runset {report['runset']['name']}: {', '.join(parts) or 'no flows'} "
            f"in {report['wall_s']:.2f}s on {report['workers']} worker"
            f"{'s' if report['workers'] != 1 else ''} "
            f"(efficiency {summary['parallelism_efficiency']:.0%}) -> {shown}"
        )
        bad = report["status"] not in ("passed",)
        for flow in report["flows"]:
            if flow.get("flaky"):
                terminalreporter.write_line(
                    f"flaky: {flow['nodeid']} passed on attempt {flow['attempts']}", yellow=True
                )
        terminalreporter.write_line(line, red=bad, green=not bad, bold=True)
