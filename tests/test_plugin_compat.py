"""Flows with the real plugins users install next to pytest-runset: pytest-timeout,
pytest-rerunfailures, pytest-repeat, pytest-playwright, allure-pytest, pytest-html, pytest-sugar.

Each test needs its plugin and is skipped, saying which, where it is missing: ``tox -e
plugins`` and the plugins stage of ``.ci/run`` install them all (the main suite runs without
them, with stand-ins in tests/session/test_familiar_options.py and test_report_plugins.py).
"""

from __future__ import annotations

import html
import importlib.util
import json
import os
import pty
import re
import select
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from browser_support import serve_example_app

from conftest import flows_by_name, load_report

example_app = pytest.fixture(scope="module")(serve_example_app)


def needs(*modules: str) -> pytest.MarkDecorator:
    missing = [name.replace("_", "-") for name in modules if importlib.util.find_spec(name) is None]
    return pytest.mark.skipif(
        bool(missing),
        reason=f"needs {', '.join(missing)} (tox -e plugins, or the plugins stage of .ci/run)",
    )


# The plugin's own pool, and pytest-xdist's workers (where flows go through pytest's own
# protocol and these plugins run inside the workers).
POOLS = [
    pytest.param("own", id="own-pool"),
    pytest.param("xdist", id="xdist", marks=needs("xdist")),
]


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--runset", "run-set.toml", *args
    )


FLAKY = """
[[flows]]
name = "flaky"
tags = ["smoke"]
command = [
  "sh", "-c",
  "test -e $RUNSET_RUN_DIR/once && exit 0; touch $RUNSET_RUN_DIR/once; echo first >&2; exit 1",
]
"""


