"""Every browser step kind, passing and failing, in a real Chromium against the example app.

One run holds a flow that passes through every step kind and one flow per step kind (and
variant) that fails at that step, so the whole vocabulary costs one pytest session.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import pytest
from browser_support import closed_port, read_json, run_in, serve_example_app

from conftest import flows_by_name

example_app = pytest.fixture(scope="module")(serve_example_app)

EVERY_STEP = """
[[flows]]
name = "every step passes"
env = { ITEM = "Saw" }
steps = [
  { goto = "/login" },
  { expect_title = "Sign in - Example Shop" },
  { expect_title = "^Sign in", regex = true },
  { fill = "#username", value = "alice" },
  { fill = "#password", value = "wonderland" },
  { press = "#password", key = "Enter" },
  { expect_url = "/items" },
  { expect_url = ".*/items$", regex = true },
  { expect_text = "h1", text = "Welcome,   alice" },
  { expect_text = "#count", contains = "2 items" },
  { expect_text = "#count", regex = "^\\\\d+ items$" },
  { wait_for = "#late" },
  { wait_for = "#tooltip", state = "hidden" },
  { hover = ".help" },
  { expect_visible = "#tooltip" },
  { click = "text=Add item" },
  { fill = "#name", value = "{env.ITEM} {attempt}" },
  { select = "#category", value = "tools" },
  { check = "#urgent" },
  { uncheck = "#urgent" },
  { check = "#urgent" },
  { click = "role=button[name='Save']" },
  { expect_text = "#flash", text = "Saved Saw 1" },
  { expect_text = "#items li >> nth=-1", text = "Saw 1 (urgent)" },
  { click = "#dismiss" },
  { expect_hidden = "#flash" },
  { screenshot = "shots/list.png", full_page = true },
  { screenshot = "items.png", selector = "#items" },
]
"""

# name -> (steps after "goto /login", the failing step's label, a fragment of the message)
FAILING: dict[str, tuple[str, str, str]] = {
    "fail click": ('{ click = "#missing", timeout = 0.5 }', 'click "#missing"', "Timeout 500ms"),
    "fail fill": ('{ fill = "h1", value = "x" }', 'fill "h1"', "Element is not an <input>"),
    "fail press": (
        '{ press = "#missing", key = "Enter", timeout = 0.5 }',
        'press "#missing"',
        "Timeout 500ms",
    ),
    "fail check": ('{ check = "h1" }', 'check "h1"', "Not a checkbox or radio button"),
    "fail uncheck": ('{ uncheck = "h1" }', 'uncheck "h1"', "Not a checkbox or radio button"),
    "fail select": (
        '{ select = "#username", value = "tools", timeout = 0.5 }',
        'select "#username"',
        "Locator.select_option",
    ),
    "fail hover": ('{ hover = "#missing", timeout = 0.5 }', 'hover "#missing"', "Timeout 500ms"),
    "fail wait_for": (
        '{ wait_for = "#missing", timeout = 0.5 }',
        'wait_for "#missing"',
        "Locator.wait_for: Timeout 500ms",
    ),
    "fail expect_visible": (
        '{ expect_visible = "#missing", timeout = 0.5 }',
        'expect_visible "#missing"',
        "Locator expected to be visible",
    ),
    "fail expect_hidden": (
        '{ expect_hidden = "h1", timeout = 0.5 }',
        'expect_hidden "h1"',
        "Locator expected to be hidden",
    ),
    "fail expect_text text": (
        '{ expect_text = "h1", text = "Welcome", timeout = 0.5 }',
        'expect_text "h1"',
        "Locator expected to have text 'Welcome'; Actual value: Sign in",
    ),
    "fail expect_text contains": (
        '{ expect_text = "h1", contains = "Welcome", timeout = 0.5 }',
        'expect_text "h1"',
        "Locator expected to contain text 'Welcome'",
    ),
    "fail expect_text regex": (
        '{ expect_text = "h1", regex = "^Welcome", timeout = 0.5 }',
        'expect_text "h1"',
        "Locator expected to have text",
    ),
    "fail expect_url": (
        '{ expect_url = "/items", timeout = 0.5 }',
        'expect_url "/items"',
        "Page URL expected to be",
    ),
    "fail expect_url regex": (
        '{ expect_url = "/items$", regex = true, timeout = 0.5 }',
        'expect_url "/items$"',
        "Page URL expected to be 're.compile('/items$')'",
    ),
    "fail expect_title": (
        '{ expect_title = "Nope", timeout = 0.5 }',
        'expect_title "Nope"',
        "Page title expected to be 'Nope'",
    ),
    "fail screenshot": (
        '{ screenshot = "part.png", selector = "#missing", timeout = 0.5 }',
        'screenshot "part.png"',
        "Timeout 500ms",
    ),
}


def _failing_flows(refused_url: str) -> str:
    text = f"""
[[flows]]
name = "fail goto"
steps = [{{ goto = "{refused_url}" }}]
"""
    for name, (step, _, _) in FAILING.items():
        text += f"""
