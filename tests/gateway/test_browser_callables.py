"""Callable flows (``module:function``) and the browser artifact options, in a real Chromium."""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from browser_support import read_json, run_flows, run_in, serve_example_app

from conftest import flows_by_name

example_app = pytest.fixture(scope="module")(serve_example_app)

FLOWS_PY = r"""
import json, os, subprocess, sys, unittest
from pathlib import Path

import pytest
from playwright.sync_api import expect


def everything(page, context, browser, flow, persona, base_url, flow_dir, ports, env):
    page.goto("/login")
    seen = {
        "title": page.title(),
        "same_context": page.context == context,
        "in_browser": context in browser.contexts,
        "flow": [flow.name, flow.slug, flow.attempt, flow.run_id, str(flow.dir)],
        "remaining": flow.remaining(),
        "persona": persona,
        "base_url": base_url,
        "flow_dir": str(flow_dir),
        "ports": ports,
        "env_flow": env["RUNSET_FLOW"],
        "environ_flow": os.environ["RUNSET_FLOW"],
        "environ_extra": os.environ["EXTRA"],
        "cwd": os.getcwd(),
        "viewport": page.viewport_size,
    }
    (flow_dir / "seen.json").write_text(json.dumps(seen))
    print("hello on stdout")
    print("hello on stderr", file=sys.stderr)
    subprocess.run(["sh", "-c", 'echo "child $RUNSET_FLOW_ID"'], check=True)


def assertion(page):
    page.goto("/login")
    title = page.title()
    assert title == "Nope", f"title was {title!r}"


def bare_assert():
    answer = 41
    assert answer == 42


def raises(page):
    page.goto("/login")
    helper()


def helper():
    raise ValueError("boom in helper")


def expect_fails(page):
    page.goto("/login")
    expect(page.locator("h1")).to_have_text("Welcome", timeout=500)


def pytest_skip():
    pytest.skip("not today")


def unittest_skip(page):
    raise unittest.SkipTest("no sandbox")


def no_browser(flow_dir, env):
    (flow_dir / "ran.txt").write_text(env["RUNSET_SLUG"])


def reports(env):
    report = {"status": "passed", "message": "3 checks", "metrics": {"checks": 3}}
    Path(env["RUNSET_REPORT"]).write_text(json.dumps(report))


def defaults_kept(*, base_url, retries=3, label="x"):
    assert retries == 3
    assert label == "x"
    assert base_url.startswith("http://127.0.0.1:")
"""

RUNSET = """
[runset]
concurrency = 2
viewport = { width = 800, height = 600 }
env = { EXTRA = "from [runset] env" }

[[flows]]
name = "everything"
callable = "flows:everything"
viewport = { width = 640, height = 480 }

[[flows]]
name = "assertion"
callable = "flows:assertion"

[[flows]]
name = "bare assert"
callable = "flows:bare_assert"

[[flows]]
name = "raises"
callable = "flows:raises"

[[flows]]
name = "expect fails"
callable = "flows:expect_fails"

[[flows]]
name = "pytest skip"
callable = "flows:pytest_skip"

[[flows]]
name = "unittest skip"
callable = "flows:unittest_skip"

[[flows]]
name = "no browser"
callable = "flows:no_browser"

[[flows]]
name = "reports"
callable = "flows:reports"

[[flows]]
name = "defaults kept"
callable = "flows:defaults_kept"
"""

Run = tuple[int, pytest.LineMatcher, dict[str, Any], Path, str]


@pytest.fixture(scope="module")
def callables_run(tmp_path_factory: pytest.TempPathFactory, example_app: str) -> Run:
    directory = tmp_path_factory.mktemp("callables")
    (directory / "flows.py").write_text(FLOWS_PY, encoding="utf-8")
    (directory / "run-set.toml").write_text(RUNSET, encoding="utf-8")
    code, output, report, run_dir = run_in(directory, "calls", base_url=example_app)
    return code, output, report, run_dir, str(directory)


def test_parameters_are_injected_by_name(callables_run: Run) -> None:
    _, _, report, run_dir, directory = callables_run
    flow = flows_by_name(report)["everything"]
    assert flow["status"] == "passed", flow["message"]
    assert flow["kind"] == "callable"
    seen = read_json(run_dir / "everything" / "seen.json")
    assert seen["title"] == "Sign in - Example Shop"
    assert seen["same_context"] is True
    assert seen["in_browser"] is True
    assert seen["flow"][:4] == ["everything", "everything", 1, "calls"]
    assert seen["flow"][4] == str(run_dir / "everything")
    assert 0 < seen["remaining"] <= 15 * 60
    assert seen["persona"] is None
    assert seen["base_url"].startswith("http://127.0.0.1:")
    assert seen["flow_dir"] == str(run_dir / "everything")
    assert seen["ports"] == []
    assert seen["env_flow"] == seen["environ_flow"] == "everything"
    assert seen["environ_extra"] == "from [runset] env"
    # Working directory: the run-set's; the flow's viewport wins over [runset]'s.
    assert seen["cwd"] == directory
    assert seen["viewport"] == {"width": 640, "height": 480}


def test_output_and_children_go_to_the_flow_logs(callables_run: Run) -> None:
    _, _, report, run_dir, _ = callables_run
    flow = flows_by_name(report)["everything"]
    stdout = (run_dir / "everything" / "stdout.log").read_text()
    stderr = (run_dir / "everything" / "stderr.log").read_text()
    assert "hello on stdout" in stdout
    # A child process inherits the flow's cookie, so the sweep after the flow would find it.
    assert f"child {read_json(run_dir / 'everything' / 'result.json')['flow_id']}" in stdout
    assert "hello on stderr" in stderr
    assert flow["leftover_processes"] == 0


