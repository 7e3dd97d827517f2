"""Declarative browser flows: run a flow's steps in a fresh browser context.

Each step waits with Playwright's auto-waiting (``expect`` for assertions), bounded by its own
``timeout``, Playwright's defaults (30 s for actions, 5 s for expectations) and the flow's
remaining time. The first failing step ends the flow as ``failed`` with
``step 3/6 (click "#pay"): <Playwright's message>``; its full text (with Playwright's call log)
is in the report's details. ``stdout.log`` gets one line per step.
"""

from __future__ import annotations

import os
import re
import time
from typing import Any, TextIO
from urllib.parse import urljoin, urlparse

from pytest_runset.gateway.protocol import AttemptResult, AttemptSpec
from pytest_runset.gateway.runners import Control
from pytest_runset.gateway.runners.browser_host import first_lines, kill_flow
from pytest_runset.gateway.runners.browser_session import (
    ACTION_TIMEOUT_S,
    EXPECT_TIMEOUT_S,
    Session,
    open_session,
)
from pytest_runset.gateway.runners.inproc import BodyResult, run_inprocess, touch_logs

# Within this much of the deadline, a wait that was cut short by it is the flow's timeout.
_DEADLINE_SLACK_S = 0.5
_EXPECTATIONS = frozenset(
    {"expect_visible", "expect_hidden", "expect_text", "expect_url", "expect_title"}
)


class StepProblem(Exception):
    """A step that cannot run as written (a relative URL without a base URL, ...)."""


def run(spec: AttemptSpec, control: Control) -> AttemptResult:
    return run_inprocess(spec, control, lambda: _body(spec, control), lambda: kill_flow(spec))


def _timeout_ms(step: dict[str, Any], control: Control) -> tuple[float, bool]:
    """The step's wait in ms, and whether the flow's remaining time cut it short."""
    wanted = step.get("timeout_s")
    if wanted is None:
        wanted = EXPECT_TIMEOUT_S if step["action"] in _EXPECTATIONS else ACTION_TIMEOUT_S
    remaining = control.remaining()
    if remaining <= wanted:
        return float(max(1, round(remaining * 1000))), True
    return float(round(wanted * 1000)), False


def _absolute(url: str, base_url: str) -> str:
    if urlparse(url).scheme:
        return url
    if not base_url:
        raise StepProblem(
            f"the relative URL {url!r} needs a base URL (--runset-base-url, [runset] base_url "
            "or the spec file's base_url)"
        )
    return urljoin(base_url, url)


def _inside(flow_dir: str, name: str) -> str:
    root = os.path.realpath(flow_dir)
    path = os.path.realpath(os.path.join(root, name))
    if os.path.commonpath([root, path]) != root:
        raise StepProblem(f"screenshot file {name!r} is outside the flow directory")
    return path


def execute(page: Any, step: dict[str, Any], timeout: float, spec: AttemptSpec) -> None:
    """Run one step on ``page``; raises Playwright's errors or :class:`StepProblem`."""
    from playwright.sync_api import expect

    action = step["action"]
    target = step["target"]
    base_url = str(spec.get("base_url") or "")
    if action == "goto":
        page.goto(_absolute(target, base_url), timeout=timeout)
    elif action == "expect_url":
        expected = re.compile(target) if step.get("regex") else _absolute(target, base_url)
        expect(page).to_have_url(expected, timeout=timeout)
    elif action == "expect_title":
        expect(page).to_have_title(
            re.compile(target) if step.get("regex") else target, timeout=timeout
        )
    elif action == "screenshot":
        path = _inside(spec["flow_dir"], target)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if step.get("selector"):
            page.locator(step["selector"]).screenshot(path=path, timeout=timeout)
        else:
            page.screenshot(path=path, full_page=bool(step.get("full_page")), timeout=timeout)
    else:
        locator = page.locator(target)
        if action == "click":
            locator.click(timeout=timeout)
        elif action == "fill":
            locator.fill(step["value"], timeout=timeout)
        elif action == "press":
            locator.press(step["key"], timeout=timeout)
        elif action == "check":
            locator.check(timeout=timeout)
        elif action == "uncheck":
            locator.uncheck(timeout=timeout)
        elif action == "select":
            locator.select_option(step["value"], timeout=timeout)
        elif action == "hover":
            locator.hover(timeout=timeout)
        elif action == "wait_for":
            locator.wait_for(state=step.get("state", "visible"), timeout=timeout)
        elif action == "expect_visible":
            expect(locator).to_be_visible(timeout=timeout)
        elif action == "expect_hidden":
            expect(locator).to_be_hidden(timeout=timeout)
        elif action == "expect_text":
            match, expected = step["match"], step["expected"]
            if match == "contains":
                expect(locator).to_contain_text(expected, timeout=timeout)
            elif match == "regex":
                expect(locator).to_have_text(re.compile(expected), timeout=timeout)
            else:
                expect(locator).to_have_text(expected, timeout=timeout)
        else:
            raise StepProblem(f"unknown action {action!r}")


def _body(spec: AttemptSpec, control: Control) -> BodyResult:
    flow_dir = spec["flow_dir"]
    touch_logs(flow_dir)
    session, unavailable = open_session(spec, control)
    if unavailable is not None:
        return unavailable
    result: BodyResult = {"status": "passed", "message": ""}
    try:
        with open(os.path.join(flow_dir, "stdout.log"), "a", encoding="utf-8", buffering=1) as log:
            result = _run_steps(spec, control, session, log)
    finally:
        session.finish(failed=result["status"] != "passed", expired=_expired(control))
        result["browser"] = session.info
        result.setdefault("warnings", []).extend(session.warnings)
    return result


def _expired(control: Control) -> bool:
    return control.cancel_reason is not None or control.remaining() <= _DEADLINE_SLACK_S


def _run_steps(spec: AttemptSpec, control: Control, session: Session, log: TextIO) -> BodyResult:
    steps = spec["steps"]
    total = len(steps)
    info = session.info
    log.write(
        f"browser {info.get('name')} {info.get('version')} "
        f"({'launched' if info.get('launched') else 'warm'}, {info.get('executable')})\n"
    )
    for number, step in enumerate(steps, 1):
        where = f"step {number}/{total} ({step['label']})"
        if control.cancel_reason is not None or control.remaining() <= 0:
            return {"status": "failed", "message": f"{where}: not started", "where": where}
        timeout, clamped = _timeout_ms(step, control)
        started = time.monotonic()
        log.write(f"{where} ...\n")
        try:
            execute(session.page, step, timeout, spec)
        except Exception as exc:
            elapsed = time.monotonic() - started
            text = str(exc) or type(exc).__name__
            log.write(f"{where} failed after {elapsed:.3f}s\n{text}\n")
            return {
                "status": "failed",
                "message": f"{where}: {first_lines(text)}",
                "details": text.strip(),
                "where": where,
                "deadline_hit": clamped and control.remaining() <= _DEADLINE_SLACK_S,
            }
        log.write(f"{where} ok in {time.monotonic() - started:.3f}s\n")
    return {"status": "passed", "message": ""}
