"""What reporting plugins get of a flow beyond the reports every plugin hears.

A flow's reports reach every plugin through ``pytest_runtest_makereport`` and
``pytest_runtest_logreport`` (:mod:`.replay`); some plugins want more than a report carries:

- **pytest-html** shows ``report.extras``: the failure screenshot (embedded), and links to the
  attempt's logs, trace, video and directory, relative to the HTML file so that the page and
  the run directory can be moved together.
- **retries** become ``rerun`` reports (one per failed attempt before the last), as
  pytest-rerunfailures sends them: pytest-html shows each as a "Rerun" row and counts them, and
  rerunfailures' own summary (``-rR``) lists them. Only with pytest-html writing a report or
  rerunfailures' options given: other clients have never seen a ``rerun`` outcome.
- **allure-pytest** learns of a test from hooks a flow never goes through
  (``pytest_runtest_setup``/``teardown``), so the result it keeps for the flow is completed
  here through allure's own objects: name, full name, history id, status and details (flaky
  included), the real timing, labels (tags, run-set, persona, the worker as thread, so that
  allure's timeline shows the workers) and attachments (logs, screenshots, trace, video). Each
  failed attempt before the last becomes a result of its own with the same history id: allure
  shows those as the flow's retries.

Everything here runs on pytest's main thread, inside the flow's ``pytest_runtest_protocol``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pytest_runset.results.formats import FlowEntry, HistoryItem
    from pytest_runset.session.collect import RunsetItem

# Makes a report for the flow: when, outcome, longrepr, duration, start.
ReportMaker = Callable[[str, str, Any, float, float], pytest.TestReport]

# Screenshots above this size are linked rather than embedded in the HTML page.
MAX_EMBEDDED_BYTES = 5 * 1024 * 1024
RETRIED = frozenset({"failed", "timeout", "error"})


def html_report_path(config: pytest.Config) -> Path | None:
    """Where pytest-html writes its page (``--html``), or ``None`` when it writes none (or
    is not loaded: then the option does not exist)."""
    raw = config.getoption("htmlpath", default=None)
    if not raw:
        return None
    path = Path(os.path.expandvars(str(raw))).expanduser()
    return path if path.is_absolute() else Path(config.invocation_params.dir) / path


def rerunfailures_loaded(config: pytest.Config) -> bool:
    manager = config.pluginmanager
    return manager.hasplugin("rerunfailures") or manager.hasplugin("pytest_rerunfailures")


def reruns_asked(config: pytest.Config) -> bool:
    """Whether the session uses pytest-rerunfailures (not merely has it installed)."""
    return any(
        config.getoption(dest, default=None)
        for dest in ("reruns", "force_reruns", "fail_on_flaky", "rerun_show_tracebacks")
    )


class ReportPlugins:
    """The extras of one session's flow reports, for the plugins that are active in it."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.html = html_report_path(config)
        # Only where asked for: clients that never saw a "rerun" report must not meet one.
        self.reruns = self.html is not None or reruns_asked(config)
        self.rerunfailures = rerunfailures_loaded(config)
        self.allure = config.pluginmanager.get_plugin("allure_listener")

    # -- pytest-html --------------------------------------------------------------------------
    def extras(self, run_dir: str, entry: FlowEntry) -> list[dict[str, Any]]:
        """pytest-html's extras for the flow's last attempt (none without pytest-html)."""
        dir_name = entry.get("dir")
        if self.html is None or not dir_name:
            return []
        return self._attempt_extras(run_dir, dir_name, entry.get("artifacts", []))

    def _attempt_extras(
        self, run_dir: str, dir_name: str, artifacts: list[str]
    ) -> list[dict[str, Any]]:
        extras: list[dict[str, Any]] = []
        for name, path in _attempt_files(run_dir, dir_name, artifacts):
            if _screenshot(path) and os.path.getsize(path) <= MAX_EMBEDDED_BYTES:
                with open(path, "rb") as handle:
                    data = base64.b64encode(handle.read()).decode("ascii")
                extras.append(_extra(data, "image", name, "image/png", "png"))
            else:
                extras.append(_extra(self._link(path), "url", name))
        extras.append(_extra(self._link(os.path.join(run_dir, dir_name)), "url", "flow directory"))
        return extras

    def _link(self, path: str) -> str:
        """``path`` as a link from the HTML page: relative to it, so both can move together."""
        assert self.html is not None
        try:
            relative = os.path.relpath(path, self.html.parent)
        except ValueError:
            return Path(path).as_uri()
        return urllib.parse.quote(relative.replace(os.sep, "/"))

    # -- retries ------------------------------------------------------------------------------
    def rerun_reports(
        self, item: RunsetItem, entry: FlowEntry, run_dir: str, make: ReportMaker
    ) -> list[pytest.TestReport]:
        """A ``rerun`` call report for each failed attempt before the last (when some plugin
        of this session understands them)."""
        if not self.reruns:
            return []
        reports = []
        for number, attempt in enumerate(_earlier_attempts(entry)):
            text = f"{attempt['status']}: {attempt['message']}".rstrip(": ")
            if attempt.get("dir"):
                text += f"\nflow directory: {os.path.join(run_dir, str(attempt['dir']))}"
            started = _started_at(run_dir, attempt)
            report = make("call", "rerun", text, float(attempt.get("duration_s") or 0.0), started)
            report.rerun = number  # type: ignore[attr-defined]
            if self.html is not None and attempt.get("dir"):
                extras = self._attempt_extras(run_dir, str(attempt["dir"]), [])
                for extra in extras:
                    # pytest-html lists every attempt's links in each row of the flow.
                    extra["name"] = f"attempt {attempt['attempt']}: {extra['name']}"
                report.extras = extras  # type: ignore[attr-defined]
            reports.append(report)
        return reports

    def mark_attempts(
        self, item: RunsetItem, entry: FlowEntry, reports: list[pytest.TestReport]
    ) -> None:
        """The final reports carry their attempt's number, and the item how often it ran, as
        pytest-rerunfailures keeps them (its ``--fail-on-flaky`` reads the item's count)."""
        if self.rerunfailures:
            item.execution_count = int(entry["attempts"])  # type: ignore[attr-defined]
        if self.reruns:
            for report in reports:
                report.rerun = max(0, int(entry["attempts"]) - 1)  # type: ignore[attr-defined]

    # -- allure ---------------------------------------------------------------------------------
    def allure_result(
        self,
        item: RunsetItem,
        entry: FlowEntry,
        *,
        text: str,
        started_at: float,
        worker_id: str,
        run_dir: str,
    ) -> None:
        """Complete the result allure keeps for the flow (call it before logfinish, which
        writes it); its failed attempts before the last become its retries."""
        if self.allure is None:
            return
        # allure's objects change between its releases: a result it cannot take must not
        # cost the run (the flow's status reached allure through makereport anyway).
        with contextlib.suppress(Exception):
            from pytest_runset.session.allure_results import AllureFlow

            flow = AllureFlow(self.allure, item, entry, worker_id=worker_id, host=_host())
            for attempt in _earlier_attempts(entry):
                started = _started_at(run_dir, attempt) or started_at
                flow.retry(attempt, started, _files(run_dir, attempt.get("dir"), []))
            files = _files(run_dir, entry.get("dir"), entry.get("artifacts", []))
            flow.complete(text, started_at, files, flaky=flaky_text(entry))