@needs("pytest_timeout")
def test_pytest_timeout_times_out_flows(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    write_runset('[[flows]]\nname = "slow"\ncommand = ["sleep", "4"]\n')
    started = time.monotonic()
    result = run(pytester, "--timeout", "1", "--runset-run-id", "t")
    assert result.ret == 1
    assert time.monotonic() - started < 15
    result.stdout.fnmatch_lines(["timeout: 1.0s", "*timeout: timeout after 1s*"])
    assert flows_by_name(load_report(pytester.path / "runset-results" / "t"))["slow"]["status"] == (
        "timeout"
    )


@needs("pytest_rerunfailures")
def test_pytest_rerunfailures_reruns_flows_and_lists_them(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    write_runset(FLAKY)
    result = run(pytester, "--reruns", "1", "-rR", "--runset-run-id", "r")
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(
        ["*rerun test summary info*", "RERUN run-set.toml::flaky", "*1 passed, 1 rerun in*"]
    )
    flaky = flows_by_name(load_report(pytester.path / "runset-results" / "r"))["flaky"]
    assert (flaky["attempts"], flaky["flaky"]) == (2, True)


@needs("pytest_rerunfailures")
def test_pytest_rerunfailures_fail_on_flaky_fails_the_run_with_a_flaky_flow(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    write_runset(FLAKY)
    result = run(pytester, "--reruns", "1", "--fail-on-flaky")
    assert result.ret == 7, result.stdout.str()


@needs("pytest_timeout", "pytest_rerunfailures")
def test_flows_keep_pytest_timeout_and_rerunfailures_machinery_off(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    """Under pytest-xdist a flow runs through pytest's protocol, where these plugins would time
    it or run it again; their markers on flows say no (the flow's own timeout and retries
    apply, mapped from --timeout and --reruns)."""
    write_runset('[[flows]]\nname = "once"\ncommand = ["true"]\n')
    pytester.makepyfile(test_plain="def test_ok():\n    pass\n")
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "test_plain.py", "run-set.toml", "--co", "-q",
        "-m", "timeout and flaky",
    )  # fmt: skip
    result.stdout.fnmatch_lines(["run-set.toml::once", "1/2 tests collected (1 deselected)*"])


@needs("pytest_repeat")
def test_pytest_repeat_count_runs_each_flow_n_times(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    write_runset('[[flows]]\nname = "once"\ncommand = ["true"]\n')
    result = run(pytester, "--count", "3", "-v", "--runset-run-id", "c")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*3 passed*"])
    report = load_report(pytester.path / "runset-results" / "c")
    assert [flow["slug"] for flow in report["flows"]] == ["once-1", "once-2", "once-3"]
    assert [flow["nodeid"] for flow in report["flows"]] == [
        "run-set.toml::once[1-3]",
        "run-set.toml::once[2-3]",
        "run-set.toml::once[3-3]",
    ]


@needs("pytest_playwright")
def test_pytest_playwright_options_map_or_are_refused(
    pytester: pytest.Pytester, write_runset: Callable[..., Path], example_app: str
) -> None:
    write_runset('[[flows]]\nname = "page"\nsteps = [{ goto = "/login" }]\n')
    result = run(
        pytester, "--base-url", example_app, "--screenshot", "on", "--tracing", "on",
        "--runset-run-id", "p",
    )  # fmt: skip
    assert result.ret == 0, result.stdout.str()
    flow_dir = pytester.path / "runset-results" / "p" / "page"
    assert (flow_dir / "final.png").exists()
    assert (flow_dir / "trace.zip").exists()
    # --device, --slowmo and --browser-channel become the flows' browser options.
    pytester.makepyfile(
        journey="def ua(page, flow_dir):\n"
        "    page.goto('/login')\n"
        "    (flow_dir / 'ua.txt').write_text(page.evaluate('navigator.userAgent'))\n"
    )
    write_runset('[[flows]]\nname = "ua"\ncallable = "journey:ua"\n')
    emulated = run(
        pytester, "--base-url", example_app, "--device", "iPhone 13", "--slowmo", "10",
        "--runset-run-id", "d",
    )  # fmt: skip
    assert emulated.ret == 0, emulated.stdout.str()
    assert "iPhone" in (pytester.path / "runset-results/d/ua/ua.txt").read_text()
    refused = run(pytester, "--base-url", example_app, "--device", "iPhone 31")
    assert refused.ret == 4
    refused.stderr.fnmatch_lines(["ERROR: --device iPhone 31 (pytest-playwright): unknown device*"])


# -- reporting plugins -------------------------------------------------------------------------
REPORTED = """
[runset]
name = "reported"
[[flows]]
name = "flaky"
tags = ["smoke"]
retries = 1
persona = "alice"
command = [
  "sh", "-c",
  "test -e $RUNSET_RUN_DIR/once && exit 0; touch $RUNSET_RUN_DIR/once; echo first >&2; exit 1",
]
[[flows]]
name = "journey"
tags = ["browser"]
steps = [{ goto = "/login" }, { expect_visible = "#never", timeout = "1s" }]
[personas.alice]
username = "alice"
"""


@needs("allure_pytest")
@pytest.mark.parametrize("pool", POOLS)
def test_allure_results_of_flows_carry_status_labels_timing_and_attachments(
    pytester: pytest.Pytester, write_runset: Callable[..., Path], example_app: str, pool: str
) -> None:
    write_runset(REPORTED)
    result = run(pytester, "--alluredir", "allure", "--runset-base-url", example_app, "-n", "2")
    assert result.ret == 1, result.stdout.str()
    results = [
        json.loads(path.read_text()) for path in (pytester.path / "allure").glob("*-result.json")
    ]
    by_status = {(r["fullName"], r["status"]): r for r in results}
    assert sorted(by_status) == [
        ("run-set.toml::flaky", "failed"),
        ("run-set.toml::flaky", "passed"),
        ("run-set.toml::journey", "failed"),
    ]
    flaky = by_status[("run-set.toml::flaky", "passed")]
    retry = by_status[("run-set.toml::flaky", "failed")]
    # One history id: allure shows the failed attempt as the flow's retry.
    assert flaky["historyId"] == retry["historyId"]
    assert flaky["statusDetails"] == {
        "flaky": True,
        "message": "flaky: passed on attempt 2, after 1 failed attempt",
    }
    assert retry["statusDetails"]["message"] == "failed: exit code 1: first"
    assert retry["stop"] <= flaky["start"]
    labels = {(label["name"], label["value"]) for label in flaky["labels"]}
    assert {("tag", "smoke"), ("persona", "alice"), ("suite", "reported")} <= labels
    assert {name for name, _ in labels} >= {"thread", "worker", "host"}
    assert {a["name"] for a in flaky["attachments"]} == {"stdout.log", "stderr.log"}
    assert {a["name"] for a in retry["attachments"]} >= {"stderr.log"}
    journey = by_status[("run-set.toml::journey", "failed")]
    assert journey["name"] == "journey"
    assert journey["statusDetails"]["message"].startswith("failed: step 2/2 (expect_visible")
    attachments = {a["name"]: a for a in journey["attachments"]}
    assert {"failure.png", "trace.zip", "stdout.log", "stderr.log"} <= set(attachments)
    assert attachments["failure.png"]["type"] == "image/png"
    assert (pytester.path / "allure" / attachments["trace.zip"]["source"]).stat().st_size > 0
    assert 0 < journey["stop"] - journey["start"] < 60_000


def html_tests(page: Path) -> dict[str, list[dict[str, Any]]]:
    """pytest-html's data: the JSON blob its page renders."""
    blob = re.search(r'data-jsonblob="([^"]*)"', page.read_text())
    assert blob is not None
    tests: dict[str, list[dict[str, Any]]] = json.loads(html.unescape(blob.group(1)))["tests"]
    return tests


@needs("pytest_html")
@pytest.mark.parametrize("pool", POOLS)
def test_pytest_html_shows_the_failure_screenshot_log_links_and_reruns(
    pytester: pytest.Pytester, write_runset: Callable[..., Path], example_app: str, pool: str
) -> None:
    write_runset(REPORTED)
    result = run(
        pytester, "--html", "pages/report.html", "--runset-base-url", example_app,
        "--runset-run-id", "h", *(["-n", "2"] if pool == "xdist" else []),
    )  # fmt: skip
    assert result.ret == 1, result.stdout.str()
    tests = html_tests(pytester.path / "pages" / "report.html")
    journey = tests["run-set.toml::journey"]
    assert [row["result"] for row in journey] == ["Failed"]
    extras = {extra["name"]: extra for extra in journey[0]["extras"]}
    assert extras["failure.png"]["format_type"] == "image"
    # Written into the page's assets, as pytest-html does with a base64 image.
    assert (pytester.path / "pages" / extras["failure.png"]["content"]).exists()
    assert extras["trace.zip"]["content"] == "../runset-results/h/journey/trace.zip"
    assert extras["stderr.log"]["content"] == "../runset-results/h/journey/stderr.log"
    flaky = tests["run-set.toml::flaky"]
    assert sorted(row["result"] for row in flaky) == ["Passed", "Rerun"]
    assert "attempt 1: stderr.log" in {extra["name"] for extra in flaky[0]["extras"]}


# -- pytest-sugar --------------------------------------------------------------------------------
def run_on_terminal(cwd: Path, *args: str, timeout: float = 120.0) -> str:
    """pytest with a pseudo-terminal for stdin and stdout, as a user runs it."""
    env = {**os.environ, "TERM": "xterm", "COLUMNS": "120", "LINES": "40"}
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args]
    pid, fd = pty.fork()
    if pid == 0:
        try:
            os.chdir(cwd)
            os.execve(sys.executable, argv, env)
        finally:
            os._exit(127)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 1.0)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        if time.monotonic() >= deadline:
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(fd)
    return b"".join(chunks).decode("utf-8", "replace")


@needs("pytest_sugar")
def test_pytest_sugar_draws_alone_no_live_status_line_under_it(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    write_runset(
        '[[flows]]\nname = "one"\ncommand = ["sleep", "2"]\n'
        '[[flows]]\nname = "two"\ncommand = ["sleep", "2"]\n'
    )
    output = run_on_terminal(pytester.path, "--runset", "run-set.toml", "-n", "2")
    # pytest-sugar is drawing (its summary), and the live line never was.
    assert "Results (" in output, output
    assert "running /" not in output, output
