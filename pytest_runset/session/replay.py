"""Replaying flow results into pytest's reporting hooks, on the main thread.

Flows do not run through pytest's runtest protocol, so their outcome is turned into the
setup/call/teardown :class:`pytest.TestReport` objects that the terminal, junitxml, ``--lf``
and every other plugin expect, carrying the worker like pytest-xdist's reports do.

The reports are still delivered from inside a ``pytest_runtest_protocol`` call for the flow
(:func:`through_protocol`): plugins that wrap that hook to learn which test is running (VS
Code's test adapter maps node ids to files there) see a flow exactly as they see a test.
What reporting plugins (pytest-html, allure-pytest) get beyond the reports is
:mod:`.report_plugins`'.

``pytest_runtest_makereport`` is not called for flows: its wrappers (pytest-json-report's,
pytest-rerunfailures') keep per-phase state that their ``pytest_runtest_setup``/``call``/
``teardown`` wrappers start, and a flow never goes through those in the controller.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from pytest_runset.session.report_plugins import ReportPlugins, flaky_text

if TYPE_CHECKING:
    from pytest_runset.results.formats import FlowEntry
    from pytest_runset.session.collect import RunsetItem

# The reports a flow's next ``pytest_runtest_protocol`` call delivers instead of running it.
PENDING_REPORTS = pytest.StashKey[Callable[[], None]]()


def through_protocol(item: RunsetItem, deliver: Callable[[], None]) -> None:
    """Call ``deliver`` (which emits the flow's reports) inside the flow's runtest protocol.

    The plugin's own ``pytest_runtest_protocol`` implementation (tryfirst) picks ``deliver`` up
    and returns True, so pytest's runner never runs the item; hook wrappers run around it as
    around any test. Should another implementation answer first, the reports are delivered
    after it all the same.
    """
    item.stash[PENDING_REPORTS] = deliver
    leftover: Callable[[], None] | None = None
    try:
        item.ihook.pytest_runtest_protocol(item=item, nextitem=None)
    finally:
        leftover = item.stash.get(PENDING_REPORTS, None)
        if leftover is not None:
            del item.stash[PENDING_REPORTS]
    if leftover is not None:
        leftover()


def deliver_pending(item: pytest.Item) -> bool | None:
    """The plugin's ``pytest_runtest_protocol``: True when it delivered a flow's reports."""
    deliver = item.stash.get(PENDING_REPORTS, None)
    if deliver is None:
        return None  # not a replay: pytest (or pytest-xdist's worker) runs the item
    del item.stash[PENDING_REPORTS]
    deliver()
    return True


@dataclass(frozen=True)
class GatewayId:
    id: str


@dataclass(frozen=True)
class WorkerNode:
    """What pytest's terminal and junitxml look for on an xdist-style report (``rep.node``)."""

    gateway: GatewayId
    # pytest prints this line above a failure of a report that has a ``node``.
    _workerinfocache: str = ""

    def __repr__(self) -> str:
        # Plugins that serialize reports (pytest-reportlog) fall back to repr() for ``node``.
        return f"<runset worker {self.gateway.id}>"


@dataclass(frozen=True)
class FlowCrash:
    """Where and why a flow failed, in one line: what pytest shows as a failure's "crash".

    The short test summary, junitxml's ``message`` attribute, ``--tb=line`` and
    pytest-json-report's ``crash`` read it, so they get one line instead of the whole text.
    """

    path: str
    lineno: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.lineno}: {self.message}"


class FlowFailure:
    """A failed flow's ``longrepr``: the full text, plus its one-line :class:`FlowCrash`."""

    def __init__(self, text: str, crash: FlowCrash) -> None:
        self.text = text
        self.reprcrash = crash

    def toterminal(self, tw: Any) -> None:
        for line in self.text.splitlines():
            tw.line(line)

    def __str__(self) -> str:
        return self.text