def test_assertion_error_fails_with_its_text(callables_run: Run) -> None:
    _, _, report, run_dir, _ = callables_run
    flow = flows_by_name(report)["assertion"]
    assert flow["status"] == "failed"
    assert flow["message"] == "AssertionError: title was 'Sign in - Example Shop'"
    assert (run_dir / "assertion" / "failure.png").exists()
    with zipfile.ZipFile(run_dir / "assertion" / "trace.zip") as trace:
        assert any(name.endswith(".trace") for name in trace.namelist())


def test_bare_assert_names_its_line(callables_run: Run) -> None:
    _, _, report, _, _ = callables_run
    flow = flows_by_name(report)["bare assert"]
    assert flow["status"] == "failed"
    assert flow["message"].startswith("AssertionError at flows.py:")
    assert flow["message"].endswith("assert answer == 42")


def test_other_exceptions_fail_with_the_traceback_in_pytest(callables_run: Run) -> None:
    _, output, report, _, _ = callables_run
    flow = flows_by_name(report)["raises"]
    assert flow["status"] == "failed"
    assert flow["message"] == "ValueError: boom in helper"
    output.fnmatch_lines(
        [
            "*flow 'raises'*",
            "failed: ValueError: boom in helper",
            "--- details ---",
            "Traceback (most recent call last):",
            '*File "*flows.py", line *, in raises',
            "*helper()",
            '*File "*flows.py", line *, in helper',
            '*raise ValueError("boom in helper")',
            "ValueError: boom in helper",
        ]
    )


def test_playwright_expect_failure_is_an_assertion(callables_run: Run) -> None:
    _, _, report, _, _ = callables_run
    flow = flows_by_name(report)["expect fails"]
    assert flow["status"] == "failed"
    assert flow["message"].startswith(
        "AssertionError: Locator expected to have text 'Welcome'; Actual value: Sign in"
    )


def test_skips(callables_run: Run) -> None:
    _, _, report, _, _ = callables_run
    flows = flows_by_name(report)
    assert flows["pytest skip"]["status"] == "skipped"
    assert flows["pytest skip"]["message"] == "not today"
    assert flows["unittest skip"]["status"] == "skipped"
    assert flows["unittest skip"]["message"] == "no sandbox"


def test_callable_without_browser_parameters_runs_without_a_browser(callables_run: Run) -> None:
    _, _, report, run_dir, _ = callables_run
    flows = flows_by_name(report)
    assert flows["no browser"]["status"] == "passed"
    assert (run_dir / "no-browser" / "ran.txt").read_text() == "no-browser"
    assert "browser" not in read_json(run_dir / "no-browser" / "result.json")
    assert flows["reports"]["status"] == "passed"
    assert flows["reports"]["message"] == "3 checks"
    assert flows["reports"]["metrics"] == {"checks": 3}
    assert flows["defaults kept"]["status"] == "passed", flows["defaults kept"]["message"]


def test_run_outcome(callables_run: Run) -> None:
    code, _, report, _, _ = callables_run
    assert code == 1
    summary = report["summary"]
    assert (summary["passed"], summary["failed"], summary["skipped"]) == (4, 4, 2)


# -- artifact options ---------------------------------------------------------------------------

PAGE_WITH_ERRORS = (
    "data:text/html,<title>errors</title><h1>x</h1>"
    "<script>console.warn('careful'); setTimeout(() => {{ throw new Error('kaput') }}, 0)</script>"
)


def test_trace_screenshot_and_video_on(
    pytester: pytest.Pytester, write_runset: Callable[..., Path], example_app: str
) -> None:
    write_runset(
        f"""
[[flows]]
name = "passes"
steps = [
  {{ goto = "{PAGE_WITH_ERRORS}" }},
  {{ expect_title = "errors" }},
  {{ goto = "/login" }},
]
"""
    )
    result, report, run_dir = run_flows(
        pytester,
        "on",
        "--runset-trace",
        "on",
        "--runset-screenshot",
        "on",
        "--runset-video",
        "on",
        base_url=example_app,
    )
    assert result.ret == 0, result.stdout.str()
    flow = flows_by_name(report)["passes"]
    flow_dir = run_dir / "passes"
    assert zipfile.is_zipfile(flow_dir / "trace.zip")
    assert (flow_dir / "final.png").stat().st_size > 0
    assert not (flow_dir / "failure.png").exists()
    assert "passes/trace.zip" in flow["artifacts"]
    assert "passes/final.png" in flow["artifacts"]
    # Video needs Playwright's ffmpeg; without it the flow still passes and says why.
    if (flow_dir / "video.webm").exists():
        assert "passes/video.webm" in flow["artifacts"]
    else:
        assert any("video not recorded" in warning for warning in flow["warnings"])
    assert not (flow_dir / ".video").exists()
    console = (flow_dir / "console.log").read_text()
    assert "console.warning: careful" in console
    assert "pageerror: Error: kaput" in console


def test_artifacts_off_even_on_failure(
    pytester: pytest.Pytester, write_runset: Callable[..., Path], example_app: str
) -> None:
    write_runset(
        """
[[flows]]
name = "fails"
steps = [{ goto = "/login" }, { expect_visible = "#nope", timeout = 0.3 }]
"""
    )
    result, report, run_dir = run_flows(
        pytester,
        "off",
        "--runset-trace",
        "off",
        "--runset-screenshot",
        "off",
        base_url=example_app,
    )
    assert result.ret == 1
    flow = flows_by_name(report)["fails"]
    assert flow["status"] == "failed"
    assert flow["artifacts"] == ["fails/console.log"]
    assert not (run_dir / "fails" / "trace.zip").exists()
    assert not (run_dir / "fails" / "failure.png").exists()
