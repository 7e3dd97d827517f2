"""What reporting plugins get of a flow: pytest-html's extras (the failure screenshot, links to
logs, trace and directory), a ``rerun`` report per failed attempt, and the live line giving way
to pytest-sugar.

pytest-html's side of the contract is re-implemented here by a small plugin that registers
``--html`` and records what pytest-html reads in ``pytest_runtest_logreport``: ``report.extras``,
the ``rerun`` outcome and attribute. tests/test_plugin_compat.py runs the real pytest-html,
allure-pytest and pytest-sugar.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_runset.session.progress import live_status
from pytest_runset.session.report_plugins import ReportPlugins
from pytest_runset.session.terminal_plugins import DEBUGGING, live_line_allowed

# Registers --html as pytest-html does; records what pytest-html reads.
HTML_STAND_IN = """
import json

def pytest_addoption(parser):
    parser.getgroup("terminal reporting").addoption("--html", dest="htmlpath", default=None)

def pytest_runtest_logreport(report):
    if report.when == "setup" and report.outcome == "passed":
        return
    with open("seen.jsonl", "a") as seen:
        seen.write(json.dumps({
            "nodeid": report.nodeid, "when": report.when, "outcome": report.outcome,
            "rerun": getattr(report, "rerun", None),
            "extras": [
                {key: extra[key] for key in ("name", "format_type", "mime_type")}
                | {"content": extra["content"][:200]}
                for extra in getattr(report, "extras", [])
            ],
            "longrepr": str(report.longrepr or ""),
        }) + "\\n")
"""

RUNSET = """
[[flows]]
name = "draws"
command = ["sh", "-c", '''printf PNGDATA > $RUNSET_FLOW_DIR/failure.png; echo oops >&2
echo '{{"status": "failed", "message": "drawn", "artifacts": ["failure.png"]}}' > $RUNSET_REPORT
exit 1''']
[[flows]]
name = "flaky"
retries = 2
command = ["sh", "-c", "test -e $RUNSET_RUN_DIR/once && exit 0; touch $RUNSET_RUN_DIR/once; exit 3"]
"""


def seen(pytester: pytest.Pytester) -> list[dict[str, Any]]:
    lines = (pytester.path / "seen.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_pytest_html_gets_the_screenshot_links_and_a_rerun_row_per_failed_attempt(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    write_runset(RUNSET)
    (pytester.path / "stand_in_html.py").write_text(HTML_STAND_IN)
    pytester.syspathinsert()
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-p", "no:html", "-p", "stand_in_html",
        "--runset", "run-set.toml", "--runset-run-id", "h", "--html", "out/report.html",
    )  # fmt: skip
    assert result.ret == 1, result.stdout.str()
    reports = seen(pytester)
    draws = [r for r in reports if r["nodeid"] == "run-set.toml::draws" and r["when"] == "call"]
    assert len(draws) == 1
    extras = {extra["name"]: extra for extra in draws[0]["extras"]}
    # Embedded, as pytest-html embeds a base64 image; every other file is a link relative to
    # the page, so the page and the run directory can be moved together.
    assert extras["failure.png"]["format_type"] == "image"
    assert base64.b64decode(extras["failure.png"]["content"]) == b"PNGDATA"
    assert extras["stderr.log"] == {
        "name": "stderr.log",
        "format_type": "url",
        "mime_type": None,
        "content": "../runset-results/h/draws/stderr.log",
    }
    assert extras["flow directory"]["content"] == "../runset-results/h/draws"
    # The flaky flow: one "rerun" report for its failed first attempt, then its final reports,
    # all carrying the attempt's number, as pytest-rerunfailures' do.
    flaky = [r for r in reports if r["nodeid"] == "run-set.toml::flaky"]
    assert [(r["when"], r["outcome"], r["rerun"]) for r in flaky] == [
        ("call", "rerun", 0),
        ("call", "passed", 1),
        ("teardown", "passed", 1),
    ]
    assert flaky[0]["longrepr"].startswith("failed: exit code 3")
    assert draws[0]["longrepr"].startswith("failed: drawn")
    assert {extra["name"] for extra in flaky[0]["extras"]} == {
        "attempt 1: stdout.log",
        "attempt 1: stderr.log",
        "attempt 1: flow directory",
    }
    # The terminal says R for the rerun, as with pytest-rerunfailures.
    result.stdout.fnmatch_lines(["*1 failed, 1 passed, 1 rerun in *"])


def test_without_pytest_html_no_extras_and_no_rerun_reports(
    pytester: pytest.Pytester, write_runset: Callable[..., Path]
) -> None:
    """Clients that never saw a ``rerun`` outcome (VS Code, TeamCity) do not see one now."""
    write_runset(RUNSET)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-p", "no:html", "-p", "no:rerunfailures",
        "--runset", "run-set.toml", "-rA",
    )  # fmt: skip
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*= 1 failed, 1 passed in *"])
    assert "RERUN" not in result.stdout.str()
    config = pytester.parseconfigure("-p", "no:html", "-p", "no:rerunfailures")
    plugins = ReportPlugins(config)
    assert plugins.html is None
    assert not plugins.reruns


def test_links_leave_the_page_directory_relatively(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    run_dir = tmp_path / "results" / "r 1"
    (run_dir / "flow").mkdir(parents=True)
    (run_dir / "flow" / "stdout.log").write_text("out")
    (run_dir / "flow" / "trace.zip").write_bytes(b"zip")
    plugins = ReportPlugins(pytester.parseconfigure())
    plugins.html = tmp_path / "pages" / "report.html"
    extras = plugins._attempt_extras(str(run_dir), "flow", ["flow/trace.zip", "other/x.png"])
    assert [(extra["name"], extra["content"]) for extra in extras] == [
        ("stdout.log", "../results/r%201/flow/stdout.log"),
        ("trace.zip", "../results/r%201/flow/trace.zip"),
        ("flow directory", "../results/r%201/flow"),
    ]


# -- pytest-sugar ---------------------------------------------------------------------------------
class Redrawing(pytest.TerminalReporter):
    """What pytest-sugar registers in place of pytest's reporter."""


def test_the_live_line_gives_way_to_pytest_sugar(pytester: pytest.Pytester) -> None:
    assert live_line_allowed(pytester.parseconfigure("-p", "no:sugar"))
    config = pytester.parseconfigure()
    if not config.pluginmanager.hasplugin("sugar"):
        # pytest-sugar is not installed here: a plugin of its name stands in.
        config.pluginmanager.register(object(), "sugar")
    assert not live_line_allowed(config)


def test_the_live_line_gives_way_to_any_replaced_terminal_reporter(
    pytester: pytest.Pytester,
) -> None:
    config = pytester.parseconfigure("-p", "no:sugar")
    manager = config.pluginmanager
    assert live_line_allowed(config)
    manager.unregister(manager.get_plugin("terminalreporter"))
    reporter = Redrawing(config)
    reporter.isatty = True  # type: ignore[misc,method-assign,assignment]
    manager.register(reporter, "terminalreporter")
    assert not live_line_allowed(config)
    assert live_status(config) is None


def test_the_live_line_never_draws_over_the_debugger(pytester: pytest.Pytester) -> None:
    config = pytester.parseconfigure()
    config.stash[DEBUGGING] = True
    assert not live_line_allowed(config)