class Replay:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.hook = config.hook
        self._verbose = config.get_verbosity() > 0
        self.plugins = ReportPlugins(config)

    def logstart(self, item: RunsetItem) -> None:
        """``pytest_runtest_logstart`` for a flow that was just dispatched.

        In verbose mode the terminal would print a dangling location line for every flow that
        starts (flows finish out of order), so like pytest-xdist's output only the result
        line is shown there; every other plugin still hears of the start.
        """
        hook = self.hook.pytest_runtest_logstart
        if self._verbose:
            terminal = self.config.pluginmanager.get_plugin("terminalreporter")
            if terminal is not None:
                hook = self.config.pluginmanager.subset_hook_caller(
                    "pytest_runtest_logstart", remove_plugins=[terminal]
                )
        hook(nodeid=item.nodeid, location=item.location)

    def finished(
        self,
        item: RunsetItem,
        *,
        status: str,
        entry: FlowEntry,
        last: Mapping[str, Any],
        xfail_reason: str,
        worker_id: str,
        run_dir: str,
    ) -> None:
        """setup/call/teardown reports and logfinish for a flow's final result."""
        duration = float(entry["duration_s"])
        start = float(last.get("started_at") or time.time())
        node = (
            WorkerNode(GatewayId(worker_id), f"[{worker_id}] runset worker") if worker_id else None
        )
        props = properties(run_dir, entry)
        extra_sections = sections(run_dir, entry)
        make = functools.partial(_maker, item, node)
        for rerun in self.plugins.rerun_reports(item, entry, run_dir, make):
            self.hook.pytest_runtest_logreport(report=rerun)
        if status == "error":
            reports = [
                flow_report(
                    item, "setup", "failed", _longrepr(item, entry, last), 0.0, start, node
                ),
                flow_report(item, "teardown", "passed", None, 0.0, start, node),
            ]
        else:
            outcome, longrepr, wasxfail = {
                "passed": ("passed", None, None),
                "xpassed": ("passed", None, xfail_reason),
                # Like pytest's own xfailed reports, the failure stays readable (TeamCity's
                # testIgnored message, json-report's longrepr).
                "xfailed": ("skipped", _longrepr(item, entry, last), xfail_reason or "xfailed"),
                "skipped": ("skipped", skip_repr(item, entry["message"]), None),
            }.get(status, ("failed", _longrepr(item, entry, last), None))
            call = flow_report(item, "call", outcome, longrepr, duration, start, node)
            call.sections.extend(extra_sections)
            if wasxfail is not None:
                call.wasxfail = wasxfail
            reports = [
                flow_report(item, "setup", "passed", None, 0.0, start, node),
                call,
                flow_report(item, "teardown", "passed", None, 0.0, start + duration, node),
            ]
        # junitxml reads a test case's properties from its teardown report.
        reports[-1].user_properties.extend(props)
        extras = self.plugins.extras(run_dir, entry)
        if extras:
            reports[-2].extras = extras  # type: ignore[attr-defined]
        self.plugins.mark_attempts(item, entry, reports)
        for report in reports:
            self.hook.pytest_runtest_logreport(report=report)
            if report.when == "call" or (report.when == "setup" and report.failed):
                self._end_result_line(node, duration)
            if report.failed:
                self._exception_interact(item, report)
        self.plugins.allure_result(
            item,
            entry,
            text=failure_text(entry, last),
            started_at=start,
            worker_id=worker_id,
            run_dir=run_dir,
        )
        self.hook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)

    def _exception_interact(self, item: RunsetItem, report: pytest.TestReport) -> None:
        """As pytest's runner does after a failed setup or call: clients that learn of errors
        only here (VS Code's test adapter) hear of a flow that could not run, too.

        Not under ``--pdb``: a flow's error happened in another process, and there is no
        frame here to debug."""
        if self.config.option.usepdb:
            return
        text = str(report.longrepr)
        error = FlowError(text) if report.when == "setup" else AssertionError(text)
        call = pytest.CallInfo.from_call(_raiser(error), when=report.when)
        self.hook.pytest_exception_interact(node=item, call=call, report=report)

    def _end_result_line(self, node: WorkerNode | None, duration: float) -> None:
        """Finish ``-v``'s ``[gw1] PASSED run-set.toml::login`` line with the flow's duration.

        pytest leaves an xdist-style result line open until the next one starts; a flow's line
        is closed at once instead, so a log follower sees it whole and the live status line
        (:mod:`.progress`) starts on a fresh line.
        """
        if not self._verbose or node is None:
            return
        terminal = self.config.pluginmanager.get_plugin("terminalreporter")
        if terminal is None or getattr(terminal, "currentfspath", None) != -2:
            return  # the reporter did not print an xdist-style line for this report
        terminal.write(_seconds(duration))
        terminal.ensure_newline()

    def resumed(self, item: RunsetItem, entry: FlowEntry, *, run_dir: str) -> None:
        """Reports for a flow that an earlier session of the same run already finished."""
        self.logstart(item)
        self.finished(
            item,
            status=str(entry["status"]),
            entry=entry,
            last={},
            xfail_reason=str(entry.get("message") or ""),
            worker_id=str(entry.get("worker") or ""),
            run_dir=run_dir,
        )

    def skipped(self, item: RunsetItem, reason: str, *, entry: FlowEntry, run_dir: str) -> None:
        """Reports for a flow skipped before it ran (``skip`` key or skip markers)."""
        self.hook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
        now = time.time()
        setup = flow_report(item, "setup", "skipped", skip_repr(item, reason), 0.0, now, None)
        self.hook.pytest_runtest_logreport(report=setup)
        teardown = flow_report(item, "teardown", "passed", None, 0.0, now, None)
        teardown.user_properties.extend(properties(run_dir, entry))
        self.hook.pytest_runtest_logreport(report=teardown)
        self.plugins.allure_result(
            item, entry, text=f"skipped: {reason}", started_at=now, worker_id="", run_dir=run_dir
        )
        self.hook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)


class FlowError(Exception):
    """A flow that ended ``error``: it could not run (no worker, a lease wait, a service)."""


