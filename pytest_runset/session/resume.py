"""``--runset-resume``: continuing a run from its journal, and spotting runs that died."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest

from pytest_runset.engine.state import RunsetRun
from pytest_runset.model.flows import RunSet
from pytest_runset.results.formats import FlowEntry
from pytest_runset.results.report import (
    JOURNAL_NAME,
    RunDirectory,
    newest_run,
    read_journal,
    unfinished_runs,
)


def notice(config: pytest.Config, text: str) -> None:
    terminal = config.pluginmanager.get_plugin("terminalreporter")
    if terminal is not None:
        terminal.write_line(f"runset: {text}", yellow=True)


def notice_unfinished(config: pytest.Config, root: Path, exclude: str) -> None:
    for run_id in unfinished_runs(root):
        if run_id != exclude:
            notice(
                config,
                f"run {run_id} in {root} ended without a report (interrupted or killed); "
                f"continue it with --runset-resume {run_id}",
            )


def resolve_resume(config: pytest.Config, resume: str, root: Path) -> str:
    """The run id ``--runset-resume`` names (``last``: the newest journal under ``root``)."""
    if resume != "last":
        return resume
    found = newest_run(root)
    if found is None:
        raise pytest.UsageError(
            f"--runset-resume last: no interrupted or failed run to resume in {root}"
        )
    return found


# Statuses a resumed run does not run again.
DONE_STATUSES = frozenset({"passed", "skipped", "xfailed", "xpassed"})


def resumed_run(
    config: pytest.Config, runset: RunSet, directory: RunDirectory, base_url: str | None
) -> RunsetRun:
    """Rebuild a run from its journal: who finished, and when the run started.

    The last journal entry of a flow wins; a flow counts as done when that entry is passed,
    skipped, xfailed or xpassed and the flow's definition (the sha256 of its table) is
    unchanged. Everything else runs again.
    """
    events, unreadable = read_journal(directory.path / JOURNAL_NAME)
    started_at: float | None = None
    recorded_sha: str | None = None
    last: dict[str, dict[str, Any]] = {}
    for event in events:
        kind = event.get("event")
        if kind == "start" and started_at is None:
            started_at = float(event.get("started_at") or 0.0) or None
            recorded_sha = (event.get("runset") or {}).get("sha256")
        elif kind == "flow" and isinstance(event.get("slug"), str):
            last[event["slug"]] = {k: v for k, v in event.items() if k != "event"}
    current = {flow.slug: flow.sha256 for flow in runset.flows}
    previous: dict[str, FlowEntry] = {}
    changed: list[str] = []
    for slug, entry in last.items():
        if slug not in current or entry.get("status") not in DONE_STATUSES:
            continue
        if entry.get("definition_sha256") != current[slug]:
            changed.append(slug)
            continue
        # A flow line of this run's journal, its slug, status and definition checked above.
        previous[slug] = cast(FlowEntry, entry)
    if unreadable:
        notice(config, f"{directory.path / JOURNAL_NAME}: ignored {unreadable} torn line(s)")
    if recorded_sha is not None and recorded_sha != runset.sha256:
        what = f"; run again: {', '.join(changed)}" if changed else ""
        notice(config, f"{runset.path} changed since run {directory.run_id} started{what}")
    notice(
        config,
        f"resuming run {directory.run_id}: {len(previous)} flow(s) already done, the rest run now",
    )
    return RunsetRun(runset, directory, base_url, previous=previous, started_at=started_at)
