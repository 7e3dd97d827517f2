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
from typing import Any, BinaryIO
from urllib.parse import urljoin, urlparse

from pytest_runset.gateway.flow_dir import UnsafeName, attempt_dir, split_name
from pytest_runset.gateway.masking import mask_text
from pytest_runset.gateway.protocol import AttemptResult, AttemptSpec, StepTiming
from pytest_runset.gateway.runners import Control
from pytest_runset.gateway.runners.browser_host import first_lines, kill_flow
from pytest_runset.gateway.runners.browser_session import (
    ACTION_TIMEOUT_S,
    EXPECT_TIMEOUT_S,
    Session,
    open_session,
)
from pytest_runset.gateway.runners.inproc import BodyResult, run_inprocess, touch_logs
from pytest_runset.gateway.runners.persona_login import StepRunner

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
    if os.environ.get("PWDEBUG", "") not in ("", "0", "false", "console"):
        # Under Playwright's Inspector a step waits for the user: only the flow's time counts.
        wanted = control.remaining()
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


def _screenshot(spec: AttemptSpec, name: str, data: bytes) -> None:
    """Write a screenshot step's file through the attempt's open directory: a link the flow
    planted on the way (``shots`` -> elsewhere) is refused, one at the file is replaced."""
    try:
        with attempt_dir(spec["flow_dir"]) as directory:
            directory.write_bytes(name, data)
    except OSError as exc:
        raise StepProblem(f"cannot write screenshot {name!r}: {exc.strerror or exc}") from None


def _screenshot_name(name: str) -> str:
    try:
        split_name(name)
    except UnsafeName:
        raise StepProblem(f"screenshot file {name!r} is outside the flow directory") from None
    return name


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
        # Playwright hands the image back; the plugin writes it (see _screenshot).
        name = _screenshot_name(target)
        kind = "jpeg" if name.lower().endswith((".jpg", ".jpeg")) else "png"
        if step.get("selector"):
            data = page.locator(step["selector"]).screenshot(type=kind, timeout=timeout)
        else:
            data = page.screenshot(
                type=kind, full_page=bool(step.get("full_page")), timeout=timeout
            )
        _screenshot(spec, name, data)
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
    session, unavailable = open_session(spec, control, step_runner(control))
    if unavailable is not None:
        return unavailable
    result: BodyResult = {"status": "passed", "message": ""}
    try:
        with (
            attempt_dir(flow_dir) as directory,
            _StepLog(directory.open_append("stdout.log"), spec) as log,
        ):
            result = _run_steps(spec, control, session, log)
    finally:
        session.finish(failed=result["status"] != "passed", expired=_expired(control))
        result["browser"] = session.info
        result.setdefault("warnings", []).extend(session.warnings)
    return result


def _expired(control: Control) -> bool:
    return control.cancel_reason is not None or control.remaining() <= _DEADLINE_SLACK_S


class _StepLog:
    """``stdout.log`` of a steps flow: one line per step, secrets masked (a step's error text
    may quote what the page showed)."""

    def __init__(self, handle: BinaryIO, spec: AttemptSpec) -> None:
        self._handle = handle
        self._secrets = list(spec.get("secrets") or ())

    def write(self, text: str) -> None:
        self._handle.write(mask_text(text, self._secrets).encode("utf-8", "replace"))
        self._handle.flush()

    def __enter__(self) -> _StepLog:
        return self

    def __exit__(self, *_exc: object) -> None:
        self._handle.close()


def _run_steps(spec: AttemptSpec, control: Control, session: Session, log: _StepLog) -> BodyResult:
    steps = spec["steps"]
    total = len(steps)
    info = session.info
    log.write(
        f"browser {info.get('name')} {info.get('version')} "
        f"({'launched' if info.get('launched') else 'warm'}, {info.get('executable')})\n"
    )
    # Every step with its wall time (None: never started), for the report's step list.
    timings: list[StepTiming] = [{"label": step["label"], "duration_s": None} for step in steps]
    for number, step in enumerate(steps, 1):
        where = f"step {number}/{total} ({step['label']})"
        if control.cancel_reason is not None or control.remaining() <= 0:
            return {
                "status": "failed",
                "message": f"{where}: not started",
                "where": where,
                "steps": timings,
                "failed_step": number - 1,
            }
        timeout, clamped = _timeout_ms(step, control)
        started = time.monotonic()
        log.write(f"{where} ...\n")
        try:
            execute(session.page, step, timeout, spec)
        except Exception as exc:
            elapsed = time.monotonic() - started
            timings[number - 1]["duration_s"] = round(elapsed, 6)
            text = str(exc) or type(exc).__name__
            log.write(f"{where} failed after {elapsed:.3f}s\n{text}\n")
            return {
                "status": "failed",
                "message": f"{where}: {first_lines(text)}",
                "details": text.strip(),
                "where": where,
                "deadline_hit": clamped and control.remaining() <= _DEADLINE_SLACK_S,
                "steps": timings,
                "failed_step": number - 1,
            }
        elapsed = time.monotonic() - started
        timings[number - 1]["duration_s"] = round(elapsed, 6)
        log.write(f"{where} ok in {elapsed:.3f}s\n")
    return {"status": "passed", "message": "", "steps": timings}


def step_runner(control: Control) -> StepRunner:
    """Runs one step as this runner does, within the flow's time (a persona's sign-in)."""
    return lambda page, step, spec: execute(page, step, _timeout_ms(step, control)[0], spec)