def _raiser(error: BaseException) -> Callable[[], None]:
    def raise_it() -> None:
        raise error

    return raise_it


def flow_report(
    item: RunsetItem,
    when: str,
    outcome: str,
    longrepr: Any,
    duration: float,
    start: float,
    node: WorkerNode | None,
) -> pytest.TestReport:
    report = pytest.TestReport(
        nodeid=item.nodeid,
        location=item.location,
        keywords={name: 1 for name in item.keywords},
        outcome=outcome,  # type: ignore[arg-type]
        longrepr=longrepr,
        when=when,  # type: ignore[arg-type]
        sections=[],
        duration=duration,
        start=start,
        stop=start + duration,
        user_properties=[],
    )
    if node is not None:
        report.node = node  # type: ignore[attr-defined]
        # As on pytest-xdist's reports: serializers (reportlog, json) keep the worker.
        report.worker_id = node.gateway.id  # type: ignore[attr-defined]
    return report


def _maker(
    item: RunsetItem,
    node: WorkerNode | None,
    when: str,
    outcome: str,
    longrepr: Any,
    duration: float,
    start: float,
) -> pytest.TestReport:
    return flow_report(item, when, outcome, longrepr, duration, start, node)


def _seconds(duration: float) -> str:
    return f"{duration:.2f}s"


def failure_location(item: RunsetItem, entry: FlowEntry) -> tuple[str, int] | None:
    """Where a spec-file flow's failing step is written: ``(path, 1-based line)``, the path
    as pytest shows locations (relative to the rootdir when inside it); else None.

    The item itself stays at its ``[[flows]]`` header (IDEs build their tree from it); this is
    the place a user wants to open to fix the step.
    """
    flow = item.flow
    failed = entry.get("failed_step")
    if flow.spec is None or failed is None or not 0 <= failed < len(flow.spec_step_lines):
        return None
    spec = item.path.parent / flow.spec
    try:
        shown = str(spec.relative_to(item.config.rootpath))
    except ValueError:
        shown = str(spec)
    return shown, flow.spec_step_lines[failed]


def failure_text(
    entry: FlowEntry, last: Mapping[str, Any], location: tuple[str, int] | None = None
) -> str:
    """A failed flow's whole failure text: status and message first, then where the failing
    step is written (spec-file flows), then details."""
    lines = [f"{entry['status']}: {entry['message']}".rstrip(": ")]
    if location is not None:
        lines.append(f"failing step at {location[0]}:{location[1]}")
    # A browser step's full Playwright message, or a callable's traceback.
    details = str(last.get("details") or "").rstrip()
    if details:
        lines.append("--- details ---")
        lines.append(details)
    tail = str(last.get("stderr_tail") or "").rstrip()
    if tail:
        source = last.get("tail_source") or entry["logs"].get("stderr", "stderr.log")
        lines.append(f"--- last lines of {source} ---")
        lines.append(tail)
    if entry.get("artifacts"):
        lines.append(f"artifacts: {', '.join(entry['artifacts'])}")
    if entry.get("dir"):
        lines.append(f"flow directory: {entry['dir']}")
    return "\n".join(lines)


def flow_failure_text(item: RunsetItem, entry: FlowEntry, last: Mapping[str, Any]) -> str:
    """:func:`failure_text` with the failing step's place in its spec file, if any."""
    return failure_text(entry, last, failure_location(item, entry))


def _longrepr(item: RunsetItem, entry: FlowEntry, last: Mapping[str, Any]) -> FlowFailure:
    location = failure_location(item, entry)
    text = failure_text(entry, last, location)
    if location is None:
        path, lineno, _ = item.location
        location = (path, (lineno or 0) + 1)
    return FlowFailure(text, FlowCrash(location[0], location[1], text.splitlines()[0]))


def skip_repr(item: RunsetItem, reason: str) -> tuple[str, int, str]:
    path, lineno, _ = item.location
    return (path, (lineno or 0) + 1, f"Skipped: {reason}")


def properties(run_dir: str, entry: FlowEntry) -> list[tuple[str, object]]:
    dir_name = entry.get("dir")
    slug_dir = os.path.join(run_dir, dir_name) if dir_name else ""
    # Names are part of the contract (docs/ide-and-tools.md); CI dashboards key on them.
    return [
        ("runset_slug_dir", slug_dir),
        ("runset_attempts", entry["attempts"]),
        ("runset_status", entry["status"]),
        ("runset_flaky", entry.get("flaky", False)),
    ]


def sections(run_dir: str, entry: FlowEntry) -> list[tuple[str, str]]:
    dir_name = entry.get("dir")
    if not dir_name:
        return []
    text = f"flow directory: {os.path.join(run_dir, dir_name)}"
    if entry.get("flaky"):
        text = f"{flaky_text(entry)}\n{text}"
    traces = [path for path in entry.get("artifacts", []) if path.endswith("trace.zip")]
    for trace in traces:
        text += f"\ntrace: python -m playwright show-trace {os.path.join(run_dir, trace)}"
    return [("runset", text)]