def flaky_text(entry: FlowEntry) -> str:
    """What a flaky flow's report says of it."""
    attempts = int(entry["attempts"])
    failed = "1 failed attempt" if attempts == 2 else f"{attempts - 1} failed attempts"
    return f"flaky: passed on attempt {attempts}, after {failed}"


def _extra(
    content: str,
    format_type: str,
    name: str,
    mime_type: str | None = None,
    extension: str | None = None,
) -> dict[str, Any]:
    # pytest-html's extras are plain dicts (pytest_html.extras.extra builds the same).
    return {
        "name": name,
        "format_type": format_type,
        "content": content,
        "mime_type": mime_type,
        "extension": extension,
    }


def _attempt_files(run_dir: str, dir_name: str, artifacts: list[str]) -> Iterator[tuple[str, str]]:
    """(name, absolute path) of an attempt's logs and artifacts that exist, logs first."""
    for log in ("stdout.log", "stderr.log"):
        path = os.path.join(run_dir, dir_name, log)
        if os.path.isfile(path):
            yield log, path
    prefix = dir_name + "/"
    for artifact in artifacts:
        path = os.path.join(run_dir, artifact)
        if artifact.startswith(prefix) and os.path.isfile(path):
            yield artifact[len(prefix) :], path


def _files(run_dir: str, dir_name: object, artifacts: list[str]) -> list[tuple[str, str]]:
    if not isinstance(dir_name, str) or not dir_name:
        return []
    found = list(_attempt_files(run_dir, dir_name, artifacts))
    if not artifacts:
        # An earlier attempt's artifacts are not in the entry: its failure screenshot is.
        for name in ("failure.png", "trace.zip"):
            path = os.path.join(run_dir, dir_name, name)
            if os.path.isfile(path):
                found.append((name, path))
    return found


def _screenshot(path: str) -> bool:
    name = os.path.basename(path)
    return name.endswith(".png") and name.startswith(("failure", "final"))


def _earlier_attempts(entry: FlowEntry) -> list[HistoryItem]:
    history = list(entry.get("history") or [])
    return [attempt for attempt in history[:-1] if attempt.get("status") in RETRIED]


def _started_at(run_dir: str, attempt: HistoryItem) -> float:
    """When an attempt started, from its ``result.json`` (0.0 when unknown)."""
    dir_name = attempt.get("dir")
    if not dir_name:
        return 0.0
    try:
        with open(os.path.join(run_dir, dir_name, "result.json"), encoding="utf-8") as handle:
            value = json.load(handle).get("started_at")
    except (OSError, ValueError, AttributeError):
        return 0.0
    return float(value) if isinstance(value, int | float) else 0.0


def _host() -> str:
    try:
        return socket.gethostname()
    except OSError:
        return "localhost"