[[flows]]
name = "{name}"
steps = [{{ goto = "/login" }}, {step}]
"""
    return text


Run = tuple[int, pytest.LineMatcher, dict[str, Any], Path, str]


@pytest.fixture(scope="module")
def steps_run(tmp_path_factory: pytest.TempPathFactory, example_app: str) -> Run:
    directory = tmp_path_factory.mktemp("steps")
    refused = f"http://127.0.0.1:{closed_port()}/"
    header = "[runset]\nconcurrency = 2\ntimeout = 60\n"
    text = header + EVERY_STEP + _failing_flows(refused)
    (directory / "run-set.toml").write_text(text, encoding="utf-8")
    code, output, report, run_dir = run_in(directory, "steps", base_url=example_app)
    return code, output, report, run_dir, refused


def test_every_step_kind_passes(steps_run: Run) -> None:
    _, _, report, run_dir, _ = steps_run
    flow = flows_by_name(report)["every step passes"]
    assert flow["status"] == "passed", flow["message"]
    assert flow["kind"] == "steps"
    flow_dir = run_dir / "every-step-passes"
    log = (flow_dir / "stdout.log").read_text()
    total = EVERY_STEP.count("\n  { ")
    assert f'step {total}/{total} (screenshot "items.png") ok' in log
    for action in (
        "goto", "click", "fill", "press", "check", "uncheck", "select", "hover", "wait_for",
        "expect_visible", "expect_hidden", "expect_text", "expect_url", "expect_title",
        "screenshot",
    ):  # fmt: skip
        assert f"({action} " in log, action
    # Screenshot steps write where they say; a passing flow keeps no trace or failure shot.
    assert (flow_dir / "shots" / "list.png").stat().st_size > 0
    assert (flow_dir / "items.png").stat().st_size > 0
    assert not (flow_dir / "trace.zip").exists()
    assert not (flow_dir / "failure.png").exists()
    assert "every-step-passes/shots/list.png" in flow["artifacts"]
    assert "every-step-passes/trace.zip" not in flow["artifacts"]
    assert "console.log: items page ready" in (flow_dir / "console.log").read_text()


def _check_failure(run_dir: Path, flow: dict[str, Any], label: str, fragment: str) -> None:
    assert flow["status"] == "failed", flow
    position = "1/1" if label.startswith("goto") else "2/2"
    prefix = f"step {position} ({label}): "
    assert flow["message"].startswith(prefix), flow["message"]
    assert fragment in flow["message"], flow["message"]
    assert "\n" not in flow["message"]
    flow_dir = run_dir / flow["dir"]
    # A failing flow leaves a screenshot of the page at that moment and a trace.
    assert (flow_dir / "failure.png").stat().st_size > 0
    assert zipfile.is_zipfile(flow_dir / "trace.zip")
    assert f"{flow['dir']}/trace.zip" in flow["artifacts"]
    assert f"{flow['dir']}/failure.png" in flow["artifacts"]
    result = read_json(flow_dir / "result.json")
    assert "Call log:" in result["details"] or "ERR_CONNECTION_REFUSED" in result["details"]


@pytest.mark.parametrize("name", list(FAILING))
def test_every_step_kind_fails_with_its_name(steps_run: Run, name: str) -> None:
    _, _, report, run_dir, _ = steps_run
    _, label, fragment = FAILING[name]
    _check_failure(run_dir, flows_by_name(report)[name], label, fragment)


def test_goto_fails_on_a_refused_connection(
    steps_run: Run,
) -> None:
    _, _, report, run_dir, refused = steps_run
    flow = flows_by_name(report)["fail goto"]
    _check_failure(run_dir, flow, f'goto "{refused}"', "net::ERR_CONNECTION_REFUSED")


def test_failure_text_in_pytest_names_step_and_artifacts(
    steps_run: Run,
) -> None:
    code, output, report, _, _ = steps_run
    assert code == 1
    failed = [flow for flow in report["flows"] if flow["status"] != "passed"]
    assert len(failed) == len(FAILING) + 1
    assert report["summary"]["passed"] == 1
    output.fnmatch_lines(
        [
            "*flow 'fail click'*",
            'failed: step 2/2 (click "#missing"): Locator.click: Timeout 500ms exceeded.',
            "--- details ---",
            "Call log:",
            "artifacts: fail-click/console.log, fail-click/failure.png, fail-click/trace.zip",
            "flow directory: fail-click",
        ]
    )
    output.fnmatch_lines(["trace: python -m playwright show-trace */fail-click/trace.zip"])


def test_one_browser_per_worker_serves_all_flows(
    steps_run: Run,
) -> None:
    _, _, report, run_dir, _ = steps_run
    launches: dict[str, int] = {}
    for flow in report["flows"]:
        info = read_json(run_dir / flow["dir"] / "result.json")["browser"]
        launches[flow["worker"]] = launches.get(flow["worker"], 0) + int(info["launched"])
        assert info["isolation"] == "context"
    # Warm browsers: one launch per worker for 18 flows.
    assert sorted(launches.values()) == [1, 1]
